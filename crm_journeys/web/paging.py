"""Paging for the UI's long lists (journeys, contacts, a journey's contacts): the page
asked for in ``?page=``, clamped, and what the pager macro needs to draw itself."""

from __future__ import annotations

from dataclasses import dataclass

from flask import request

PER_PAGE = 25


@dataclass(frozen=True)
class Pager:
    page: int
    per_page: int
    total: int
    arg: str = "page"

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.per_page))

    @property
    def offset(self) -> int:
        return (self.page - 1) * self.per_page


def requested_page(arg: str = "page") -> int:
    raw = request.args.get(arg, "1")
    return max(1, int(raw)) if raw.isdigit() and len(raw) <= 9 else 1  # a page past the end shows the last


def pager(total: int, arg: str = "page", per_page: int = PER_PAGE) -> Pager:
    """The pager for ``total`` items; a page past the end shows the last one."""
    pages = max(1, -(-total // per_page))
    return Pager(min(requested_page(arg), pages), per_page, total, arg)
