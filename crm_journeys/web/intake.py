"""The events API's write path: requests that arrive together share one transaction (a
group commit): one token lookup per token, one INSERT for all their events, one commit.

Each request is answered only after the transaction holding its event committed, and
with what it would have got alone: its own 401/403 (the token is checked in that very
transaction), its own 422, accepted or duplicate. If the shared transaction fails, each
request is retried in a transaction of its own, so one bad event cannot lose the others.
Runs in whichever request thread leads the batch: nothing here touches Flask's request
or application context.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Connection
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from crm_journeys.auth.accounts import Principal, token_principal_on
from crm_journeys.runtime.ingest import IncomingEvent, ingest_each
from crm_journeys.storage.db import Database
from crm_journeys.web.access import Access
from crm_journeys.web.group_commit import GroupCommit

# What turns a request's body into its event, given the batch's ORM session (for the
# lookups a custom trigger needs) and the caller's tenant: ``api_activity`` supplies it.
EventMaker = Callable[[Callable[[], Session], int, dict[str, Any]], IncomingEvent]
Answer = tuple[bool, IncomingEvent]  # (whether the event was new, the event)
Outcome = Answer | BaseException  # a request's answer, or the error its thread raises


@dataclass(frozen=True)
class Submission:
    """One request's share of a batch: who calls, what it sent, when it arrived."""

    access: Access
    body: dict[str, Any]  # empty when the input was refused: ``access.grant`` raises its error
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


class EventIntake:
    """Group-committed ingest for the events API, one per application."""

    def __init__(self, db: Database, make_event: EventMaker):
        self._db = db
        self._make_event = make_event
        self._group: GroupCommit[Submission, Answer] = GroupCommit(self.run_batch, on_idle=self._release)
        # Kept from one batch to the next while requests keep coming (only the leader uses
        # it): a checkout per batch cost a pool round and, on PostgreSQL, its pre-ping's
        # round trip to the server. Given back when the intake goes idle.
        self._conn: Connection | None = None

    def submit(self, submission: Submission) -> Answer:
        """(whether the event was new, the event) once it is committed; raises the
        request's own ApiError (401, 403, 422) or the database's error."""
        return self._group.submit(submission)

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
                staged = [(i, p) for i, p in enumerate(prepared) if not isinstance(p, Exception)]
                new = ingest_each(conn, [(tenant, event, submissions[i].received_at)
                                         for i, (tenant, event) in staged])
            finally:
                batch.close()
        is_new = dict(zip((i for i, _ in staged), new, strict=True))
        return [p if isinstance(p, Exception) else (is_new[i], p[1]) for i, p in enumerate(prepared)]

    def _event(self, batch: _Batch, submission: Submission) -> tuple[int, IncomingEvent] | Exception:
        """(tenant, event) for a request allowed to send it, else the error its own request
        raises (401, 403, 422, or a bug: it fails that request, not its batch). Database
        errors propagate: the transaction is spoilt, and ``run_batch`` retries one by one."""
        try:
            principal = submission.access.grant(batch.principal)
            return principal.tenant_id, self._make_event(batch.orm, principal.tenant_id, submission.body)
        except SQLAlchemyError:
            raise
        except Exception as exc:  # noqa: BLE001 - raised again in its own request thread
            return exc
