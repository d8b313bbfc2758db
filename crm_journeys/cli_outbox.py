"""``crm-journeys outbox``: failed actions from the command line, as the admin page
"Action errors" shows them: list the dead and retrying ones, retry or dismiss dead ones.

An operator with the database is not bound to a tenant: every command covers all tenants
unless ``--tenant`` names some; each retry or dismiss still goes through the tenant-scoped
rules of ``runtime.action_errors`` (conditional UPDATE, timeline entry, same key).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import click
from sqlalchemy import select

from crm_journeys.runtime import action_errors as errors
from crm_journeys.storage.db import Database
from crm_journeys.storage.models import OutboxMessage

BY = "the command line"
TENANTS = click.option("--tenant", "slugs", multiple=True, help="Tenant slug; repeat (default: every tenant).")
MOVES = {"retry": (errors.retry, "retried"), "dismiss": (errors.dismiss, "dismissed")}


def _database(ctx: click.Context) -> Database:
    """The root command's database (imported late: ``cli`` imports this module)."""
    from crm_journeys.cli import _current_db

    return _current_db(ctx)


def _tenants(database: Database, slugs: Sequence[str]) -> dict[int, str]:
    """Tenant id -> slug of the tenants named, or of all; an unknown slug is a usage error."""
    from crm_journeys.runtime.retention import policies

    try:
        return {tid: slug for tid, slug, _ in policies(database, slugs)}
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--tenant") from None


@click.group()
def outbox() -> None:
    """Failed actions (dead-lettered, or retrying after a failure): list, retry, dismiss."""


@outbox.command("list")
@click.option("--status", type=click.Choice(errors.FILTER_STATUSES), default=None,
              help="Only dead, or only retrying (default: both).")
@TENANTS
@click.option("--journey", "journey_id", type=int, default=None, help="Only this journey's actions.")
@click.option("--action", default=None, help="Only this action (e.g. create_lead).")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 10_000), help="Rows per tenant.")
@click.pass_context
def outbox_list(ctx: click.Context, status: str | None, slugs: tuple[str, ...], journey_id: int | None,
                action: str | None, limit: int) -> None:
    """Print each tenant's failed actions, newest first, and how many there are."""
    database = _database(ctx)
    f = errors.ErrorFilter(status, journey_id, action)
    for tenant_id, slug in _tenants(database, slugs).items():
        with database.unit_of_work() as s:
            total = errors.count_errors(s, tenant_id, f)
            rows = errors.list_errors(s, tenant_id, f, limit=limit)
        shown = f" (newest {len(rows)} shown)" if total > len(rows) else ""
        click.echo(f"{slug}: {total} failed action{'s' if total != 1 else ''}{shown}")
        for e in rows:
            when = "gave up" if e.status == errors.DEAD else "next attempt"
            click.echo(f"  {e.id:>8}  {e.status:<8}  {e.action:<18}  attempts {e.attempts:<2}  "
                       f"{when} {e.next_attempt_at:%Y-%m-%d %H:%M}  journey {e.journey_name or '-'}  "
                       f"step {e.step}  contact {e.contact_email or e.contact_id}")
            click.echo(f"            {' '.join(e.last_error.split())[:160]}")


def _moving(verb: str, summary: str) -> click.Command:
    """The ``retry`` or ``dismiss`` command: ids, or ``--all-dead``; exits 1 if any id is refused."""

    @outbox.command(verb, help=summary)
    @click.argument("ids", nargs=-1, type=int)
    @click.option("--all-dead", is_flag=True, help="Every dead action (of the --tenant given).")
    @TENANTS
    @click.pass_context
    def command(ctx: click.Context, ids: tuple[int, ...], all_dead: bool, slugs: tuple[str, ...]) -> None:
        _move(ctx, verb, ids, all_dead, slugs)

    return command


outbox_retry = _moving("retry", "Send dead actions again (each keeps its idempotency key).")
outbox_dismiss = _moving("dismiss", "Give dead actions up: never sent, removed with dead ones by retention.")


def _move(ctx: click.Context, verb: str, ids: tuple[int, ...], all_dead: bool, slugs: tuple[str, ...]) -> None:
    if bool(ids) == all_dead:
        raise click.UsageError("Give action ids, or --all-dead.")
    from crm_journeys.cli import _now

    database = _database(ctx)
    tenants = _tenants(database, slugs)
    move, done_word = MOVES[verb]
    changed, refused = 0, {}
    with database.unit_of_work() as s:
        by_tenant: dict[int, list[int]] = defaultdict(list)
        if ids:
            owners = dict(s.execute(select(OutboxMessage.id, OutboxMessage.tenant_id).where(
                OutboxMessage.id.in_(set(ids)), OutboxMessage.tenant_id.in_(tenants))).all())
            refused = {i: f"Action {i} cannot be {done_word}: there is no such action." for i in ids if i not in owners}
            for i, tenant_id in owners.items():
                by_tenant[tenant_id].append(i)
        for tenant_id in tenants:
            if ids and tenant_id not in by_tenant:
                continue
            outcome = move(s, tenant_id, _now(database), BY, ids=by_tenant[tenant_id] if ids else None)
            changed += len(outcome.changed)
            refused |= outcome.refused
    click.echo(f"{done_word} {changed} action{'s' if changed != 1 else ''}")
    for message in refused.values():
        click.echo(message, err=True)
    if refused:
        ctx.exit(1)
