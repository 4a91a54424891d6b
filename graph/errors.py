"""Typed errors for every way a Graph call can fail.

Every error carries Graph's own ``code``, ``message`` and ``request-id`` so that a person reading a
failed action in the portal can quote them to Microsoft, and a ``permanent`` flag that tells the
caller whether trying again later can help.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import requests


class GraphError(Exception):
    """A Graph call failed.

    ``status`` is the HTTP status (0 when no answer arrived), ``code`` and ``message`` are Graph's
    error code and message, ``request_id`` / ``client_request_id`` identify the call at Microsoft.
    ``permanent`` is True when repeating the same call cannot succeed.
    """

    default_permanent = True

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        request_id: str | None = None,
        client_request_id: str | None = None,
        permanent: bool | None = None,
    ) -> None:
        self.status = status
        self.code = code
        self.message = message
        self.request_id = request_id
        self.client_request_id = client_request_id
        self.permanent = self.default_permanent if permanent is None else permanent
        super().__init__(str(self))

    def __str__(self) -> str:
        status = f"HTTP {self.status} " if self.status else ""
        rid = self.request_id or "none"
        return f"{status}{self.code}: {self.message} (request-id {rid})"

    def __reduce__(self) -> tuple[Any, ...]:
        # Errors cross process boundaries (Celery, multiprocessing): keep every field on pickling.
        return (_rebuild_error, (type(self), self.__dict__.copy()))


def _rebuild_error(cls: type[GraphError], state: dict[str, Any]) -> GraphError:
    error = cls.__new__(cls)
    Exception.__init__(error)
    error.__dict__.update(state)
    error.args = (str(error),)
    return error


class GraphAuthError(GraphError):
    """401, or the token could not be obtained (bad credentials, unknown tenant or client)."""


class GraphPermissionDenied(GraphError):
    """403: the app lacks the permission (or the target is protected by Entra's own tiering)."""


class GraphNotFound(GraphError):
    """404: the user, method, role or assignment does not exist."""


class GraphBadRequest(GraphError):
    """400, 409, 412 and other 4xx: the request itself is wrong or conflicts with the state."""


class GraphTransient(GraphError):
    """5xx, timeouts and connection errors: trying again later may succeed."""

    default_permanent = False


class GraphThrottled(GraphTransient):
    """429 (or the shared budget could not give a token in time). ``retry_after`` is in seconds."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        request_id: str | None = None,
        client_request_id: str | None = None,
        permanent: bool | None = None,
        retry_after: float | None = None,
    ) -> None:
        self.retry_after = retry_after
        super().__init__(status, code, message, request_id, client_request_id, permanent)


class GraphTokenUnavailable(GraphAuthError, GraphTransient):
    """The token endpoint is down or answered 5xx: not a credential problem, retry later."""

    default_permanent = False


class GraphProtocolError(GraphError):
    """Graph answered something this client cannot read (no JSON, a foreign ``@odata.nextLink``)."""


def _error_class(status: int) -> type[GraphError]:
    if status == 401:
        return GraphAuthError
    if status == 403:
        return GraphPermissionDenied
    if status == 404:
        return GraphNotFound
    if status == 429:
        return GraphThrottled
    if status >= 500 or status == 408:
        return GraphTransient
    return GraphBadRequest


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (Graph sends whole seconds); None if absent or odd."""
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    return seconds if seconds >= 0 else None


def error_from_parts(
    status: int,
    body: Any,
    headers: Mapping[str, str],
    client_request_id: str | None = None,
) -> GraphError:
    """Build the typed error for an answer with ``status``, JSON ``body`` and ``headers``.

    Reads Graph's shape ``{"error": {"code", "message", "innerError": {"request-id",
    "client-request-id", "date"}}}``; falls back to the ``request-id`` header, and to the HTTP
    status text when the body is not Graph's shape. Also used for inner $batch answers.
    """
    lowered = {k.lower(): v for k, v in headers.items()}
    code = f"HTTP{status}"
    message = ""
    request_id = lowered.get("request-id")
    client_id = lowered.get("client-request-id") or client_request_id
    error = body.get("error") if isinstance(body, Mapping) else None
    if isinstance(error, Mapping):
        code = str(error.get("code") or code)
        message = str(error.get("message") or "")
        inner = error.get("innerError") or error.get("innererror") or {}
        if isinstance(inner, Mapping):
            request_id = str(inner.get("request-id") or request_id or "") or None
            client_id = str(inner.get("client-request-id") or client_id or "") or None
    if not message:
        message = f"Graph answered HTTP {status} without an error message"
    cls = _error_class(status)
    if cls is GraphThrottled:
        return GraphThrottled(
            status,
            code,
            message,
            request_id,
            client_id,
            retry_after=parse_retry_after(lowered.get("retry-after")),
        )
    return cls(status, code, message, request_id, client_id)


def error_from_response(response: requests.Response, client_request_id: str | None) -> GraphError:
    """The typed error for a non-2xx ``response`` (see :func:`error_from_parts`)."""
    try:
        body: Any = response.json()
    except (ValueError, json.JSONDecodeError):
        body = None
    return error_from_parts(response.status_code, body, response.headers, client_request_id)
