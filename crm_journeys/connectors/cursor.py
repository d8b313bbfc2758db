"""Sync cursors shared by the polling adapters: a full scan, then windows of changes.

An adapter supplies two page readers, the full listing and "changed since T", and this
module keeps the rest: an opaque, resumable cursor; a high-water mark on the host's
modified time; an overlap window re-read on every poll (hosts index late and clocks skew);
and de-duplication by record version inside that window, so the overlap costs reads, not
repeated journeys. It does no I/O of its own.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

from crm_journeys.clock import Clock
from crm_journeys.connectors.base import CanonicalContact, SyncPage
from crm_journeys.errors import FatalConnectorError

# Versions remembered inside the overlap window. Past this (a bulk import) the oldest are
# forgotten and may be delivered twice; the runtime's inbox de-duplicates by version too.
MAX_SEEN = 1_000


@dataclass
class Chunk:
    """What one page reader returns: contacts, the host's next-page token, a total if known."""

    contacts: list[CanonicalContact]
    next: Any = None
    total: int | None = None


@dataclass
class SyncState:
    """Everything a cursor string carries.

    Attributes:
        phase: ``full`` during the initial scan, ``changes`` afterwards.
        token: the host's token for the next page of the running query.
        since: lower bound (ISO) of the running "changes" query.
        high_water: newest modified time (ISO) delivered so far.
        started: when the full scan began; changes made during it are re-read.
        seen: ``id -> [version digest, modified epoch]`` inside the overlap window.
        extra: adapter-specific state (a delta link, a feed position, ...).
    """

    phase: str = "full"
    token: Any = None
    since: str | None = None
    high_water: str | None = None
    started: str | None = None
    seen: dict[str, list[Any]] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def encode(self) -> str:
        raw = json.dumps(asdict(self), separators=(",", ":"), sort_keys=True)
        return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")

    @classmethod
    def decode(cls, cursor: str | None) -> SyncState | None:
        if not cursor:
            return None
        try:
            raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
            return cls(**json.loads(raw))
        except (ValueError, TypeError) as exc:
            raise FatalConnectorError(f"unreadable sync cursor: {exc}") from None

    # --- bookkeeping --------------------------------------------------------------
    def fresh(self, contacts: list[CanonicalContact]) -> list[CanonicalContact]:
        """Drop records already delivered at the same version (re-read in the overlap)."""
        out = []
        for contact in contacts:
            known = self.seen.get(contact.external_id)
            if known and contact.version is not None and known[0] == _digest(contact.version):
                continue
            out.append(contact)
        return out

    def observe(self, contacts: list[CanonicalContact], overlap: timedelta) -> None:
        """Advance the high-water mark and remember versions inside the overlap window."""
        for contact in contacts:
            if contact.modified_at is None:
                continue
            stamp = contact.modified_at.isoformat()
            if self.high_water is None or contact.modified_at > _dt(self.high_water):
                self.high_water = stamp
            version = contact.version or stamp
            self.seen[contact.external_id] = [_digest(version), contact.modified_at.timestamp()]
        if self.high_water:
            floor = (_dt(self.high_water) - overlap).timestamp()
            self.seen = {k: v for k, v in self.seen.items() if v[1] >= floor}
        if len(self.seen) > MAX_SEEN:  # a bulk update: keep the cursor small, the newest win
            newest = sorted(self.seen.items(), key=lambda kv: kv[1][1])[-MAX_SEEN:]
            self.seen = dict(newest)

    def next_window(self, overlap: timedelta) -> None:
        """The running query is exhausted: the next poll starts a new overlapping window."""
        marks = [_dt(s) for s in (self.high_water, self.started) if s]
        bound: datetime | None
        if self.phase == "full" and self.started:
            bound = min(marks)  # changes during the scan may have been missed
        else:
            bound = max(marks) if marks else None
        self.phase, self.token, self.started = "changes", None, None
        self.since = (bound - overlap).isoformat() if bound else self.since


def _dt(value: str) -> datetime:
    return datetime.fromisoformat(value)


def _digest(version: str) -> str:
    """Versions are compared, never read back: 8 bytes of hash keep the cursor small."""
    return hashlib.blake2b(version.encode(), digest_size=8).hexdigest()


class WindowedSync:
    """Mixin giving a connector ``sync_page`` from two page readers.

    Subclasses set ``overlap`` and implement ``full_page`` and ``changes_page``; both map
    host records to ``CanonicalContact`` with ``modified_at`` and ``version`` filled.
    """

    overlap = timedelta(minutes=2)
    context: dict[str, Any]

    def full_page(self, token: Any, page_size: int) -> Chunk:
        raise NotImplementedError

    def changes_page(self, since: datetime, token: Any, page_size: int, state: SyncState) -> Chunk:
        raise NotImplementedError

    @property
    def clock(self) -> Clock:
        return self.context.get("clock") or Clock()

    def sync_page(self, cursor: str | None, page_size: int = 100) -> SyncPage:
        state = SyncState.decode(cursor) or SyncState(started=self.clock.now().isoformat())
        if state.phase == "full":
            chunk = self.full_page(state.token, page_size)
            contacts = chunk.contacts
        else:
            since = _dt(state.since) if state.since else datetime.fromtimestamp(0, self.clock.now().tzinfo)
            chunk = self.changes_page(since, state.token, page_size, state)
            contacts = state.fresh(chunk.contacts)
        state.observe(contacts, self.overlap)
        state.token = chunk.next
        done = chunk.next is None
        if done:
            state.next_window(self.overlap)
        return SyncPage(contacts, state.encode(), done, chunk.total)
