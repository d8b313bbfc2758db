"""The ``crm-journeys`` command: serve, work, migrate, validate, publish, simulate, demo,
install, prune finished rows, repair HubSpot installs, and (``cli_outbox``) failed actions."""

from __future__ import annotations

import json
import os
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import click

from crm_journeys.config import resolve
from crm_journeys.errors import ConnectorError, DefinitionError
from crm_journeys.runtime.delivery import PER_LANE, THREADS
from crm_journeys.storage.db import Database

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _current_db(ctx: click.Context) -> Database:
    """The command's database with its schema brought up to date first."""
    database = _db(ctx.find_root().obj["url"])
    database.upgrade()
    return database


def _db(url: str | None) -> Database:
    """The database every command meets (``crm_journeys.config``)."""
    return Database(resolve(url).database_url)


def _load_json(path: str) -> Any:
    try:
        return json.loads(Path(path).read_bytes().decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise click.ClickException(f"{path}: not UTF-8 text (byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise click.ClickException(f"{path}: not JSON ({exc})") from None
    except RecursionError:
        raise click.ClickException(f"{path}: the JSON nests too deeply") from None


def _print_definition_error(exc: DefinitionError) -> None:
    for path, messages in exc.errors.items():
        for message in messages:
            click.echo(f"  {path or '$'}: {message}", err=True)


LONG_RUNNING = ("serve", "worker")  # log at INFO by default; one-shot commands at WARNING


@click.group()
@click.option("--database", "database_url", default=None,
              help="SQLAlchemy URL (default: $CRM_JOURNEYS_DATABASE_URL, else SQLite in the "
                   "instance folder; see `crm-journeys config`).")
@click.option("--log-level", envvar="CRM_JOURNEYS_LOG_LEVEL", default=None,
              type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
              help="Log level (default: INFO for serve and worker, WARNING otherwise).")
@click.option("--log-format", envvar="CRM_JOURNEYS_LOG_FORMAT", default="json", show_default=True,
              type=click.Choice(["json", "text"]), help="One JSON object per line, or text.")
@click.pass_context
def main(ctx: click.Context, database_url: str | None, log_level: str | None, log_format: str) -> None:
    """Customer journeys for the CRM you already use."""
    from crm_journeys.logs import configure

    ctx.obj = {"url": database_url}
    configure(log_level or ("INFO" if ctx.invoked_subcommand in LONG_RUNNING else "WARNING"), log_format)


@main.command("config")
@click.pass_context
def config_cmd(ctx: click.Context) -> None:
    """Print the database, instance folder and key files every command resolves, and why."""
    for key, value in resolve(ctx.obj["url"]).describe().items():
        click.echo(f"{key}: {value}")


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=5000, show_default=True, type=int)
@click.option("--demo/--no-demo", default=True, show_default=True, help="Seed demo data into an empty database.")
@click.pass_context
def serve(ctx: click.Context, host: str, port: int, demo: bool) -> None:
    """Web and worker in one process (the embedded default)."""
    from werkzeug.serving import run_simple

    from crm_journeys.app import create_app

    config: dict[str, Any] = {"CRM_JOURNEYS_RUN_WORKER": True,
                              "CRM_JOURNEYS_DATABASE_URL": resolve(ctx.obj["url"]).database_url}
    app = create_app(config)
    if demo:
        from crm_journeys.demo import seed_demo

        state = app.extensions["crm_journeys"]
        for line in seed_demo(state.runtime, only_if_empty=True):
            click.echo(line)
    click.echo(f"crm_journeys on http://{host}:{port}/  (health: /healthz)")
    from crm_journeys.runtime.collector import tune_collector

    tune_collector()
    run_simple(host, port, app, threaded=True, use_reloader=False)


@main.command()
@click.option("--id", "worker_id", default=None, help="Worker name (default: host-pid).")
@click.option("--batch", default=200, show_default=True, help="Rows claimed per pass.")
@click.option("--lease", "lease_seconds", default=None, type=float,
              help="Seconds before a dead worker's claims are taken over (default 15 for outbox "
                   "rows, renewed while they are delivered).")
@click.option("--threads", default=THREADS, show_default=True, help="Deliveries in flight at once.")
@click.option("--per-lane", default=PER_LANE, show_default=True,
              help="Most deliveries in flight to one tenant's host at once.")
@click.option("--metrics-port", default=None, type=int,
              help="Serve /metrics and /healthz on this port (127.0.0.1).")
@click.pass_context
def worker(ctx: click.Context, worker_id: str | None, batch: int, lease_seconds: float | None,
           threads: int, per_lane: int, metrics_port: int | None) -> None:
    """Run a worker: wake-ups, inbox, outbox. Start several on PostgreSQL to scale out."""
    import signal
    import socket
    import threading

    from crm_journeys.runtime.worker import run_worker

    database = _current_db(ctx)
    database.dispose()
    name = worker_id or f"{socket.gethostname()}-{os.getpid()}"
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    click.echo(f"worker {name} on {database.engine.dialect.name}")
    try:
        run_worker(database.url, name, stop, batch=batch, lease_seconds=lease_seconds, threads=threads,
                   per_lane=per_lane, metrics_port=metrics_port)
    except KeyboardInterrupt:
        stop.set()


@main.group(invoke_without_command=True)
@click.pass_context
def lanes(ctx: click.Context) -> None:
    """Delivery lanes (tenant:host): parked until when and why, failures, budgets."""
    if ctx.invoked_subcommand is not None:
        return
    from crm_journeys.runtime.lanes import describe

    database = _current_db(ctx)
    with database.unit_of_work() as s:
        found = describe(s, _now(database))
    if not found:
        click.echo("no lane has failed or has a budget yet")
    for lane in found:
        parked = f"parked until {lane['parked_until']:%Y-%m-%d %H:%M:%S} ({lane['reason']})" \
            if lane["parked_until"] else "open"
        budget = (f", budget {lane['budget_left']}/{lane['budget_per_minute']} per minute left"
                  if lane["budget_per_minute"] is not None else "")
        click.echo(f"{lane['lane']}: {parked}, {lane['failures']} failures in a row{budget}")


@lanes.command("budget")
@click.argument("lane")
@click.argument("per_minute", type=click.IntRange(min=0), required=False)
@click.pass_context
def lanes_budget(ctx: click.Context, lane: str, per_minute: int | None) -> None:
    """Deliveries per minute for LANE (e.g. 3:crm), shared by every worker; none: unlimited."""
    from crm_journeys.runtime.lanes import set_budget

    if ":" not in lane:
        raise click.BadParameter("a lane is <tenant id>:<host>, e.g. 3:crm", param_hint="LANE")
    database = _current_db(ctx)
    with database.unit_of_work() as s:
        set_budget(s, lane, per_minute)
    click.echo(f"{lane}: " + (f"{per_minute} deliveries per minute" if per_minute is not None else "no budget"))


@main.group()
def db() -> None:
    """Database schema."""


@db.command("upgrade")
@click.pass_context
def db_upgrade(ctx: click.Context) -> None:
    """Apply every pending migration."""
    database = _current_db(ctx)
    click.echo(f"schema is current ({database.engine.dialect.name})")


@db.command("rotate-secrets")
@click.pass_context
def db_rotate_secrets(ctx: click.Context) -> None:
    """Re-encrypt stored secrets with the first key of CRM_JOURNEYS_SECRET_KEY."""
    from crm_journeys.runtime.key_rotation import rotate_all

    counts = rotate_all(_current_db(ctx))
    click.echo(f"re-encrypted the secrets of {counts['tenants']} tenants and {counts['journeys']} journeys")


@main.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
def validate(file: str) -> None:
    """Check a journey document; every error is printed with its JSON path."""
    from crm_journeys.actions.registry import installed_actions
    from crm_journeys.definition.checks import validate_document
    from crm_journeys.rules.compiler import compile_journey

    try:
        journey = validate_document(_load_json(file), actions=installed_actions())
        compiled = compile_journey(journey, "validate", "0")
    except DefinitionError as exc:
        click.echo(f"{file}: invalid", err=True)
        _print_definition_error(exc)
        sys.exit(1)
    except (RecursionError, OverflowError, ValueError) as exc:  # the edge: a message, never a traceback
        click.echo(f"{file}: invalid ({type(exc).__name__}: {str(exc)[:200]})", err=True)
        sys.exit(1)
    click.echo(f"{file}: valid ({len(journey.steps)} steps, {len(compiled.ruleset)} rules)")


def _tenant_id(session: Any, slug: str) -> int:
    from crm_journeys.runtime.tenants import ensure_tenant

    return ensure_tenant(session, slug, datetime.now(UTC), name=slug.title()).id


@main.command("publish")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--tenant", default="default", show_default=True)
@click.pass_context
def publish_cmd(ctx: click.Context, file: str, tenant: str) -> None:
    """Import a journey document and publish it."""
    from crm_journeys.actions.registry import installed_actions
    from crm_journeys.runtime.owners import owner_lookup
    from crm_journeys.runtime.services import Runtime
    from crm_journeys.runtime.versions import create_journey, publish

    database = _current_db(ctx)
    now = datetime.now(UTC)
    try:
        with database.unit_of_work() as s:  # committed first: the owner check reads it
            tid = _tenant_id(s, tenant)
        owners = owner_lookup(Runtime(db=database), tid)
        with database.unit_of_work() as s:
            journey = create_journey(s, tid, _load_json(file), now)
            version = publish(s, tid, journey.id, now, actions=installed_actions(), owners=owners)
            click.echo(f"published journey {journey.id} '{journey.name}' version {version.version}")
    except DefinitionError as exc:
        click.echo(f"{file}: not published", err=True)
        _print_definition_error(exc)
        sys.exit(1)


@main.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--tenant", default="default", show_default=True)
@click.pass_context
def import_cmd(ctx: click.Context, file: str, tenant: str) -> None:
    """Import a journey document as a draft (not validated until published)."""
    from crm_journeys.runtime.versions import create_journey

    database = _current_db(ctx)
    with database.unit_of_work() as s:
        journey = create_journey(s, _tenant_id(s, tenant), _load_json(file), datetime.now(UTC))
        click.echo(f"imported draft journey {journey.id}")


@main.command("export")
@click.argument("journey_id", type=int)
@click.option("--tenant", default="default", show_default=True)
@click.pass_context
def export_cmd(ctx: click.Context, journey_id: int, tenant: str) -> None:
    """Print a journey's current draft document as JSON."""
    from crm_journeys.runtime.tenants import tenant_by_slug
    from crm_journeys.runtime.versions import get_journey

    database = _db(ctx.obj["url"])
    with database.unit_of_work() as s:
        journey = get_journey(s, tenant_by_slug(s, tenant).id, journey_id)
        click.echo(json.dumps(journey.draft, indent=2, ensure_ascii=False))


@main.command()
@click.argument("journey", type=click.Path(exists=True, dir_okay=False))
@click.option("--events", "events_file", type=click.Path(exists=True, dir_okay=False), required=True,
              help="JSON lines: {at, type|name, email|contact_id, key, properties}, read as POST /api/events reads a body.")
@click.option("--contacts", "contacts_file", type=click.Path(exists=True, dir_okay=False), default=None,
              help="JSON list of contacts {email, first_name, tags, groups, fields, ...}.")
@click.option("--start", default=None, help="ISO start time of the virtual clock (default: first event).")
@click.option("--until", default=None, help="ISO end time (default: 30 days after the last event).")
def simulate(journey: str, events_file: str, contacts_file: str | None, start: str | None, until: str | None) -> None:
    """Run the real engine on a virtual clock and print a JSON report."""
    from crm_journeys.definition.dates import parse_datetime
    from crm_journeys.runtime.normalise import EventError
    from crm_journeys.runtime.simulate import ScriptedEvent, Simulation

    raw = [json.loads(line) for line in Path(events_file).read_text().splitlines() if line.strip()]
    stamps = [t for e in raw if (t := parse_datetime(e.get("at"))) is not None]
    first = parse_datetime(start) or min(stamps, default=None) or datetime.now(UTC)
    events = []
    for number, line in enumerate(raw, 1):
        try:
            events.append(ScriptedEvent.from_json(line, first))
        except EventError as exc:
            for name, reasons in exc.errors.items():
                click.echo(f"{events_file}: line {number}: {name}: {'; '.join(reasons)}", err=True)
            sys.exit(1)
    last = max((e.at for e in events), default=first)
    end = parse_datetime(until) or last + timedelta(days=30)
    sim = Simulation(_load_json(journey), first, end,
                     contacts=_load_json(contacts_file) if contacts_file else [], events=events)
    try:
        click.echo(json.dumps(sim.run(), indent=2, ensure_ascii=False, default=str))
    except DefinitionError as exc:
        click.echo(f"{journey}: invalid", err=True)
        _print_definition_error(exc)
        sys.exit(1)


@main.command()
@click.option("--tenant", default="default", show_default=True)
@click.pass_context
def demo(ctx: click.Context, tenant: str) -> None:
    """Seed the sandbox CRM with demo contacts and publish the example journeys."""
    from crm_journeys.demo import seed_demo
    from crm_journeys.runtime.services import Runtime

    database = _current_db(ctx)
    for line in seed_demo(Runtime(db=database), tenant=tenant, only_if_empty=False):
        click.echo(line)


@main.command()
@click.option("--tenant", default="default", show_default=True)
@click.option("--page-size", default=100, show_default=True)
@click.pass_context
def sync(ctx: click.Context, tenant: str, page_size: int) -> None:
    """Pull contacts from the tenant's CRM (resumable; shows progress)."""
    from crm_journeys.runtime.services import Runtime
    from crm_journeys.runtime.sync import sync_tenant
    from crm_journeys.runtime.tenants import tenant_by_slug

    database = _current_db(ctx)
    runtime = Runtime(db=database)
    with database.unit_of_work() as s:
        tid = tenant_by_slug(s, tenant).id
    with click.progressbar(length=0, label="contacts", show_pos=True) as bar:
        def progress(seen: int, total: int | None) -> None:
            bar.length = total or max(seen, 1)
            bar.update(seen - bar.pos)

        try:
            count = sync_tenant(runtime, tid, page_size=page_size, progress=progress)
        except ConnectorError as exc:
            raise click.ClickException(f"sync of {tenant} stopped: {exc}") from None
    click.echo(f"{count} contacts read")


@main.command()
@click.option("--tenant", default=None, help="Only this workspace (default: every one).")
@click.pass_context
def status(ctx: click.Context, tenant: str | None) -> None:
    """Each workspace's CRM and its last sync or webhook failure (cleared by a good sync)."""
    from sqlalchemy import select

    from crm_journeys.storage.models import Tenant

    with _current_db(ctx).unit_of_work() as s:
        query = select(Tenant).order_by(Tenant.slug)
        rows = s.scalars(query.where(Tenant.slug == tenant) if tenant else query).all()
        if tenant and not rows:
            raise click.ClickException(f"no tenant {tenant!r}")
        for row in rows:
            state = (f"last failure {row.connector_error_at:%Y-%m-%d %H:%M} UTC: "
                     f"{row.connector_error}" if row.connector_error else "ok")
            click.echo(f"{row.slug}\t{row.connector}\t{state}")



# --- users and API tokens (the first admin of a workspace is made here) ------------------

_ROLE_CHOICE = click.Choice(["admin", "editor", "viewer"])


@main.group()
def user() -> None:
    """Users who sign in to a workspace."""


@user.command("create")
@click.argument("email")
@click.option("--role", type=_ROLE_CHOICE, default="editor", show_default=True)
@click.option("--tenant", default="default", show_default=True, help="Workspace slug (made if missing).")
@click.password_option(help="Prompted for (twice) when left out.")
@click.pass_context
def user_create(ctx: click.Context, email: str, role: str, tenant: str, password: str) -> None:
    """Add a user with a role to a workspace."""
    from crm_journeys.auth import create_user

    database = _current_db(ctx)
    try:
        with database.unit_of_work() as s:
            create_user(s, _tenant_id(s, tenant), email, password, role)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    except Exception as exc:  # the unique (tenant, email) constraint
        if "unique" in str(exc).lower():
            raise click.ClickException(f"{email} is already a user of {tenant}") from None
        raise
    click.echo(f"{email.strip().lower()}: {role} of {tenant}")


@main.group()
def token() -> None:
    """API tokens for machines (events API, CRM hooks)."""


@token.command("create")
@click.argument("name")
@click.option("--role", type=_ROLE_CHOICE, default="editor", show_default=True)
@click.option("--tenant", default="default", show_default=True, help="Workspace slug (made if missing).")
@click.pass_context
def token_create(ctx: click.Context, name: str, role: str, tenant: str) -> None:
    """Create a token and print its secret (shown only this once; only a hash is kept)."""
    from crm_journeys.auth import create_api_token

    database = _current_db(ctx)
    with database.unit_of_work() as s:
        plaintext = create_api_token(s, _tenant_id(s, tenant), name, role)
    click.echo(plaintext)



def _pairs(items: tuple[str, ...], what: str) -> dict[str, str]:
    """``key=value`` options as given: text. ``--setting portal_id=62515`` stays the string
    the host's schema asks for; settings are typed by that schema (``typed_settings``)."""
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{item!r}: use KEY=VALUE", param_hint=what)
        out[key] = value
    return out


@main.command("install")
@click.argument("host")
@click.option("--tenant", required=True, help="Workspace slug for this CRM account.")
@click.option("--name", default="", help="Display name (default: the slug).")
@click.option("--setting", "settings", multiple=True, metavar="KEY=VALUE",
              help="A host setting (see plugin_manifest.json); repeat.")
@click.option("--credential", "credentials", multiple=True, metavar="KEY=VALUE",
              help="A credential: api_key (Odoo), token (BottleCRM), access_token (a "
                   "HubSpot private app, or tokens from an OAuth flow run elsewhere).")
@click.option("--check/--no-check", default=True, show_default=True,
              help="Prepare the host and read one page to prove the credentials.")
@click.pass_context
def install_cmd(ctx: click.Context, host: str, tenant: str, name: str, settings: tuple[str, ...],
                credentials: tuple[str, ...], check: bool) -> None:
    """Install into a CRM account with credentials given here (the browser flow for OAuth
    hosts is /install/HOST)."""
    from crm_journeys.install import InstallError, host_profile, install_tenant, typed_settings
    from crm_journeys.runtime.services import Runtime

    database = _current_db(ctx)
    try:
        props = host_profile(host).settings_schema()["properties"]
        tenant_id = install_tenant(Runtime(db=database), host, tenant, name,
                                   typed_settings(_pairs(settings, "--setting"), props),
                                   _pairs(credentials, "--credential"), check=check)
    except InstallError as exc:
        for field, message in exc.errors.items():
            click.echo(f"  {field}: {message}", err=True)
        raise click.ClickException(f"{host}: not installed") from None
    from crm_journeys.connectors.registry import load_connector

    changes = (f"webhooks: POST /hooks/crm/{tenant}"
               if "webhooks" in load_connector(host).capabilities else
               f"{host} sends no webhooks: the worker polls it for changes")
    click.echo(f"installed {host} as tenant {tenant!r} (id {tenant_id}); {changes}; "
               f"run `crm-journeys sync --tenant {tenant}`")


@main.command("uninstall")
@click.option("--tenant", required=True)
@click.confirmation_option(prompt="Delete every journey, contact and event of this tenant?")
@click.pass_context
def uninstall_cmd(ctx: click.Context, tenant: str) -> None:
    """Remove a tenant and all its data (the CRM's own records stay)."""
    from crm_journeys.install import uninstall
    from crm_journeys.runtime.services import Runtime
    from crm_journeys.runtime.tenants import tenant_by_slug

    database = _db(ctx.obj["url"])
    with database.unit_of_work() as s:
        tenant_id = tenant_by_slug(s, tenant).id
    deleted = uninstall(Runtime(db=database), tenant_id)
    click.echo(f"uninstalled {tenant}: " + ", ".join(f"{t} {n}" for t, n in sorted(deleted.items())))


@main.command("manifest")
@click.option("--check", is_flag=True, help="Fail if plugin_manifest.json is not current.")
@click.option("--output", type=click.Path(dir_okay=False), default=None,
              help="Where to write (default: plugin_manifest.json at the project root).")
def manifest_cmd(check: bool, output: str | None) -> None:
    """Generate plugin_manifest.json from the connector and action registries."""
    from crm_journeys.manifest import MANIFEST_PATH, render

    path = Path(output) if output else MANIFEST_PATH
    text = render()
    if check:
        if not path.exists() or path.read_text() != text:
            raise click.ClickException(f"{path} is stale: run `crm-journeys manifest`")
        click.echo(f"{path} is current")
        return
    path.write_text(text)
    click.echo(f"wrote {path}")

# --- retention: finished rows removed after a per-tenant period ---------------------------

def _now(database: Database) -> datetime:
    """The runtime's clock, the one every time-dependent decision reads."""
    from crm_journeys.runtime.services import Runtime

    return Runtime(db=database).clock.now()


@main.command("prune")
@click.option("--tenant", "tenants", multiple=True, help="Tenant slug; repeat (default: every tenant).")
@click.option("--dry-run", is_flag=True, help="Count what would be removed; remove nothing.")
@click.option("--batch-size", default=500, show_default=True, type=click.IntRange(1, 10_000),
              help="Rows per DELETE; each batch is its own transaction.")
@click.pass_context
def prune_cmd(ctx: click.Context, tenants: tuple[str, ...], dry_run: bool, batch_size: int) -> None:
    """Remove finished rows past each tenant's retention (the worker does it every 15 minutes)."""
    from crm_journeys.runtime.retention import prune

    database = _current_db(ctx)
    try:
        report = prune(database, _now(database), tenants, dry_run=dry_run, batch_size=batch_size)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    verb = "would remove" if dry_run else "removed"
    for slug, counts in report.items():
        click.echo(f"{slug}: {verb} {sum(counts.values())} rows")
        for name, count in counts.items():
            click.echo(f"  {name:<16} {count}")


@main.group()
def retention() -> None:
    """Per-tenant retention periods (days; null keeps for ever)."""


@retention.command("show")
@click.option("--tenant", "tenants", multiple=True, help="Tenant slug; repeat (default: every tenant).")
@click.pass_context
def retention_show(ctx: click.Context, tenants: tuple[str, ...]) -> None:
    """Print each tenant's retention policy, defaults included."""
    from crm_journeys.runtime.retention import policies

    database = _current_db(ctx)
    try:
        found = policies(database, tenants)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    for _, slug, policy in found:
        click.echo(f"{slug}: " + ", ".join(f"{k}={'never' if v is None else v}"
                                           for k, v in policy.as_dict().items()))


@retention.command("set")
@click.option("--tenant", required=True)
@click.argument("values", nargs=-1, required=True, metavar="KEY=DAYS...")
@click.pass_context
def retention_set(ctx: click.Context, tenant: str, values: tuple[str, ...]) -> None:
    """Override retention periods, e.g. ``inbox_days=45 dead_days=null``."""
    from crm_journeys.runtime.retention import SETTINGS_KEY, check_policy
    from crm_journeys.runtime.tenants import tenant_by_slug

    given = {k: None if v in ("null", "never") else int(v) if v.isdigit() else v
             for k, v in _pairs(values, "KEY=DAYS").items()}
    try:
        changes = check_policy(given)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="KEY=DAYS") from None
    database = _current_db(ctx)
    with database.unit_of_work() as s:
        row = tenant_by_slug(s, tenant)
        settings = dict(row.settings or {})
        settings[SETTINGS_KEY] = {**(settings.get(SETTINGS_KEY) or {}), **changes}
        row.settings = settings
    ctx.invoke(retention_show, tenants=(tenant,))


# --- HubSpot installs --------------------------------------------------------------------

@main.group()
def hubspot() -> None:
    """HubSpot installs."""


@hubspot.command("backfill-portals")
@click.option("--tenant", "tenants", multiple=True, help="Tenant slug; repeat (default: all lacking one).")
@click.pass_context
def hubspot_backfill_portals(ctx: click.Context, tenants: tuple[str, ...]) -> None:
    """Record the HubSpot account (portal id) of tenants installed without one, as
    HubSpot's token metadata names it, so the app's webhook URL reaches them."""
    from crm_journeys.install import backfill_portals
    from crm_journeys.runtime.services import Runtime

    database = _current_db(ctx)
    results = backfill_portals(Runtime(db=database), tenants)
    if not results:
        click.echo("every installed HubSpot tenant has its portal id")
    for result in results:
        hint = " (try again later)" if result.retry else ""
        click.echo(f"{result.slug}: {result.outcome}: {result.message}{hint}")
    if any(r.outcome in ("failed", "conflict") for r in results):
        ctx.exit(1)


# --- failed actions: the command-line side of the "Action errors" page ---------------------
from crm_journeys.cli_outbox import outbox  # noqa: E402  (it reaches back for _current_db and _now)

main.add_command(outbox)


if __name__ == "__main__":  # pragma: no cover
    main()
