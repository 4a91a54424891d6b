"""The Graph client: configuration, the HTTP session, retries, paging and the shared budget.

Django-free. ``portal/graph_client.py`` builds one :class:`GraphClient` per process from Django
settings; tests build their own from a :class:`GraphConfig`.

Retry rules (``_send``):

* every call has a timeout and a fresh ``client-request-id``;
* 429 and 503 are retried for every method (Graph has not processed a throttled request),
  honouring ``Retry-After``; a 429 also pauses the whole throttling class in the shared budget;
* other 5xx, timeouts and broken connections are retried only for idempotent operations; a POST
  or PATCH that may have reached Graph is never repeated: the caller gets a GraphTransient whose
  code is ``OutcomeUnknown`` and must re-read the state;
* a connection that was never established (refused, DNS, TLS handshake) is retried for all;
* without ``Retry-After`` the wait is exponential with full jitter; a wait longer than
  ``max_retry_wait`` is not slept: the error is raised at once (with ``retry_after``).

Egress: the session never reads the environment (``trust_env`` is off, so ``REQUESTS_CA_BUNDLE``
cannot replace ``ca_bundle``); an HTTPS proxy comes only from ``GraphConfig.https_proxy`` and
``no_proxy`` (the portal fills them from ``HTTPS_PROXY`` / ``NO_PROXY``), applied per URL by
:func:`proxy_for` to Graph and to MSAL's login-host calls alike. Through the proxy's CONNECT
tunnel TLS is still end to end, verified against ``ca_bundle``.

Priority: calls of the interactive view (an agent is waiting) in the identity and access class
carry ``x-ms-throttle-priority: high``; background views (sync, bulk) send no priority (normal).
Fair shares: :meth:`GraphClient.for_agent` gives a view whose calls carry the agent's key to the
budget, which serves keys round-robin (see :mod:`graph.budget`).
"""

from __future__ import annotations

import ipaddress
import os
import random
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import requests
import urllib3.exceptions

from graph.budget import (
    AGENT_PRIORITIES,
    BULK_RESERVE,
    DEFAULT_BUDGETS,
    BudgetBusy,
    BudgetRate,
    Priority,
    RequestBudget,
    classify_path,
)
from graph.errors import (
    GraphError,
    GraphProtocolError,
    GraphThrottled,
    GraphTransient,
    error_from_response,
    parse_retry_after,
)
from graph.operations import Operation
from graph.token import TokenSource

# Query options a caller may add; $select and $expand are fixed by the operation.
_CALLER_QUERY_OPTIONS = {"$filter", "$search", "$top", "$count", "$orderby"}
# Characters left readable in query values; everything else (", +, &, #, %, space) is encoded.
_QUERY_SAFE = "$'(),:/@"
# Graph's request header for the identity and access throttling class: "We recommend setting
# priority to high only for the requests initiated by the user"; absent means normal.
# https://learn.microsoft.com/en-us/graph/throttling-limits (Identity and access service limits,
# "Other headers", "Request headers")
THROTTLE_PRIORITY_HEADER = "x-ms-throttle-priority"
_PRIORITY_CLASSES = {"identity"}


@dataclass(frozen=True)
class GraphConfig:
    """Everything the client needs. ``budgets`` maps each throttling class to its rate;
    ``budget_prefix`` namespaces the Redis keys (one tenant per prefix)."""

    tenant_id: str
    client_id: str
    client_secret: str = field(default="", repr=False)
    client_cert_path: str = ""
    login_host: str = "login.microsoftonline.com"
    graph_url: str = "https://graph.microsoft.com"
    ca_bundle: str = ""
    timeout: float = 15.0
    max_retries: int = 4
    max_retry_wait: float = 60.0
    redis_url: str = "redis://127.0.0.1:6379/0"
    budgets: Mapping[str, BudgetRate] = field(default_factory=lambda: dict(DEFAULT_BUDGETS))
    interactive_reserve: int = 1
    bulk_reserve: int = BULK_RESERVE
    budget_prefix: str = "graph:budget"
    # The first backoff step without Retry-After (seconds); later steps double it.
    backoff_base: float = 1.0
    # An HTTP(S) proxy for every call (CONNECT tunnels; may hold user:password, so not in repr),
    # and the hosts that bypass it (NO_PROXY syntax, see bypasses_proxy).
    https_proxy: str = field(default="", repr=False)
    no_proxy: str = ""

    def __post_init__(self) -> None:
        for name in ("tenant_id", "client_id", "login_host", "graph_url", "redis_url"):
            if not getattr(self, name):
                raise ValueError(f"GraphConfig.{name} is required")
        if not (self.client_secret or self.client_cert_path):
            raise ValueError("GraphConfig needs client_secret or client_cert_path")
        if urlsplit(self.graph_url).scheme != "https":
            raise ValueError(f"GraphConfig.graph_url must be https, not {self.graph_url!r}")
        if self.timeout <= 0 or self.max_retries < 0 or self.max_retry_wait < 0:
            raise ValueError("GraphConfig timeout must be > 0, retries and retry wait >= 0")
        if self.https_proxy:
            check_proxy_url(self.https_proxy)
        object.__setattr__(self, "graph_url", self.graph_url.rstrip("/"))


def check_proxy_url(url: str) -> None:
    """Raises ValueError unless ``url`` is an ``http://`` or ``https://`` proxy URL with a host
    (the message never repeats the URL: it may carry a password)."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ValueError("the proxy URL is malformed (expected http://host:port)") from exc
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise ValueError("the proxy URL must be http://host:port or https://host:port")
    if parts.path not in {"", "/"} or parts.query or parts.fragment or port == 0:
        raise ValueError("the proxy URL must be only scheme://[user:password@]host:port")


def bypasses_proxy(url: str, no_proxy: str) -> bool:
    """True when ``url``'s host is listed in ``no_proxy``, read as curl and requests read
    ``NO_PROXY``: comma-separated entries; ``*`` matches every host; a name matches itself and
    its subdomains (a leading dot is ignored); ``name:port`` only that port; an IP address or
    CIDR range (``10.0.0.0/8``) matches IP-literal hosts. Names compare case-insensitively."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower().rstrip(".")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return False
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
    for raw in no_proxy.split(","):
        entry = raw.strip().lower()
        if not entry:
            continue
        if entry == "*":
            return True
        if "/" in entry:
            try:
                network = ipaddress.ip_network(entry, strict=False)
            except ValueError:
                continue
            if address is not None and address.version == network.version:
                if address in network:
                    return True
            continue
        name, wanted_port = entry, None
        if entry.startswith("["):  # [::1]:443
            name, _, rest = entry[1:].partition("]")
            wanted_port = rest[1:] if rest.startswith(":") else None
        elif entry.count(":") == 1:
            name, wanted_port = entry.split(":")
        if wanted_port is not None and wanted_port != str(port):
            continue
        name = name.lstrip(".").rstrip(".")
        if not name:
            continue
        if host == name or (address is None and host.endswith("." + name)):
            return True
    return False


def proxy_for(url: str, https_proxy: str, no_proxy: str) -> str | None:
    """The proxy URL to reach ``url`` through, or None for a direct connection."""
    if not https_proxy or bypasses_proxy(url, no_proxy):
        return None
    return https_proxy


@dataclass(frozen=True)
class GraphResponse:
    """A successful answer: status, parsed JSON (None for 204) and the Graph request-id."""

    status: int
    data: Any
    request_id: str | None
    client_request_id: str


@dataclass(frozen=True)
class RawPage:
    """One page of a collection as JSON objects (the typed ``Page`` is built by the callers)."""

    values: tuple[Mapping[str, Any], ...]
    next_link: str | None
    count: int | None


class _HttpSession(requests.Session):
    """A Session that never reads proxy or CA settings from the environment, sends each request
    through the configured proxy unless ``no_proxy`` lists its host, and applies a default
    timeout to every request (MSAL calls ``post``/``get`` without one)."""

    def __init__(
        self, verify: str | bool, timeout: float, *, https_proxy: str = "", no_proxy: str = ""
    ) -> None:
        super().__init__()
        # REQUESTS_CA_BUNDLE would otherwise override ``verify`` (see GRAPH.md), and HTTPS_PROXY
        # would be read behind the configuration's back.
        self.trust_env = False
        self.verify = verify
        self._default_timeout = timeout
        self._https_proxy = https_proxy
        self._no_proxy = no_proxy

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("timeout", (self._default_timeout, self._default_timeout))
        target = url.decode() if isinstance(url, bytes) else url
        proxy = proxy_for(target, self._https_proxy, self._no_proxy)
        # Only https is ever called; an explicit empty mapping keeps the connection direct.
        kwargs["proxies"] = {"https": proxy} if proxy else {}
        return super().request(method, url, *args, **kwargs)


def http_session(
    verify: str | bool, timeout: float, *, https_proxy: str = "", no_proxy: str = ""
) -> requests.Session:
    """A session with the client's egress rules (no environment, the proxy per URL, a default
    timeout), for another caller of the login host."""
    return _HttpSession(verify, timeout, https_proxy=https_proxy, no_proxy=no_proxy)


class _Shared:
    """What all priority views of a client share: session, MSAL application, budget.

    Rebuilt after a fork (Celery prefork) so that no process reuses its parent's sockets.
    """

    def __init__(self, config: GraphConfig) -> None:
        self.config = config
        self._pid = -1
        self._lock = threading.Lock()
        self._build()

    def _build(self) -> None:
        config = self.config
        self.session = _HttpSession(
            config.ca_bundle or True,
            config.timeout,
            https_proxy=config.https_proxy,
            no_proxy=config.no_proxy,
        )
        self.tokens = TokenSource(
            tenant_id=config.tenant_id,
            client_id=config.client_id,
            client_secret=config.client_secret,
            client_cert_path=config.client_cert_path,
            login_host=config.login_host,
            graph_url=config.graph_url,
            http_client=self.session,
        )
        self.budget = RequestBudget(
            config.redis_url,
            config.budgets,
            interactive_reserve=config.interactive_reserve,
            bulk_reserve=config.bulk_reserve,
            prefix=config.budget_prefix,
        )
        self._pid = os.getpid()

    def check_fork(self) -> None:
        if self._pid != os.getpid():
            with self._lock:
                if self._pid != os.getpid():
                    self._build()


def _never_sent(exc: requests.ConnectionError) -> bool:
    """True when the request cannot have reached the server (no connection was made)."""
    if isinstance(exc, requests.ConnectTimeout | requests.exceptions.SSLError):
        return True
    reason = exc.args[0] if exc.args else None
    if isinstance(reason, urllib3.exceptions.MaxRetryError):
        reason = reason.reason
    return isinstance(
        reason,
        urllib3.exceptions.NewConnectionError
        | urllib3.exceptions.ConnectTimeoutError
        | urllib3.exceptions.NameResolutionError,
    )


class GraphClient:
    """The one door to Microsoft Graph. ``priority`` is the budget priority of this view's calls;
    :meth:`with_priority` gives another view sharing session, MSAL application and budget."""

    def __init__(
        self,
        config: GraphConfig,
        *,
        priority: Priority | str = Priority.INTERACTIVE,
        fair_key: str | None = None,
        no_wait_hold: float | None = None,
        hold_id: str = "",
        _shared: _Shared | None = None,
    ) -> None:
        self.config = config
        self.priority = Priority(priority)
        self.fair_key = fair_key
        # None: calls wait for the budget; a number: calls never wait (see without_waiting).
        self.no_wait_hold = no_wait_hold
        self.hold_id = hold_id
        self._shared = _shared or _Shared(config)

    def _view(self, **changes: Any) -> GraphClient:
        values: dict[str, Any] = {
            "priority": self.priority,
            "fair_key": self.fair_key,
            "no_wait_hold": self.no_wait_hold,
            "hold_id": self.hold_id,
        }
        values.update(changes)
        return GraphClient(self.config, _shared=self._shared, **values)

    def with_priority(self, priority: Priority | str) -> GraphClient:
        """A view of this client whose calls take the budget at ``priority`` (same fair key)."""
        return self._view(priority=Priority(priority))

    def without_waiting(self, hold_seconds: float = 0.0, hold_id: str = "") -> GraphClient:
        """A view whose calls never wait for the budget: when no token can be had at once
        (``RequestBudget.try_acquire``) a call raises ``graph.budget.BudgetBusy`` carrying the
        estimate, before anything is sent. ``hold_seconds`` > 0 keeps the agent's place in the
        queue that long (a page that will ask again), under ``hold_id`` (one per waiting part
        of a page: ``RequestBudget.release_hold`` ends it)."""
        return self._view(no_wait_hold=max(0.0, hold_seconds), hold_id=hold_id)

    def for_agent(self, key: str) -> GraphClient:
        """A view whose calls draw their fair share of the budget as ``key`` (the agent's Entra
        object id): agents are served round-robin while the budget is short. Raises ValueError
        for a key holding ``|``."""
        if "|" in key:
            raise ValueError(f"a fair key cannot contain '|': {key!r}")
        return self._view(fair_key=key or None)

    @property
    def budget(self) -> RequestBudget:
        return self._shared.budget

    def priority_headers(self, throttle_class: str) -> dict[str, str]:
        """The throttling-priority header for a call of ``throttle_class`` from this view:
        ``high`` when an agent is waiting (action or interactive) on an identity and access
        call, none (Graph's normal) otherwise. $batch callers add it to each inner request."""
        if self.priority in AGENT_PRIORITIES and throttle_class in _PRIORITY_CLASSES:
            return {THROTTLE_PRIORITY_HEADER: "high"}
        return {}

    def check_token(self) -> None:
        """Raises GraphAuthError or GraphTokenUnavailable unless an app token can be had."""
        self._shared.check_fork()
        self._shared.tokens.token()

    # --- building requests ----------------------------------------------------------------------

    def build_url(
        self,
        op: Operation,
        path: Mapping[str, str] | None = None,
        query: Mapping[str, str] | None = None,
    ) -> str:
        """The full URL for ``op``; raises ValueError for undeclared query options."""
        return self.config.graph_url + relative_url(op, path, query)

    # --- calls ----------------------------------------------------------------------------------

    def call(
        self,
        op: Operation,
        *,
        path: Mapping[str, str] | None = None,
        query: Mapping[str, str] | None = None,
        body: Mapping[str, Any] | None = None,
    ) -> GraphResponse:
        """Make the request ``op`` describes. Raises a GraphError subclass on failure, and
        ValueError (before any request) for bad input or an undeclared body property."""
        if not isinstance(op, Operation):
            raise TypeError("GraphClient.call takes a registered Operation")
        op.check_body(body)
        url = self.build_url(op, path, query)
        return self._send(
            op.method, url, {op.throttle_class: 1}, dict(op.headers), body, op.idempotent
        )

    def get_page(
        self,
        op: Operation,
        *,
        path: Mapping[str, str] | None = None,
        query: Mapping[str, str] | None = None,
        next_link: str | None = None,
    ) -> RawPage:
        """One page of the collection ``op`` reads: the first, or the one at ``next_link``
        (Graph's ``@odata.nextLink``, followed verbatim; it must point at ``graph_url``)."""
        if op.method != "GET":
            raise ValueError(f"{op.name} is not a GET")
        if next_link is None:
            response = self.call(op, path=path, query=query)
        else:
            self._check_next_link(next_link)
            response = self._send(
                "GET", next_link, {classify_path(next_link): 1}, dict(op.headers), None, True
            )
        return _raw_page(response)

    def iterate(
        self,
        op: Operation,
        *,
        path: Mapping[str, str] | None = None,
        query: Mapping[str, str] | None = None,
        next_link: str | None = None,
    ) -> Iterator[Mapping[str, Any]]:
        """Every item of the collection, page after page, lazily (one request per page)."""
        page = self.get_page(op, path=path, query=query, next_link=next_link)
        while True:
            yield from page.values
            if not page.next_link:
                return
            page = self.get_page(op, next_link=page.next_link)

    def _check_next_link(self, next_link: str) -> None:
        # The bearer token goes wherever the link points: only ever to our own Graph host.
        ours = urlsplit(self.config.graph_url)
        theirs = urlsplit(next_link)
        if (theirs.scheme, theirs.netloc) != (ours.scheme, ours.netloc):
            raise GraphProtocolError(
                0, "ForeignNextLink", f"@odata.nextLink points outside {self.config.graph_url}"
            )

    def _priority_for(self, costs: Mapping[str, int]) -> dict[str, str]:
        headers: dict[str, str] = {}
        for throttle_class in costs:
            headers.update(self.priority_headers(throttle_class))
        return headers

    def _take_budget(self, throttle_class: str, tokens: int) -> None:
        budget = self._shared.budget
        if self.no_wait_hold is None:
            budget.acquire(
                throttle_class,
                self.priority,
                timeout=self.config.max_retry_wait,
                tokens=tokens,
                fair_key=self.fair_key,
            )
        elif not budget.try_acquire(
            throttle_class,
            self.priority,
            self.fair_key,
            tokens,
            hold_seconds=self.no_wait_hold,
            hold_id=self.hold_id,
        ):
            raise BudgetBusy(
                throttle_class, budget.estimate(throttle_class, self.priority, self.fair_key)
            )

    def _backoff(self, attempt: int) -> float:
        # Full jitter: a random wait up to base * 2^attempt, so retries do not synchronise.
        return random.uniform(0, self.config.backoff_base * (2**attempt))  # noqa: S311

    def _send(
        self,
        method: str,
        url: str,
        costs: Mapping[str, int],
        headers: dict[str, str],
        body: Mapping[str, Any] | None,
        idempotent: bool,
    ) -> GraphResponse:
        """Send one request with the retry rules of this module. ``costs`` says how many
        budget tokens of each throttling class every attempt takes (a $batch takes one per inner
        request)."""
        shared = self._shared
        shared.check_fork()
        config = self.config
        token_refreshed = False
        may_have_reached = False
        attempt = 0
        while True:
            # The access token first (it may take a round trip to the login host), then the
            # budget: so that the request leaves right after its budget token was granted and
            # our bucket stays in step with Graph's.
            access_token = shared.tokens.token()
            for throttle_class, tokens in costs.items():
                self._take_budget(throttle_class, tokens)
            client_request_id = str(uuid.uuid4())
            request_headers = {
                **headers,
                **self._priority_for(costs),
                "Authorization": f"Bearer {access_token}",
                "client-request-id": client_request_id,
                "return-client-request-id": "true",
                "Accept": "application/json",
            }
            error: GraphError
            retry_after: float | None = None
            try:
                response = shared.session.request(
                    method,
                    url,
                    headers=request_headers,
                    json=body,
                    timeout=(config.timeout, config.timeout),
                    allow_redirects=False,
                )
            except requests.ConnectionError as exc:
                reached = not _never_sent(exc)
                may_have_reached = may_have_reached or reached
                error = GraphTransient(
                    0,
                    "ConnectionError",
                    f"{method} failed: {type(exc).__name__}",
                    None,
                    client_request_id,
                )
                if reached and not idempotent:
                    raise _outcome_unknown(method, error) from exc
            except requests.Timeout as exc:
                # A read timeout: the request was sent and may have been processed.
                may_have_reached = True
                error = GraphTransient(
                    0,
                    "Timeout",
                    f"{method} got no answer within {config.timeout:g} s",
                    None,
                    client_request_id,
                )
                if not idempotent:
                    raise _outcome_unknown(method, error) from exc
            except requests.RequestException as exc:
                raise GraphTransient(
                    0,
                    "RequestFailed",
                    f"{method} failed: {type(exc).__name__}",
                    None,
                    client_request_id,
                ) from exc
            else:
                status = response.status_code
                if status < 300:
                    return _success(response, client_request_id)
                if 300 <= status < 400:
                    raise GraphProtocolError(
                        status,
                        "UnexpectedRedirect",
                        f"Graph answered {status} to {method}",
                        response.headers.get("request-id"),
                        client_request_id,
                    )
                error = error_from_response(response, client_request_id)
                retry_after = parse_retry_after(response.headers.get("Retry-After"))
                if status == 401 and not token_refreshed:
                    # A cached token may have been revoked or expired early: fetch a new one
                    # once. Graph rejected the call before processing it, so any method may retry.
                    token_refreshed = True
                    shared.tokens.forget()
                    continue
                if status == 429:
                    pause = retry_after if retry_after is not None else self._backoff(attempt)
                    for throttle_class in costs:
                        shared.budget.record_pause(throttle_class, pause)
                elif status == 503:
                    pass  # answered before processing: retry any method
                elif status >= 500 or status == 408:
                    may_have_reached = True
                    if not idempotent:
                        raise _outcome_unknown(method, error)
                elif status == 404 and method == "DELETE" and may_have_reached:
                    # An earlier attempt that broke off did delete it: that is success.
                    return GraphResponse(204, None, error.request_id, client_request_id)
                else:
                    raise error
            if attempt >= config.max_retries:
                raise error
            wait = retry_after if retry_after is not None else self._backoff(attempt)
            if wait > config.max_retry_wait:
                if isinstance(error, GraphThrottled):
                    error.retry_after = wait
                raise error
            attempt += 1
            if error.status != 429:
                # After a 429 the budget's pause makes the next acquire() wait for us.
                time.sleep(wait)


def relative_url(
    op: Operation,
    path: Mapping[str, str] | None = None,
    query: Mapping[str, str] | None = None,
) -> str:
    """``op``'s path (with version) and query string, every value encoded.

    Raises ValueError for a query option the caller may not set or the operation did not declare.
    """
    params: dict[str, str] = {}
    if op.select:
        params["$select"] = ",".join(op.select)
    if op.expand:
        params["$expand"] = ",".join(op.expand)
    for key, value in (query or {}).items():
        if key not in _CALLER_QUERY_OPTIONS:
            raise ValueError(f"{op.name}: query option {key!r} cannot be set by the caller")
        if key == "$filter" and not op.filter_properties:
            raise ValueError(f"{op.name} declares no $filter properties")
        if key == "$search" and not op.search_properties:
            raise ValueError(f"{op.name} declares no $search properties")
        if key == "$orderby" and not op.orderby:
            raise ValueError(f"{op.name} declares no $orderby")
        params[key] = value
    url = op.fill(path or {})
    if params:
        url += "?" + urlencode(params, quote_via=quote, safe=_QUERY_SAFE)
    return url


def _outcome_unknown(method: str, cause: GraphError) -> GraphTransient:
    return GraphTransient(
        cause.status,
        "OutcomeUnknown",
        f"{method} may have reached Graph and is not repeated ({cause.code}: {cause.message}); "
        "re-read the state before trying again",
        cause.request_id,
        cause.client_request_id,
    )


def _success(response: requests.Response, client_request_id: str) -> GraphResponse:
    request_id = response.headers.get("request-id")
    if response.status_code == 204 or not response.content:
        return GraphResponse(response.status_code, None, request_id, client_request_id)
    try:
        data = response.json()
    except ValueError as exc:
        raise GraphProtocolError(
            response.status_code,
            "InvalidJson",
            "Graph answered with a body that is not JSON",
            request_id,
            client_request_id,
        ) from exc
    return GraphResponse(response.status_code, data, request_id, client_request_id)


def _raw_page(response: GraphResponse) -> RawPage:
    data = response.data
    if not isinstance(data, Mapping) or not isinstance(data.get("value"), list):
        raise GraphProtocolError(
            response.status,
            "NotACollection",
            "Graph answered without a 'value' list",
            response.request_id,
            response.client_request_id,
        )
    next_link = data.get("@odata.nextLink")
    count = data.get("@odata.count")
    return RawPage(
        values=tuple(v for v in data["value"] if isinstance(v, Mapping)),
        next_link=next_link if isinstance(next_link, str) and next_link else None,
        count=count if isinstance(count, int) else None,
    )
