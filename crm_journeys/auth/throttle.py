"""Sign-in throttling: failed attempts counted per account and per client, in the database.

A fixed window per key: after ``limit`` failures within ``window`` the key is refused until
the window ends, right password or not (so guessing cannot go on in the background). The
count lives in ``cj_login_throttle`` rather than in process memory because the web app
runs as several processes; a success clears the account's count, not the client's.
Written by hand rather than with Flask-Limiter because the limiter's shared storages
(Redis, Memcached, MongoDB) are not services this app has; its database is.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from crm_journeys.storage.auth_models import LoginThrottle


@dataclass(frozen=True)
class Limit:
    prefix: str
    limit: int
    window: timedelta


ACCOUNT = Limit("account", 10, timedelta(minutes=15))
CLIENT = Limit("client", 50, timedelta(minutes=15))


def _key(limit: Limit, who: str) -> str:
    return f"{limit.prefix}:{who.strip().lower()}"[:200]


def blocked_until(session: Session, limit: Limit, who: str, now: datetime) -> datetime | None:
    """When the key may try again, if it has spent its failures in the current window."""
    row = session.get(LoginThrottle, _key(limit, who))
    if row is None or row.failures < limit.limit:
        return None
    end = row.window_start + limit.window
    return end if end > now else None


def record_failure(session: Session, limit: Limit, who: str, now: datetime) -> None:
    key = _key(limit, who)
    row = session.scalar(select(LoginThrottle).where(LoginThrottle.key == key).with_for_update())
    if row is None:
        try:
            with session.begin_nested():
                session.add(LoginThrottle(key=key, failures=1, window_start=now))
        except IntegrityError:  # another process counted the first failure meanwhile
            record_failure(session, limit, who, now)
        return
    if row.window_start + limit.window <= now:
        row.failures, row.window_start = 1, now
    else:
        row.failures += 1


def clear(session: Session, limit: Limit, who: str) -> None:
    session.execute(delete(LoginThrottle).where(LoginThrottle.key == _key(limit, who)))
