"""The events API's write path: requests that arrive together share one transaction (a
group commit): one token lookup per token, one INSERT for all their events, one commit.

Each request is answered only after the transaction holding its event committed, and
with what it would have got alone: its own 401/403, then its own 400/422, accepted or
duplicate. If the shared transaction fails, each request is retried in a transaction of
its own, so one bad event cannot lose the others.

The body is validated in the request's own thread, outside the transaction, and only once
the caller is likely to be let in. A token that the last batches found valid is checked
in the very transaction that writes its event, the body validated beforehand. Any other
token is looked up first, by the next batch (with the other requests' tokens), so a
refused caller gets its 401 without paying for validation; once let in, its event goes in
a later batch without a second lookup. Sessions are checked by the endpoint before this.

Batches run in whichever request thread leads them: nothing here touches Flask's request
or application context.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, cast

from marshmallow import ValidationError
from sqlalchemy.engine import Connection
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from crm_journeys.auth.accounts import Principal, token_principal_on
from crm_journeys.runtime.ingest import IncomingEvent, ingest_each
from crm_journeys.storage.db import Database
from crm_journeys.web.access import Access
from crm_journeys.web.errors import ApiError
from crm_journeys.web.group_commit import GroupCommit

# What turns a request's body into its event, given the batch's ORM session (for the
# lookups a custom trigger needs) and the caller's tenant: ``web.api.activity`` supplies it.
EventMaker = Callable[[Callable[[], Session], int, dict[str, Any]], IncomingEvent]
Answer = tuple[bool, IncomingEvent]  # (whether the event was new, the event)
Result = Answer | Principal  # a submission's result: its event's answer, or (no body) who it is
Outcome = Result | BaseException  # or the error its thread raises


@dataclass(frozen=True)
class Submission:
    """One request's share of a batch: who calls, what it sent, when it arrived."""

    access: Access
    # {} when the input was refused (``grant`` raises its error); None to check the access
    # only, the result then being the principal
    body: dict[str, Any] | None
    received_at: datetime


@dataclass
class _Batch:
    """One transaction's lookups, shared by its requests: a token is read once per batch."""

    conn: Connection
    now: datetime
    principals: dict[str, Principal | None] = field(default_factory=dict)
    session: Session | None = None

    def principal(self, token: str) -> Principal | None:
        if token not in self.principals:
            self.principals[token] = token_principal_on(self.conn, token, self.now)
        return self.principals[token]

    def orm(self) -> Session:
        """An ORM session inside the batch's transaction, made on first need."""
        if self.session is None:
            self.session = Session(bind=self.conn)
        return self.session

    def close(self) -> None:
        if self.session is not None:
            self.session.close()


class _ValidTokens:
    """Digests of the tokens the last batches found valid: whose requests to validate before
    their token is looked up. A hint, never a grant (such a token is checked again in the
    transaction that writes); a token a batch refuses is forgotten at once, and the set is
    emptied when full."""

    LIMIT = 10_000

    def __init__(self) -> None:
        self._digests: set[bytes] = set()

    def __contains__(self, token: str) -> bool:
        return _digest(token) in self._digests

    def note(self, found: dict[str, Principal | None]) -> None:
        for token, principal in found.items():
            if principal is None:
                self._digests.discard(_digest(token))
                continue
            if len(self._digests) >= self.LIMIT:
                self._digests.clear()
            self._digests.add(_digest(token))


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


class EventIntake:
    """Group-committed ingest for the events API, one per application."""

    def __init__(self, db: Database, make_event: EventMaker):
        self._db = db
        self._make_event = make_event
        self._group: GroupCommit[Submission, Result] = GroupCommit(self.run_batch, on_idle=self._release)
        self._valid_tokens = _ValidTokens()
        # Kept from one batch to the next while requests keep coming (only the leader uses
        # it): a checkout per batch cost a pool round and, on PostgreSQL, its pre-ping's
        # round trip to the server. Given back when the intake goes idle.
        self._conn: Connection | None = None

    def submit(self, access: Access, load: Callable[[], dict[str, Any]], received_at: datetime) -> Answer:
        """(whether the event was new, the event) once it is committed; raises the
        request's own ApiError (401, 403, then 400/422 from ``load``, which validates the
        body in this thread) or the database's error."""
        if access.token is not None and access.token not in self._valid_tokens:
            access = self._checked(access, received_at)
        try:
            body = load()
        except (ApiError, ValidationError) as exc:  # the token, if still unchecked, decides first
            access, body = replace(access, input_error=exc), {}
        return cast(Answer, self._group.submit(Submission(access, body, received_at)))

    def _checked(self, access: Access, received_at: datetime) -> Access:
        """``access`` granted by the next batch, which looks its token up with the others'
        (raises 401/403)."""
        principal = cast(Principal, self._group.submit(Submission(access, None, received_at)))
        return Access(access.permission, principal=principal)

    def run_batch(self, submissions: list[Submission]) -> list[Outcome]:
        """One batch, in one transaction (what the group commit calls; tests call it too):
        each submission's answer or error, in order, once committed."""
        try:
            return self._transaction(submissions)
        except SQLAlchemyError as exc:
            self._release()  # perhaps a dead connection: the next try checks out (and pings) afresh
            if len(submissions) == 1:
                return [exc]
        return [outcome for s in submissions for outcome in self.run_batch([s])]

    def _connection(self) -> Connection:
        if self._conn is None:
            self._conn = self._db.engine.connect()
        return self._conn

    def _release(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def _transaction(self, submissions: list[Submission]) -> list[Outcome]:
        """One transaction for the batch: each request's access check and event, then one
        INSERT of all events, then the commit (before any outcome is handed out)."""
        conn = self._connection()
        with conn.begin():
            batch = _Batch(conn, max(s.received_at for s in submissions))
            try:
                prepared = [self._event(batch, s) for s in submissions]
                staged = [(i, p) for i, p in enumerate(prepared) if isinstance(p, tuple)]
                new = ingest_each(conn, [(tenant, event, submissions[i].received_at)
                                         for i, (tenant, event) in staged])
            finally:
                batch.close()
                self._valid_tokens.note(batch.principals)
        if any(new):
            self._db.announce()  # committed: this process's worker takes them at once
        is_new = dict(zip((i for i, _ in staged), new, strict=True))
        return [(is_new[i], p[1]) if isinstance(p, tuple) else p for i, p in enumerate(prepared)]

    def _event(self, batch: _Batch, submission: Submission) -> tuple[int, IncomingEvent] | Principal | Exception:
        """(tenant, event) for a request allowed to send it (its principal when it sent no
        body), else the error its own request raises (401, 403, 400/422, or a bug: it fails
        that request, not its batch). Database errors propagate: the transaction is spoilt,
        and ``run_batch`` retries one by one."""
        try:
            principal = submission.access.grant(batch.principal)
            if submission.body is None:
                return principal
            return principal.tenant_id, self._make_event(batch.orm, principal.tenant_id, submission.body)
        except SQLAlchemyError:
            raise
        except Exception as exc:  # noqa: BLE001 - raised again in its own request thread
            return exc
