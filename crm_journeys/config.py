"""Where crm_journeys keeps its state: one resolver for every entry point.

``serve``, ``worker``, every other CLI command and ``create_app`` (and the extension in a
host app) ask ``resolve`` for the database URL, the instance folder and the keys, so they
always meet the same database and can read each other's sealed secrets, from whatever
working directory they start. Each value comes from the first of:

* database URL: ``--database`` (or the app's ``CRM_JOURNEYS_DATABASE_URL`` config key),
  the ``CRM_JOURNEYS_DATABASE_URL`` environment variable, else SQLite in the instance folder;
* instance folder: the ``CRM_JOURNEYS_INSTANCE`` environment variable (made absolute),
  else the user's data folder (``$XDG_DATA_HOME/crm-journeys``, by default
  ``~/.local/share/crm-journeys``): never a path relative to the working directory;
* credentials key (Fernet): ``CRM_JOURNEYS_SECRET_KEY``, else ``secret.key`` in the
  instance folder, made once with owner-only permissions;
* web session key: ``CRM_JOURNEYS_WEB_SECRET``, else ``web-secret`` in the instance folder.

``crm-journeys config`` prints what was resolved and from where, never a key.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import make_url

ENV_URL = "CRM_JOURNEYS_DATABASE_URL"
ENV_INSTANCE = "CRM_JOURNEYS_INSTANCE"
ENV_SECRET_KEY = "CRM_JOURNEYS_SECRET_KEY"
ENV_WEB_SECRET = "CRM_JOURNEYS_WEB_SECRET"


@dataclass(frozen=True)
class Resolved:
    database_url: str
    database_from: str  # "--database", "config", ENV_URL or "instance folder"
    instance: Path
    instance_from: str  # ENV_INSTANCE or "user data folder"

    @property
    def secret_key_file(self) -> Path:
        return self.instance / "secret.key"

    @property
    def web_secret_file(self) -> Path:
        return self.instance / "web-secret"

    def describe(self) -> dict[str, str]:
        """What ``crm-journeys config`` prints: locations and sources, no key material."""
        return {
            "database_url": make_url(self.database_url).render_as_string(hide_password=True),
            "database_from": self.database_from,
            "instance": str(self.instance),
            "instance_from": self.instance_from,
            "secret_key_from": ENV_SECRET_KEY if os.environ.get(ENV_SECRET_KEY) else str(self.secret_key_file),
            "web_secret_from": ENV_WEB_SECRET if os.environ.get(ENV_WEB_SECRET) else str(self.web_secret_file),
        }


def instance_folder() -> tuple[Path, str]:
    """The instance folder (created) and where its location came from."""
    if os.environ.get(ENV_INSTANCE):
        path, source = Path(os.environ[ENV_INSTANCE]).expanduser().resolve(), ENV_INSTANCE
    else:
        data = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
        path, source = Path(data).expanduser().resolve() / "crm-journeys", "user data folder"
    path.mkdir(parents=True, exist_ok=True)
    return path, source


def resolve(database_url: str | None = None, *, given_by: str = "--database") -> Resolved:
    """Everything at once; ``database_url`` is an explicit choice (a flag, an app's config)."""
    instance, instance_from = instance_folder()
    if database_url:
        return Resolved(database_url, given_by, instance, instance_from)
    if os.environ.get(ENV_URL):
        return Resolved(os.environ[ENV_URL], ENV_URL, instance, instance_from)
    return Resolved(f"sqlite:///{instance / 'crm_journeys.db'}", "instance folder", instance, instance_from)


def kept_secret_key() -> tuple[Path, str]:
    """The instance folder's own Fernet key (made once), for when ``CRM_JOURNEYS_SECRET_KEY``
    is not set; ``crm_journeys.secrets`` warns about it."""
    path = resolve().secret_key_file
    return path, _kept(path, _fernet_key)


def web_secret() -> str:
    """The key that signs web sessions."""
    return os.environ.get(ENV_WEB_SECRET) or _kept(resolve().web_secret_file, lambda: secrets.token_urlsafe(48))


def _fernet_key() -> str:
    from cryptography.fernet import Fernet

    return Fernet.generate_key().decode()


def _kept(path: Path, make: Callable[[], str]) -> str:
    """A value kept in a file of the instance folder, made once, readable by its owner only."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    else:
        with os.fdopen(fd, "w") as f:
            f.write(make())
    return path.read_text().strip()
