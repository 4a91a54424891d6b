"""The Graph request framework: routing, authentication, permission checks, throttling, faults.

Route modules register handlers with ``@graph_route``; ``handle_graph_request`` runs one HTTP
request through the same pipeline Graph applies, in this order:

1. injected latency (faults), 2. version segment and route lookup (400 for an unknown segment,
405 for a known path with another method), 3. bearer token validation (401
``InvalidAuthenticationToken``), 4. permission check against the route's permissions (403
``Authorization_RequestDenied``), 5. query option parsing (400), 6. throttling per app and class
(429 ``TooManyRequests`` with ``Retry-After``), 7. injected faults (``fail_next`` rules, 5xx rate,
timeouts), 8. the handler.

Every answer carries ``request-id`` and ``client-request-id`` headers; every error is Graph's JSON
``{"error": {"code", "message", "innerError": {"date", "request-id", "client-request-id"}}}``.
``dispatch_inner`` runs one ``$batch`` inner request through the whole pipeline again (so each
inner request is authenticated, throttled and faulted on its own, as in Graph).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import quote, urlencode, urlsplit

from werkzeug.datastructures import Headers
from werkzeug.test import EnvironBuilder
from werkzeug.wrappers import Request, Response

from entra_emulator.graph_schema import UnknownProperty, schema
from entra_emulator.licensing import licence_refusal
from entra_emulator.odata import ODataError, ODataQuery, parse_query
from entra_emulator.tenant import Tenant
from entra_emulator.tokens import TokenError, TokenInfo

if TYPE_CHECKING:
    from entra_emulator.faults import Faults
    from entra_emulator.throttle import Throttle
    from entra_emulator.tokens import TokenService

GRAPH_VERSIONS = ("v1.0", "beta")
JSON_CONTENT_TYPE = (
    "application/json;odata.metadata=minimal;odata.streaming=true;IEEE754Compatible=false;"
    "charset=utf-8"
)
ADVANCED_QUERY_HINT = "Refer to https://aka.ms/graph-docs/advanced-queries for more information"


class GraphRuntime(Protocol):
    """What the pipeline needs from the server (EmulatorServer implements it)."""

    tenant: Tenant
    tokens: TokenService
    throttle: Throttle
    faults: Faults
    base_url: str

    def now(self) -> datetime: ...


class GraphHttpError(Exception):
    """Raised by handlers (and the pipeline) to answer with Graph's error JSON.

    ``headers`` adds response headers (``Retry-After`` for 429/503).
    """

    def __init__(
        self, status: int, code: str, message: str, *, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


Handler = Callable[["GraphContext"], Response]


@dataclass(frozen=True)
class GraphRoute:
    method: str
    pattern: re.Pattern[str]
    versions: tuple[str, ...]
    handler: Handler
    throttle_class: str
    permissions: tuple[str, ...]
    directory: bool


_ROUTES: list[GraphRoute] = []


def graph_route(
    method: str,
    pattern: str,
    *,
    throttle_class: str,
    permissions: tuple[str, ...],
    versions: tuple[str, ...] = ("v1.0",),
    directory: bool = False,
) -> Callable[[Handler], Handler]:
    """Register ``handler(ctx) -> Response`` for ``method`` and a regex on the path after the
    version segment (matched in full, e.g. ``r"/users/(?P<user_id>[^/]+)"``).

    ``throttle_class`` is ``"reports"`` or ``"identity"``. ``permissions``: any one of them, in
    the app token's ``roles`` or the delegated token's ``scp``, allows the call. ``directory``
    marks directory-object collections, where Graph's advanced-query rules apply (``endswith``,
    ``ne``, ``not`` in ``$filter`` need ``ConsistencyLevel: eventual`` and ``$count=true``).
    Registering the same method and pattern twice replaces the first (module reloads in tests).
    """
    if throttle_class not in {"reports", "identity"}:
        raise ValueError(f"unknown throttle class {throttle_class!r}")
    compiled = re.compile(pattern)

    def register(handler: Handler) -> Handler:
        route = GraphRoute(
            method.upper(), compiled, versions, handler, throttle_class, permissions, directory
        )
        _ROUTES[:] = [
            r
            for r in _ROUTES
            if not (
                r.method == route.method
                and r.pattern.pattern == pattern
                and set(r.versions) & set(versions)
            )
        ]
        _ROUTES.append(route)
        return handler

    return register


def registered_routes() -> list[GraphRoute]:
    """A copy of the route table (for tests and diagnostics)."""
    return list(_ROUTES)


@dataclass
class GraphContext:
    """One Graph request as a handler sees it."""

    runtime: GraphRuntime
    request: Request
    params: dict[str, str]
    token: TokenInfo
    version: str
    request_id: str
    client_request_id: str
    query: ODataQuery
    route: GraphRoute
    filter_applied: bool = False
    _json: dict[str, Any] | None = field(default=None, repr=False)

    @property
    def tenant(self) -> Tenant:
        return self.runtime.tenant

    def now(self) -> datetime:
        """The emulator's clock (UTC, aware); tests may pin it through EmulatorServer(now=...)."""
        return self.runtime.now()

    def json(self) -> dict[str, Any]:
        """The request body as a JSON object; raises GraphHttpError 400 when it is not one."""
        if self._json is None:
            raw = self.request.get_data(cache=True)
            try:
                body = json.loads(raw or b"null")
            except (ValueError, UnicodeDecodeError) as exc:
                raise GraphHttpError(
                    400, "BadRequest", f"Unable to read JSON request payload: {exc}"
                ) from exc
            if not isinstance(body, dict):
                raise GraphHttpError(
                    400,
                    "BadRequest",
                    "Unable to read JSON request payload. Please ensure Content-Type header is set "
                    "and payload is of valid JSON format.",
                )
            self._json = body
        return self._json

    def actor(self) -> dict[str, Any]:
        """The directoryAudit ``initiatedBy`` value for this caller (app or signed-in user)."""
        if self.token.is_app:
            app = self.tenant.apps.get(self.token.app_id)
            return {
                "app": {
                    "appId": self.token.app_id,
                    "displayName": app.display_name if app else None,
                    "servicePrincipalId": app.service_principal_id if app else None,
                    "servicePrincipalName": None,
                },
                "user": None,
            }
        user = self.tenant.find_user(self.token.oid or "") or {}
        return {
            "app": None,
            "user": {
                "id": self.token.oid,
                "displayName": user.get("displayName", self.token.name),
                "userPrincipalName": user.get("userPrincipalName", self.token.upn),
                "ipAddress": self.request.remote_addr,
                "userType": None,
                "homeTenantId": None,
                "homeTenantName": None,
            },
        }

    def context_url(self, fragment: str) -> str:
        """The ``@odata.context`` URL for ``fragment`` (e.g. ``users`` or ``users/$entity``)."""
        return f"{graph_base(self.runtime)}/{self.version}/$metadata#{fragment}"

    def consistency_eventual(self) -> bool:
        return self.request.headers.get("ConsistencyLevel", "").strip().lower() == "eventual"


def graph_base(runtime: GraphRuntime) -> str:
    return runtime.base_url.rstrip("/")


def _now_text() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S")


def _base_headers(request_id: str, client_request_id: str) -> dict[str, str]:
    return {
        "request-id": request_id,
        "client-request-id": client_request_id,
        "x-ms-ags-diagnostic": json.dumps(
            {
                "ServerInfo": {
                    "DataCenter": "Loopback",
                    "Slice": "E",
                    "Ring": "0",
                    "ScaleUnit": "000",
                    "RoleInstance": "EMULATOR",
                }
            },
            separators=(",", ":"),
        ),
        "Cache-Control": "no-cache",
    }


def error_response(
    status: int,
    code: str,
    message: str,
    *,
    request_id: str,
    client_request_id: str,
    headers: dict[str, str] | None = None,
) -> Response:
    """Graph's error JSON with innerError date / request-id / client-request-id."""
    body = {
        "error": {
            "code": code,
            "message": message,
            "innerError": {
                "date": _now_text(),
                "request-id": request_id,
                "client-request-id": client_request_id,
            },
        }
    }
    all_headers = _base_headers(request_id, client_request_id)
    all_headers.update(headers or {})
    return Response(
        json.dumps(body), status=status, headers=all_headers, content_type=JSON_CONTENT_TYPE
    )


def json_response(
    ctx: GraphContext, body: Any, status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    """A JSON answer with Graph's headers."""
    all_headers = _base_headers(ctx.request_id, ctx.client_request_id)
    all_headers.update(headers or {})
    return Response(
        json.dumps(body), status=status, headers=all_headers, content_type=JSON_CONTENT_TYPE
    )


def no_content(ctx: GraphContext) -> Response:
    """204 with Graph's headers and no body."""
    return Response(status=204, headers=_base_headers(ctx.request_id, ctx.client_request_id))


def project(item: dict[str, Any], select: list[str] | None) -> dict[str, Any]:
    """Apply ``$select`` to one item (``@odata.type`` is kept, as Graph does for derived types)."""
    if not select:
        return item
    wanted = {name.lower() for name in select}
    return {
        key: value for key, value in item.items() if key.lower() in wanted or key == "@odata.type"
    }


def _encode_skiptoken(offset: int, fingerprint: str) -> str:
    raw = json.dumps({"o": offset, "f": fingerprint}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_skiptoken(token: str, fingerprint: str) -> int:
    try:
        padded = token + "=" * (-len(token) % 4)
        data = json.loads(base64.urlsafe_b64decode(padded.encode()))
        offset = int(data["o"])
        same_query = data["f"] == fingerprint
    except (ValueError, KeyError, TypeError, binascii.Error) as exc:
        raise GraphHttpError(400, "Request_BadRequest", "Invalid skip token.") from exc
    if not same_query or offset < 0:
        # A token only continues the query it was issued for (Graph: "Skip token is invalid").
        raise GraphHttpError(400, "Request_BadRequest", "Skip token is invalid for this query.")
    return offset


def _sort_key(value: Any) -> tuple[int, Any]:
    if value is None:
        return (0, "")
    if isinstance(value, str):
        return (1, value.casefold())
    return (1, value)


def _property_key(prop: str) -> Callable[[dict[str, Any]], tuple[int, Any]]:
    def key(item: dict[str, Any]) -> tuple[int, Any]:
        return _sort_key(item.get(prop))

    return key


def collection_response(
    ctx: GraphContext,
    items: Iterable[dict[str, Any]],
    *,
    context: str,
    default_top: int = 100,
    max_top: int = 999,
    filtered: bool = False,
) -> Response:
    """Answer a collection: ``$filter``/``$search`` (unless the handler already applied them:
    ``filtered=True`` or ``ctx.filter_applied``), ``$orderby``, ``$count`` (``@odata.count``),
    ``$select``, and paging by ``$top`` (default ``default_top``, 400 above ``max_top``) with an
    ``@odata.nextLink`` carrying a ``$skiptoken`` bound to the query."""
    query = ctx.query
    if query.top is not None and not 1 <= query.top <= max_top:
        raise GraphHttpError(
            400,
            "Request_BadRequest",
            f"Invalid page size specified: '{query.top}'. Must be between 1 and {max_top} "
            "inclusive.",
        )
    if filtered or ctx.filter_applied:
        selected = list(items)
    else:
        selected = [item for item in items if query.matches(item)]
    for prop, descending in reversed(query.orderby):  # stable sorts: last key first
        selected.sort(key=_property_key(prop), reverse=descending)
    page_size = query.top or default_top
    args = ctx.request.args
    fingerprint = "|".join(
        args.get(name, "") for name in ("$filter", "$search", "$orderby", "$select", "$top")
    )
    offset = _decode_skiptoken(query.skiptoken, fingerprint) if query.skiptoken else 0
    page = selected[offset : offset + page_size]
    body: dict[str, Any] = {"@odata.context": ctx.context_url(context)}
    if query.count:
        body["@odata.count"] = len(selected)
    if offset + page_size < len(selected):
        pairs = [(k, v) for k, v in args.items(multi=True) if k not in {"$skiptoken", "skiptoken"}]
        pairs.append(("$skiptoken", _encode_skiptoken(offset + page_size, fingerprint)))
        body["@odata.nextLink"] = (
            f"{graph_base(ctx.runtime)}/{ctx.version}{ctx.request.path[len(ctx.version) + 1 :]}?"
            + urlencode(pairs, quote_via=quote, safe="$'(),:/")
        )
    body["value"] = [project(item, query.select) for item in page]
    return json_response(ctx, body)


# --- the pipeline -------------------------------------------------------------------------------


def _find_route(version: str, path: str, method: str) -> tuple[GraphRoute, dict[str, str]]:
    path_matched = False
    for route in _ROUTES:
        if version not in route.versions:
            continue
        match = route.pattern.fullmatch(path)
        if match is None:
            continue
        path_matched = True
        if route.method == method:
            return route, {k: v for k, v in match.groupdict().items() if v is not None}
    if path_matched:
        raise GraphHttpError(
            405, "Request_BadRequest", f"The HTTP method '{method}' is not allowed for this path."
        )
    segment = next((s for s in path.split("/") if s), "")
    raise GraphHttpError(400, "BadRequest", f"Resource not found for the segment '{segment}'.")


def _check_query_rules(ctx: GraphContext) -> None:
    """Graph's rules for advanced queries on directory objects (ConsistencyLevel header)."""
    query = ctx.query
    eventual = ctx.consistency_eventual()
    if query.search is not None and not eventual:
        raise GraphHttpError(
            400,
            "Request_UnsupportedQuery",
            "Request with $search query parameter only works through MSGraph with a special "
            "request header: 'ConsistencyLevel: eventual'",
        )
    if query.count and not eventual:
        raise GraphHttpError(
            400,
            "Request_BadRequest",
            f"$count is not currently supported without the 'ConsistencyLevel: eventual' "
            f"header. {ADVANCED_QUERY_HINT}",
        )
    if ctx.route.directory and query.filter is not None:
        features = query.filter.features
        if "contains" in features:
            raise GraphHttpError(400, "Request_UnsupportedQuery", "Unsupported Query.")
        for feature, shown in (("endswith", "endsWith"), ("ne", "ne"), ("not", "not")):
            if feature in features and not (eventual and query.count):
                raise GraphHttpError(
                    400,
                    "Request_UnsupportedQuery",
                    f"Operator '{shown}' is not supported because the required parameters might "
                    f"be missing. Try adding $count=true query parameter and ConsistencyLevel:"
                    f"eventual header. {ADVANCED_QUERY_HINT}",
                )


def _check_query_properties(version: str, path: str, query: ODataQuery) -> None:
    """400 for a ``$select`` or ``$filter`` property the addressed type does not have (the types
    are Microsoft's metadata: entra_emulator/graph_schema.py says which answers are documented)."""
    if query.select is None and query.filter is None:
        return
    table = schema()
    type_name = table.resolve(version, path)
    if type_name is None:
        return
    try:
        if query.select is not None:
            table.check_select(type_name, query.select)
    except UnknownProperty as exc:
        raise GraphHttpError(
            400, "BadRequest", f"Parsing OData Select and Expand failed: {exc}"
        ) from exc
    if query.filter is not None:
        for property_path in query.filter.paths:
            try:
                table.check_path(type_name, property_path)
            except UnknownProperty as exc:
                raise GraphHttpError(400, "Request_BadRequest", str(exc)) from exc


def _authorize(route: GraphRoute, token: TokenInfo) -> None:
    if not route.permissions:
        # An envelope route ($batch): each inner request is authorized on its own.
        return
    granted = token.roles if token.is_app else token.scopes
    if not set(route.permissions) & set(granted):
        raise GraphHttpError(
            403,
            "Authorization_RequestDenied",
            "Insufficient privileges to complete the operation.",
        )


def handle_graph_request(runtime: GraphRuntime, request: Request) -> Response:
    """Run one Graph request (``/v1.0/...`` or ``/beta/...``) through the whole pipeline."""
    request_id = str(uuid.uuid4())
    client_request_id = request.headers.get("client-request-id") or str(uuid.uuid4())
    try:
        return _process(runtime, request, request_id, client_request_id)
    except GraphHttpError as exc:
        return error_response(
            exc.status,
            exc.code,
            exc.message,
            request_id=request_id,
            client_request_id=client_request_id,
            headers=exc.headers,
        )


def _process(
    runtime: GraphRuntime, request: Request, request_id: str, client_request_id: str
) -> Response:
    runtime.faults.apply_latency()
    parts = request.path.split("/", 2)
    version = parts[1] if len(parts) > 1 else ""
    if version not in GRAPH_VERSIONS:
        raise GraphHttpError(400, "BadRequest", f"Invalid version: {version}")
    sub_path = "/" + (parts[2] if len(parts) > 2 else "")
    sub_path = sub_path.rstrip("/") or "/"
    route, params = _find_route(version, sub_path, request.method.upper())
    try:
        token = runtime.tokens.validate_graph_token(request.headers.get("Authorization"))
    except TokenError as exc:
        raise GraphHttpError(exc.status, exc.code, exc.message) from exc
    _authorize(route, token)
    # The tenant's licence (entra_emulator.licensing: PIM needs Entra ID P2).
    refusal = licence_refusal(runtime.tenant.licence, sub_path)
    if refusal is not None:
        raise GraphHttpError(*refusal)
    try:
        query = parse_query(request.args)
    except ODataError as exc:
        raise GraphHttpError(400, exc.code, exc.message) from exc
    _check_query_properties(version, sub_path, query)
    ctx = GraphContext(
        runtime=runtime,
        request=request,
        params=params,
        token=token,
        version=version,
        request_id=request_id,
        client_request_id=client_request_id,
        query=query,
        route=route,
    )
    _check_query_rules(ctx)
    # An envelope route ($batch, no permissions of its own) is not throttled: Graph counts
    # each inner request instead.
    # x-ms-throttle-priority (low / normal / high) is read by nobody here: "Should requests be
    # throttled, low priority requests are throttled first, normal priority requests second, and
    # high priority requests last. Using the priority request header doesn't change the limits."
    # (https://learn.microsoft.com/en-us/graph/throttling-limits, Identity and access service
    # limits, "Other headers"). Docs silent on how the order is applied; one app's bucket here
    # has nothing to order against, so every priority meets the same limit.
    retry_after = (
        runtime.throttle.take(token.app_id, route.throttle_class) if route.permissions else None
    )
    if retry_after is not None:
        raise GraphHttpError(
            429,
            "TooManyRequests",
            "Too many requests to this resource. Please retry after the time given in the "
            "Retry-After header.",
            headers={"Retry-After": str(retry_after)},
        )
    injected = runtime.faults.pick(request.method.upper(), f"/{version}{sub_path}")
    if injected is not None:
        raise GraphHttpError(
            injected.status, injected.code, injected.message, headers=injected.headers
        )
    try:
        return route.handler(ctx)
    except ODataError as exc:
        raise GraphHttpError(400, exc.code, exc.message) from exc


def dispatch_inner(
    ctx: GraphContext, *, method: str, url: str, headers: dict[str, str] | None, body: Any
) -> tuple[int, dict[str, str], Any]:
    """Run one ``$batch`` inner request with the outer request's token.

    ``url`` is relative to the version (``/users/{id}`` or ``users/{id}?$select=id``).
    Returns (status, response headers, decoded JSON body or None).
    """
    relative = url if url.startswith("/") else "/" + url
    split = urlsplit(relative)
    inner_headers = Headers()
    for name, value in (headers or {}).items():
        inner_headers[name] = value
    if auth := ctx.request.headers.get("Authorization"):
        inner_headers["Authorization"] = auth
    data: bytes | None = None
    if body is not None:
        data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        inner_headers.setdefault("Content-Type", "application/json")
    builder = EnvironBuilder(
        path=f"/{ctx.version}{split.path}",
        query_string=split.query,
        method=method.upper(),
        headers=inner_headers,
        data=data,
        environ_base={"REMOTE_ADDR": ctx.request.remote_addr or "127.0.0.1"},
    )
    try:
        inner_request = Request(builder.get_environ())
    finally:
        builder.close()
    response = handle_graph_request(ctx.runtime, inner_request)
    raw = response.get_data()
    decoded = json.loads(raw) if raw else None
    out_headers = {k: v for k, v in response.headers.items() if k.lower() != "content-length"}
    return response.status_code, out_headers, decoded
