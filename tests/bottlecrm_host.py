"""The real BottleCRM (Django-CRM backend) on PostgreSQL, started once per test session.

Why the real server and not only the fake: the fake was written from ``openapi.yaml`` and
agreed with it, while the server answers differently (issue 13). This module prepares a
Python 3.12 virtualenv from the host's ``pyproject.toml`` with ``uv.lock``'s pins as pip
constraints (cached under ``~/.cache/crm_journeys`` keyed by the lock's hash), migrates
once into a template database (keyed by the same hash plus the migrations), copies it for
the session with ``CREATE DATABASE ... TEMPLATE``, runs ``manage.py runserver`` on a free
loopback port and creates an organisation with three people and their access tokens.

``python -m tests.bottlecrm_host prepare`` does the slow part ahead of the tests (CI).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import tomllib
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest


def _host_dir() -> Path:
    """The BottleCRM sources: as configured, else in the `shared/` folder beside the
    checkout (or beside any folder above it, for a clone made elsewhere in the tree)."""
    if os.environ.get("CRM_JOURNEYS_BOTTLECRM_DIR"):
        return Path(os.environ["CRM_JOURNEYS_BOTTLECRM_DIR"])
    tail = Path("shared") / "hosts" / "bottlecrm" / "backend"
    here = Path(__file__).resolve()
    found = [p / tail for p in here.parents[1:] if (p / tail).is_dir()]
    return found[0] if found else here.parents[2] / tail


HOST_DIR = _host_dir()
PYTHON312 = os.environ.get("CRM_JOURNEYS_PYTHON312", "/root/.pyenv/versions/3.12.1/bin/python3")
PG_URL = os.environ.get("CRM_JOURNEYS_TEST_DATABASE_URL",
                        "postgresql://postgres@127.0.0.1:5432/postgres")
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "crm_journeys"
REDIS = os.environ.get("CRM_JOURNEYS_BOTTLECRM_REDIS", "redis://127.0.0.1:6379/15")

PEOPLE_SCRIPT = r"""
import json, sys
from common.models import Org, Profile, PersonalAccessToken, User
for tag in %(tags)s:
    org = Org.objects.create(name="Journeys Test Org " + tag)
    out = {"org": str(org.id), "people": {}}
    for key, email, role, active, name in [
            ("integration", f"journeys-bot.{tag}@example.com", "ADMIN", True, ""),
            ("admin", f"ada.admin.{tag}@example.com", "ADMIN", True, ""),
            ("sales", f"sam.sales.{tag}@example.com", "USER", True, "Sam Seller"),
            ("member", f"mia.member.{tag}@example.com", "USER", True, ""),
            ("gone", f"gus.gone.{tag}@example.com", "USER", False, "Gus Gone")]:
        user = User.objects.create(email=email, name=name, is_active=True)
        profile = Profile.objects.create(user=user, org=org, role=role, is_active=active)
        raw, pat = PersonalAccessToken.generate(profile=profile, name=f"{key} token")
        out["people"][key] = {"email": email, "user_id": str(user.id),
                              "profile_id": str(profile.id), "token": raw}
    sys.stdout.write("PEOPLE=" + json.dumps(out) + "\n")
"""


class HostUnavailable(RuntimeError):
    """Python 3.12, PostgreSQL or the host's sources are missing: the tests skip."""


@dataclass
class Person:
    email: str
    user_id: str
    profile_id: str
    token: str


@dataclass
class Org:
    """An organisation with five people: the integration user and a human admin (ADMIN),
    a salesperson and a member (USER), each with a personal access token, and a
    salesperson whose profile was deactivated (``gone``: left the company)."""

    id: str
    people: dict[str, Person]


@dataclass
class BottleCrmHost:
    """A running BottleCRM: its URL, its database name and the people made in it."""

    url: str
    database: str
    org: Org
    process: subprocess.Popen[bytes] | None = None
    env: dict[str, str] = field(default_factory=dict)

    def new_org(self) -> Org:
        """Another organisation, for a test that must see only its own records."""
        return _make_orgs(self.env, 1)[0]

    def new_orgs(self, count: int) -> list[Org]:
        """Several at once: starting Django costs seconds, creating an org milliseconds."""
        return _make_orgs(self.env, count)

    def sql(self, query: str, **params: Any) -> list[tuple[Any, ...]]:
        """Read the host's own tables (``:name`` parameters): its data model is the truth
        for what a write did. As the superuser, so row-level security does not filter."""
        from sqlalchemy import create_engine, text
        engine = create_engine(_db_url(self.database))
        try:
            with engine.begin() as conn:
                result = conn.execute(text(query), params)
                return [tuple(r) for r in result] if result.returns_rows else []
        finally:
            engine.dispose()

    def shell(self, code: str) -> str:
        """Run Python inside the host (``manage.py shell -c``), e.g. to act as a human."""
        return _manage(self.env, "shell", "-c", code).stdout


def lock_hash() -> str:
    digest = hashlib.sha256()
    for name in ("uv.lock", "pyproject.toml"):
        digest.update((HOST_DIR / name).read_bytes())
    return digest.hexdigest()[:16]


def _migrations_hash() -> str:
    digest = hashlib.sha256(lock_hash().encode())
    for path in sorted(HOST_DIR.glob("*/migrations/*.py")):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def check_available() -> None:
    if not Path(PYTHON312).exists():
        raise HostUnavailable(f"Python 3.12 not found at {PYTHON312} (set CRM_JOURNEYS_PYTHON312)")
    if not (HOST_DIR / "manage.py").exists():
        raise HostUnavailable(f"BottleCRM sources not found in {HOST_DIR}")
    try:
        _admin_sql("SELECT 1")
    except Exception as exc:  # noqa: BLE001 - any connection failure means "no PostgreSQL"
        raise HostUnavailable(f"PostgreSQL not reachable at {PG_URL}: {exc}") from exc


def venv() -> Path:
    """The host's virtualenv, built on first use and reused while ``uv.lock`` is unchanged."""
    target = CACHE / f"bottlecrm-venv-{lock_hash()}"
    python = target / "bin" / "python"
    if (target / ".complete").exists():
        return python
    shutil.rmtree(target, ignore_errors=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([PYTHON312, "-m", "venv", str(target)], check=True)
    lock = tomllib.loads((HOST_DIR / "uv.lock").read_text())
    pins = [f"{p['name']}=={p['version']}" for p in lock["package"]
            if "registry" in p.get("source", {})]
    constraints = target / "constraints.txt"
    constraints.write_text("\n".join(pins) + "\n")
    deps = tomllib.loads((HOST_DIR / "pyproject.toml").read_text())["project"]["dependencies"]
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                    "-c", str(constraints), *deps], check=True)
    (target / ".complete").write_text(json.dumps(pins))
    return python


def _db_url(name: str) -> str:
    return PG_URL.rsplit("/", 1)[0] + f"/{name}"


def _admin_sql(statement: str) -> None:
    from sqlalchemy import create_engine, text
    engine = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(text(statement))
    finally:
        engine.dispose()


def _database_exists(name: str) -> bool:
    from sqlalchemy import create_engine, text
    engine = create_engine(PG_URL)
    try:
        with engine.connect() as conn:
            return conn.execute(text("SELECT 1 FROM pg_database WHERE datname = :n"),
                                {"n": name}).first() is not None
    finally:
        engine.dispose()


def _env(database: str) -> dict[str, str]:
    from sqlalchemy.engine import make_url
    url = make_url(PG_URL)
    return {**{k: v for k, v in os.environ.items() if not k.startswith(("DB", "DJANGO"))},
            "SECRET_KEY": "crm-journeys-test-" + uuid.uuid4().hex, "ENV_TYPE": "dev",
            "DEBUG": "False", "DBNAME": database, "DBUSER": url.username or "postgres",
            "DBPASSWORD": url.password or "", "DBHOST": url.host or "127.0.0.1",
            "DBPORT": str(url.port or 5432), "CELERY_BROKER_URL": REDIS,
            "CELERY_RESULT_BACKEND": REDIS, "ALLOWED_HOSTS": "127.0.0.1,localhost",
            "EMAIL_BACKEND": "django.core.mail.backends.console.EmailBackend",
            "DOMAIN_NAME": "http://127.0.0.1", "FRONTEND_URL": "http://127.0.0.1",
            "PYTHONDONTWRITEBYTECODE": "1"}


def _manage(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    python = env["_PYTHON"]
    run = subprocess.run([python, "manage.py", *args], cwd=HOST_DIR, env=env, text=True,
                         capture_output=True)
    if run.returncode:
        raise RuntimeError(f"manage.py {args[0]} failed:\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}")
    return run


def template() -> str:
    """A migrated database kept between sessions (migrating takes minutes on busy cores)."""
    name = f"bottlecrm_tpl_{_migrations_hash()}"
    if _database_exists(name):
        return name
    building = name + "_building"
    _admin_sql(f'DROP DATABASE IF EXISTS "{building}" WITH (FORCE)')
    _admin_sql(f'CREATE DATABASE "{building}"')
    env = {**_env(building), "_PYTHON": str(venv())}
    _manage(env, "migrate", "--noinput")
    _admin_sql(f'ALTER DATABASE "{building}" RENAME TO "{name}"')
    return name


@contextmanager
def _exclusive() -> Iterator[None]:
    """One builder at a time (two sessions starting together share the cache)."""
    CACHE.mkdir(parents=True, exist_ok=True)
    with (CACHE / "bottlecrm.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def prepared() -> tuple[str, str]:
    """The slow, cacheable part: the venv's python and the migrated template's name."""
    check_available()
    with _exclusive():
        return str(venv()), template()


def prepare() -> None:
    prepared()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_up(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    import urllib.error
    import urllib.request
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"BottleCRM exited:\n{log.read_text()[-3000:]}")
        try:
            urllib.request.urlopen(url + "/api/profile/", timeout=2)  # noqa: S310 - loopback
        except urllib.error.HTTPError:
            return  # any HTTP answer means it is serving
        except OSError:
            time.sleep(0.3)
            continue
        return
    raise RuntimeError(f"BottleCRM did not answer within 120 s:\n{log.read_text()[-3000:]}")


def start(log_dir: Path) -> BottleCrmHost:
    python, source = prepared()
    _drop_orphans()
    database = f"bottlecrm_run_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    _admin_sql(f'CREATE DATABASE "{database}" TEMPLATE "{source}"')
    env = {**_env(database), "_PYTHON": python}
    [org] = _make_orgs(env, 1)
    port = _free_port()
    log = log_dir / "bottlecrm.log"
    process = subprocess.Popen(
        [python, "manage.py", "runserver", f"127.0.0.1:{port}", "--noreload"],
        cwd=HOST_DIR, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT,
        preexec_fn=_die_with_parent)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_up(url, process, log)
    except Exception:
        stop(BottleCrmHost(url, database, org, process))
        raise
    return BottleCrmHost(url, database, org, process, env)


def _die_with_parent() -> None:
    """The server stops when the test session dies, even by ``kill -9`` (Linux)."""
    import ctypes
    import signal
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _drop_orphans() -> None:
    """Databases of sessions that died without cleaning up (their process is gone)."""
    from sqlalchemy import create_engine, text
    engine = create_engine(PG_URL)
    try:
        with engine.connect() as conn:
            names = conn.execute(text("SELECT datname FROM pg_database "
                                      "WHERE datname LIKE 'bottlecrm_run_%'")).scalars().all()
    finally:
        engine.dispose()
    for name in names:
        pid = name.split("_")[2]
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            _admin_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _make_orgs(env: dict[str, str], count: int) -> list[Org]:
    tags = [uuid.uuid4().hex[:8] for _ in range(count)]
    made = _manage(env, "shell", "-c", PEOPLE_SCRIPT % {"tags": json.dumps(tags)}).stdout
    found = [json.loads(line[7:]) for line in made.splitlines() if line.startswith("PEOPLE=")]
    return [Org(d["org"], {k: Person(**v) for k, v in d["people"].items()}) for d in found]


def stop(host: BottleCrmHost) -> None:
    if host.process is not None:
        host.process.terminate()
        try:
            host.process.wait(10)
        except subprocess.TimeoutExpired:
            host.process.kill()
            host.process.wait()
    _admin_sql(f'DROP DATABASE IF EXISTS "{host.database}" WITH (FORCE)')


REQUIRE = "CRM_JOURNEYS_REQUIRE_BOTTLECRM"  # CI sets it: a missing host fails, never skips


@pytest.fixture(scope="session")
def bottlecrm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BottleCrmHost]:
    """The real BottleCRM, once per session (skipped only without Python 3.12 or PostgreSQL)."""
    try:
        host = start(tmp_path_factory.mktemp("bottlecrm"))
    except HostUnavailable as exc:
        if os.environ.get(REQUIRE):
            pytest.fail(f"{REQUIRE} is set but the real BottleCRM cannot run: {exc}")
        pytest.skip(f"real BottleCRM not available: {exc}")
    try:
        yield host
    finally:
        stop(host)


if __name__ == "__main__":
    if sys.argv[1:] == ["prepare"]:
        started = time.monotonic()
        try:
            prepare()
        except HostUnavailable as exc:
            sys.exit(f"the real BottleCRM cannot run here: {exc}")
        print(f"BottleCRM venv and template ready in {time.monotonic() - started:.0f} s")
    else:
        sys.exit("usage: python -m tests.bottlecrm_host prepare")
