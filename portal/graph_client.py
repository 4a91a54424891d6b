"""The process's one GraphClient, built from Django settings.

Every part of the portal that calls Graph gets its client here (``get_graph_client()``, then
``.with_priority("sync")`` or ``"bulk"`` in background tasks), so the MSAL token cache, the HTTP
connection pool and the shared-budget connection are created once per process.
"""

from __future__ import annotations

import threading

from django.conf import settings

from graph import BudgetRate, GraphClient, GraphConfig
from portal.config import ConfigError

_client: GraphClient | None = None
_lock = threading.Lock()


def _budget(name: str) -> BudgetRate:
    try:
        return BudgetRate.parse(getattr(settings, name))
    except ValueError as exc:
        raise ConfigError(name, str(exc)) from exc


def graph_config_from_settings() -> GraphConfig:
    """A GraphConfig from the ENTRA_* / GRAPH_* / REDIS_URL settings (see portal/settings.py).

    Raises ConfigError naming the setting when a value is unusable.
    """
    try:
        return GraphConfig(
            tenant_id=settings.ENTRA_TENANT_ID,
            client_id=settings.ENTRA_CLIENT_ID,
            client_secret=settings.ENTRA_CLIENT_SECRET,
            client_cert_path=settings.ENTRA_CLIENT_CERT_PATH,
            login_host=settings.ENTRA_LOGIN_HOST,
            graph_url=settings.GRAPH_URL,
            ca_bundle=settings.ENTRA_CA_BUNDLE,
            https_proxy=settings.ENTRA_HTTPS_PROXY,
            no_proxy=settings.ENTRA_NO_PROXY,
            timeout=settings.GRAPH_TIMEOUT_SECONDS,
            max_retries=settings.GRAPH_MAX_RETRIES,
            max_retry_wait=settings.GRAPH_MAX_RETRY_WAIT_SECONDS,
            redis_url=settings.REDIS_URL,
            budgets={
                "reports": _budget("GRAPH_BUDGET_REPORTS"),
                "identity": _budget("GRAPH_BUDGET_IDENTITY"),
            },
            interactive_reserve=settings.GRAPH_INTERACTIVE_RESERVE,
            # One budget per app registration and tenant: that is what Graph throttles by.
            budget_prefix=f"graph:budget:{settings.ENTRA_TENANT_ID}:{settings.ENTRA_CLIENT_ID}",
        )
    except ValueError as exc:
        raise ConfigError("GRAPH settings", f"are unusable: {exc}") from exc


def get_graph_client() -> GraphClient:
    """The process's GraphClient (interactive priority), created on first use."""
    global _client
    if _client is None:
        with _lock:
            if _client is None:
                _client = GraphClient(graph_config_from_settings())
    return _client


def check_token() -> None:
    """For /readyz: raises GraphAuthError (bad credentials) or GraphTokenUnavailable (login
    host down) unless the app can get a Graph token (from MSAL's cache when it has one)."""
    get_graph_client().check_token()


def reset_graph_client() -> None:
    """Forget the process's client (tests that change settings call this)."""
    global _client
    with _lock:
        _client = None
