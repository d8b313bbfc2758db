"""The templates gallery: ready journeys that become editable drafts.

Each template names the elements the author should configure (JSON paths); the builder
highlights them. Some are deliberately left blank, so publishing asks for them.
"""

from __future__ import annotations

import copy
import json
from functools import cache
from pathlib import Path
from typing import Any

from crm_journeys.errors import NotFound

# The gallery ships with the web templates (package data under ``web/templates``).
GALLERY = Path(__file__).parent.parent / "web" / "templates" / "gallery"
ORDER = ("welcome_promo", "post_sale_followup", "abandoned_cart", "birthday", "lead_nurture")


@cache
def _load() -> dict[str, dict[str, Any]]:
    found = {p.stem: json.loads(p.read_text(encoding="utf-8")) for p in GALLERY.glob("*.json")}
    return {k: found[k] for k in sorted(found, key=lambda k: (ORDER.index(k) if k in ORDER else 99, k))}


def templates() -> list[dict[str, Any]]:
    return [{k: t[k] for k in ("id", "name", "description", "configure")} for t in _load().values()]


def template(template_id: str) -> dict[str, Any]:
    """A deep copy (the caller may edit it), with ``document`` and ``configure``."""
    try:
        return copy.deepcopy(_load()[template_id])
    except KeyError:
        raise NotFound(f"no template {template_id!r}; known: {', '.join(_load())}") from None
