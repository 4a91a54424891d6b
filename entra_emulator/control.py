"""The control API: a loopback test tool beside Graph (not part of Graph).

- ``GET /_emulator/faults`` and ``POST /_emulator/faults`` with any of ``latency_ms``,
  ``error_rate``, ``error_status``, ``timeout_rate``, ``timeout_seconds``,
  ``token_endpoint_down``, ``fail_next`` (a list of ``{"method","path_regex","status","code",
  "message","count"}``; posting it replaces the list);
- ``GET /_emulator/throttle`` and ``POST /_emulator/throttle`` with ``{"reports": [5, 10],
  "identity": [3500, 10], "enabled": true}`` (any subset; every bucket starts full again);
- ``GET /_emulator/licence`` and ``POST /_emulator/licence`` with ``{"licence": "free"|"p1"|"p2"}``
  (kept across a reset);
- ``GET /_emulator/propagation`` and ``POST /_emulator/propagation`` with any of
  ``pim_seconds``, ``role_assignment_seconds``, ``method_deletion_seconds`` (kept across a reset);
- ``GET /_emulator/app`` and ``POST /_emulator/app``: the portal's app registration as Entra holds
  it; a POST replaces any of ``application_permissions``, ``delegated_permissions``,
  ``app_roles`` (value -> id), ``identifier_uris``, ``redirect_uris``, ``client_secrets``,
  ``requested_access_token_version`` (until the next reset);
- ``POST /_emulator/reset``: re-seed the tenant, clear faults, throttle buckets and sign-in state;
- ``GET /_emulator/audit``: every directoryAudit event, oldest first;
- ``GET /_emulator/health``: ``{"status": "ok", "users": n}``.

Bad input answers 400 ``{"error": "..."}``. Requests from a non-loopback address answer 403.
"""

from __future__ import annotations

import dataclasses
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


_APP_LISTS = ("identifier_uris", "redirect_uris", "client_secrets")
_APP_SETS = ("application_permissions", "delegated_permissions")


def _portal_app(server: EmulatorServer, changes: dict[str, Any] | None) -> dict[str, Any]:
    """The portal app registration's editable parts, after applying ``changes``."""
    from entra_emulator.seed import CLIENT_ID

    with server.tenant.lock:
        app = server.tenant.apps[CLIENT_ID]
        for key, value in (changes or {}).items():
            if key in _APP_SETS or key in _APP_LISTS:
                if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                    raise ValueError(f"{key} must be a list of strings")
                setattr(app, key, set(value) if key in _APP_SETS else list(value))
            elif key == "app_roles":
                if not isinstance(value, dict):
                    raise ValueError("app_roles must be an object of value -> app role id")
                app.app_roles = {str(k): str(v) for k, v in value.items()}
            elif key == "requested_access_token_version":
                if value not in (1, 2, None):
                    raise ValueError("requested_access_token_version must be 1, 2 or null")
                app.requested_access_token_version = value
            else:
                raise ValueError(f"unknown app registration field {key!r}")
        return {
            "client_id": app.client_id,
            "application_permissions": sorted(app.application_permissions),
            "delegated_permissions": sorted(app.delegated_permissions),
            "app_roles": dict(app.app_roles),
            "identifier_uris": list(app.identifier_uris),
            "redirect_uris": list(app.redirect_uris),
            "requested_access_token_version": app.requested_access_token_version,
        }


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
        if name == "licence" and method in {"GET", "POST"}:
            if method == "POST":
                server.set_licence(str(body.get("licence", "")))
            return _json({"licence": server.licence})
        if name == "propagation" and method in {"GET", "POST"}:
            if method == "POST":
                server.set_propagation(**{k: float(v) for k, v in body.items()})
            return _json(dataclasses.asdict(server.propagation))
        if name == "app" and method in {"GET", "POST"}:
            return _json(_portal_app(server, body if method == "POST" else None))
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
