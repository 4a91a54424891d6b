"""JSON batching: ``POST /$batch`` (v1.0 and beta).

Body ``{"requests": [{"id", "method", "url", "headers"?, "body"?, "dependsOn"?}, ...]}``; answer
200 ``{"responses": [{"id", "status", "headers", "body"?}, ...]}`` in request order.

As in Graph:

- at most 20 inner requests (more: 400 for the whole batch); ids must be present and unique;
  ``method`` and ``url`` are required; ``url`` is relative to the version (``/users/{id}``);
- each inner request runs through authentication, permissions, throttling and faults on its own
  with the outer request's token (``graph_core.dispatch_inner``), so the batch answers 200 while
  an inner request answers 429 with its ``Retry-After`` header, or 4xx;
- ``dependsOn`` orders execution: a request runs after the ones it names; when one of those
  failed (status not 2xx), it is not run and answers 424 ``FailedDependency``. Naming an unknown
  id, or a cycle, refuses the whole batch (400).

The envelope itself is authorized per inner request: its route declares no permission of its own
(graph_core lets any valid token through such a route and does not throttle it).

Reference: https://learn.microsoft.com/graph/json-batching
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from werkzeug import Response

from entra_emulator.graph_core import (
    GraphContext,
    GraphHttpError,
    dispatch_inner,
    graph_route,
    json_response,
)

MAX_BATCH_REQUESTS = 20
_METHODS = {"GET", "POST", "PATCH", "PUT", "DELETE"}


def validate_batch(body: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The inner requests of a batch body, checked; raises GraphHttpError(400) like Graph."""
    requests = body.get("requests")
    if not isinstance(requests, list) or not requests:
        raise GraphHttpError(400, "BadRequest", "Invalid batch payload format.")
    if len(requests) > MAX_BATCH_REQUESTS:
        raise GraphHttpError(
            400,
            "BadRequest",
            f"Too many requests in the batch: {len(requests)}. The limit is "
            f"{MAX_BATCH_REQUESTS} requests per batch.",
        )
    seen: set[str] = set()
    checked: list[dict[str, Any]] = []
    for raw in requests:
        if not isinstance(raw, Mapping):
            raise GraphHttpError(400, "BadRequest", "Invalid batch payload format.")
        request_id = raw.get("id")
        if not isinstance(request_id, str) or not request_id:
            raise GraphHttpError(400, "BadRequest", "Each batch request must have an 'id'.")
        if request_id in seen:
            raise GraphHttpError(
                400, "BadRequest", f"Batch request id '{request_id}' is not unique."
            )
        seen.add(request_id)
        method = raw.get("method")
        url = raw.get("url")
        if not isinstance(method, str) or method.upper() not in _METHODS:
            raise GraphHttpError(400, "BadRequest", f"Invalid method for request '{request_id}'.")
        if not isinstance(url, str) or not url or "://" in url:
            raise GraphHttpError(
                400, "BadRequest", f"Invalid relative url for request '{request_id}'."
            )
        depends = raw.get("dependsOn") or []
        if not isinstance(depends, list) or not all(isinstance(d, str) for d in depends):
            raise GraphHttpError(400, "BadRequest", f"Invalid dependsOn in '{request_id}'.")
        headers = raw.get("headers") or {}
        if not isinstance(headers, Mapping):
            raise GraphHttpError(400, "BadRequest", f"Invalid headers in '{request_id}'.")
        if raw.get("body") is not None and not any(k.lower() == "content-type" for k in headers):
            # Graph refuses an inner body without its Content-Type.
            raise GraphHttpError(
                400,
                "BadRequest",
                f"Content-Type header is required for request '{request_id}' with a body.",
            )
        checked.append(
            {
                "id": request_id,
                "method": method.upper(),
                "url": url,
                "headers": dict(headers),
                "body": raw.get("body"),
                "dependsOn": list(depends),
            }
        )
    for item in checked:
        for dependency in item["dependsOn"]:
            if dependency not in seen or dependency == item["id"]:
                raise GraphHttpError(
                    400,
                    "BadRequest",
                    f"Request '{item['id']}' depends on unknown request '{dependency}'.",
                )
    return checked


def execution_order(requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Requests ordered so that each comes after those it depends on (stable otherwise).

    Raises GraphHttpError(400) for a dependency cycle.
    """
    by_id = {r["id"]: r for r in requests}
    ordered: list[dict[str, Any]] = []
    state: dict[str, str] = {}

    def visit(request_id: str) -> None:
        if state.get(request_id) == "done":
            return
        if state.get(request_id) == "visiting":
            raise GraphHttpError(400, "BadRequest", "The batch contains a dependency cycle.")
        state[request_id] = "visiting"
        for dependency in by_id[request_id]["dependsOn"]:
            visit(dependency)
        state[request_id] = "done"
        ordered.append(by_id[request_id])

    for request in requests:
        visit(request["id"])
    return ordered


def _failed_dependency(request_id: str) -> dict[str, Any]:
    return {
        "id": request_id,
        "status": 424,
        "headers": {"Content-Type": "application/json"},
        "body": {
            "error": {
                "code": "FailedDependency",
                "message": "Request failed because a request it depends on failed.",
            }
        },
    }


def _batch(ctx: GraphContext) -> Response:
    requests = validate_batch(ctx.json())
    results: dict[str, dict[str, Any]] = {}
    for request in execution_order(requests):
        if any(not 200 <= results[d]["status"] < 300 for d in request["dependsOn"]):
            results[request["id"]] = _failed_dependency(request["id"])
            continue
        status, headers, body = dispatch_inner(
            ctx,
            method=request["method"],
            url=request["url"],
            headers=request["headers"],
            body=request["body"],
        )
        answer: dict[str, Any] = {"id": request["id"], "status": status, "headers": headers}
        if body is not None:
            answer["body"] = body
        results[request["id"]] = answer
    return json_response(ctx, {"responses": [results[r["id"]] for r in requests]})


@graph_route(
    "POST", r"/\$batch", throttle_class="identity", permissions=(), versions=("v1.0", "beta")
)
def batch(ctx: GraphContext) -> Response:
    """``POST /$batch``: run up to 20 inner requests and answer them all in one 200."""
    return _batch(ctx)
