"""The setup pages' delete buttons: remove a saved segment or a custom trigger, or keep it and
say which published journeys still use it (``services.usage.InUse``), back on its own page.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import flash, redirect, url_for
from sqlalchemy.orm import Session

from crm_journeys.services.usage import InUse
from crm_journeys.web.access import ui_require
from crm_journeys.web.state import state
from crm_journeys.web.ui.forms import plain


def delete_from_page(remove: Callable[[Session, int, int], str], row_id: int, *, label: str,
                     page: str, listing: str, id_arg: str) -> Any:
    """A delete button's handler: remove the row, or keep it and say which published
    journeys still use it (``InUse``), back on its own page."""
    p = ui_require("edit")
    try:
        with state().db.unit_of_work() as s:
            name = remove(s, p.tenant_id, row_id)
    except InUse as exc:
        flash(plain(str(exc)), "error")
        back: dict[str, Any] = {id_arg: row_id}
        return redirect(url_for(f"crm_journeys_ui.{page}", **back))
    flash(f"{label} “{name}” deleted.")
    return redirect(url_for(f"crm_journeys_ui.{listing}"))

