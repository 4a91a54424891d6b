"""The control API: a loopback test tool beside Graph (not part of Graph).

- ``GET /_emulator/faults`` and ``POST /_emulator/faults`` with any of ``latency_ms``,
  ``error_rate``, ``error_status``, ``timeout_rate``, ``timeout_seconds``,
  ``token_endpoint_down``, ``fail_next`` (a list of ``{"method","path_regex","status","code",
  "message","count"}``; posting it replaces the list);
- ``GET /_emulator/throttle`` and ``POST /_emulator/throttle`` with ``{"reports": [5, 10],
  "identity": [3500, 10], "enabled": true}`` (any subset; every bucket starts full again);
- ``POST /_emulator/reset``: re-seed the tenant, clear faults, throttle buckets and sign-in state;
- ``GET /_emulator/audit``: every directoryAudit event, oldest first;
- ``GET /_emulator/health``: ``{"status": "ok", "users": n}``.

Bad input answers 400 ``{"error": "..."}``. Requests from a non-loopback address answer 403.
"""

from __future__ import annotations

import ipaddress
import json
from typing import TYPE_CHECKING, Any

from werkzeug.wrappers import Request, Response

if TYPE_CHECKING:
    from entra_emulator.server import EmulatorServer


def _json(body: Any, status: int = 200) -> Response:
    return Response(json.dumps(body), status=status, content_type="application/json")


def _is_loopback(address: str | None) -> bool:
    try:
        return address is not None and ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def handle_control(server: EmulatorServer, request: Request) -> Response:
    """Answer one ``/_emulator/...`` request."""
    if not _is_loopback(request.remote_addr):
        return _json({"error": "the control API answers loopback clients only"}, 403)
    name = request.path.removeprefix("/_emulator/").strip("/")
    method = request.method.upper()
    body: dict[str, Any] = {}
    if method == "POST" and request.get_data():
        try:
            loaded = json.loads(request.get_data())
        except ValueError as exc:
            return _json({"error": f"body is not JSON: {exc}"}, 400)
        if not isinstance(loaded, dict):
            return _json({"error": "body must be a JSON object"}, 400)
        body = loaded
    try:
        if name == "faults" and method in {"GET", "POST"}:
            if method == "POST":
                server.faults.configure(**body)
            return _json(server.faults.snapshot())
        if name == "throttle" and method in {"GET", "POST"}:
            if method == "POST":
                limits = {
                    key: (int(value[0]), float(value[1]))
                    for key, value in body.items()
                    if key != "enabled"
                }
                server.throttle.configure(limits=limits, enabled=body.get("enabled"))
            return _json(server.throttle.snapshot())
        if name == "reset" and method == "POST":
            server.reset()
            return _json({"status": "reset", "users": len(server.tenant.users)})
        if name == "audit" and method == "GET":
            with server.tenant.lock:
                events = list(server.tenant.audit_events)
            return _json({"value": events})
        if name == "health" and method == "GET":
            return _json({"status": "ok", "users": len(server.tenant.users)})
    except (ValueError, TypeError, IndexError) as exc:
        return _json({"error": str(exc)}, 400)
    return _json({"error": f"no control endpoint {method} /_emulator/{name}"}, 404)
