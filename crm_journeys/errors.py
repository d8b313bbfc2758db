"""The one exception tree of crm_journeys, grouped by how the caller must react."""

from __future__ import annotations


class CrmJourneysError(Exception):
    """Root of every error this package raises on purpose."""


class DefinitionError(CrmJourneysError):
    """An invalid journey document: show it to the author, never retry.

    ``errors`` maps a JSON path (``steps[2].params.tag``) to a list of plain-language
    messages, so a form can put each message next to the field it concerns.
    """

    def __init__(self, errors: dict[str, list[str]]):
        self.errors = {path: list(msgs) for path, msgs in errors.items()}
        first = next(iter(self.errors.items()), ("", ["invalid journey"]))
        more = sum(len(m) for m in self.errors.values()) - 1
        suffix = f" (and {more} more)" if more > 0 else ""
        super().__init__(f"{first[0] or '$'}: {first[1][0]}{suffix}")


class EngineLimitError(DefinitionError):
    """A valid journey that would exceed a hard limit of the rules engine."""


class NotFound(CrmJourneysError):
    """The thing asked for does not exist for this tenant."""


class PluginNotFound(CrmJourneysError):
    """A connector or action name that no installed plug-in provides."""


class ConnectorError(CrmJourneysError):
    """Base for failures talking to a host CRM."""


class RetriableConnectorError(ConnectorError):
    """429, 5xx, timeout, connection refused: the outbox retries later.

    ``retry_after`` (seconds) is the host's own hint when it gave one.
    """

    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class BudgetExhaustedError(RetriableConnectorError):
    """The host's daily or burst budget is spent: a circuit stays open until ``retry_after``."""


class FatalConnectorError(ConnectorError):
    """Other 4xx (bad request, forbidden, not found): dead-letter with the reason."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


class WebhookRejected(CrmJourneysError):
    """An inbound webhook whose signature, secret or timestamp does not check out."""
