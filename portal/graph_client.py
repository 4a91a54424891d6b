"""The process's one GraphClient, built from Django settings.

Every part of the portal that calls Graph gets its client here (``get_graph_client()``, then
``.with_priority("sync")`` or ``"bulk"`` in background tasks), so the MSAL token cache, the HTTP
connection pool and the shared-budget connection are created once per process.

Fair shares: the budget serves agents round-robin by their Entra object id (the Django user's
``username``). :class:`AgentFairShareMiddleware` marks the request's agent, so that
``get_graph_client()`` called while serving a request returns that agent's view
(``client.for_agent(oid)``); :func:`graph_client_for` gives it explicitly (for work handed to
another thread, which does not inherit the mark).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from django.conf import settings
from django.http import HttpRequest, HttpResponse

from graph import BudgetRate, GraphClient, GraphConfig
from portal.config import ConfigError

_client: GraphClient | None = None
_lock = threading.Lock()
# The fair key (agent oid) of the work on this thread, or the request being served (its user is
# read only when a Graph client is asked for: /healthz must not load a session).
_agent: ContextVar[str | HttpRequest | None] = ContextVar("graph_fair_key", default=None)


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
            bulk_reserve=settings.GRAPH_BULK_RESERVE,
            # One budget per app registration and tenant: that is what Graph throttles by.
            budget_prefix=f"graph:budget:{settings.ENTRA_TENANT_ID}:{settings.ENTRA_CLIENT_ID}",
        )
    except ValueError as exc:
        raise ConfigError("GRAPH settings", f"are unusable: {exc}") from exc


def _process_client() -> GraphClient:
    global _client
    if _client is None:
        with _lock:
            if _client is None:
                _client = GraphClient(graph_config_from_settings())
    return _client


def get_graph_client() -> GraphClient:
    """The process's GraphClient (interactive priority), created on first use; while a request
    of a signed-in agent is served (see :class:`AgentFairShareMiddleware`), that agent's view."""
    client = _process_client()
    agent = _agent.get()
    if isinstance(agent, HttpRequest):
        agent = fair_key_of(agent)
    return client.for_agent(agent) if agent else client


def fair_key_of(request: HttpRequest) -> str | None:
    """The budget's fair key for ``request``: the signed-in person's Entra object id."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return None
    return user.get_username() or None


def graph_client_for(request: HttpRequest) -> GraphClient:
    """The interactive client view of ``request``'s agent (its fair share of the budget)."""
    client = _process_client()
    key = fair_key_of(request)
    return client.for_agent(key) if key else client


@contextmanager
def acting_for(key: str | HttpRequest | None) -> Iterator[None]:
    """Within the block, ``get_graph_client()`` on this thread is ``key``'s view (or that of
    the request's agent)."""
    token = _agent.set(key)
    try:
        yield
    finally:
        _agent.reset(token)


class AgentFairShareMiddleware:
    """Serves each request as its signed-in agent's share of the Graph budget (after
    AuthenticationMiddleware)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        with acting_for(request):
            return self.get_response(request)


def check_token() -> None:
    """For /readyz: raises GraphAuthError (bad credentials) or GraphTokenUnavailable (login
    host down) unless the app can get a Graph token (from MSAL's cache when it has one)."""
    _process_client().check_token()


def budget_stalls() -> dict[str, str]:
    """For /readyz: the throttling classes stalled longer than ``GRAPH_BUDGET_STALL_SECONDS``
    (calls wait and nothing was granted, or a 429 pause has longer left), each with why."""
    return _process_client().budget.stalls(settings.GRAPH_BUDGET_STALL_SECONDS)


def reset_graph_client() -> None:
    """Forget the process's client (tests that change settings call this)."""
    global _client
    with _lock:
        _client = None
