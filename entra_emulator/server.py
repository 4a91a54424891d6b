"""EmulatorServer: one HTTPS server answering as the login host and as Graph.

Use it as a process (``python -m entra_emulator``) or inside a test process::

    server = EmulatorServer(state_dir=tmp_path, port=0, users=200)
    server.start()          # serves in a daemon thread; returns once it answers
    server.base_url         # https://127.0.0.1:<port>
    server.ca_path          # the CA to trust
    server.tenant, server.faults, server.throttle
    server.stop()

It binds to loopback addresses only. Route modules written by other engineers (methods, sessions,
requirements, roles, audit, batch, service principals, reports) are imported when present, so the
server runs with whatever part of the Graph slice exists.
"""

from __future__ import annotations

import importlib
import ipaddress
import logging
import ssl
import threading
import time
import urllib.request
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from werkzeug.serving import BaseWSGIServer, make_server
from werkzeug.wrappers import Request, Response

from entra_emulator import methods_api, pki
from entra_emulator.control import handle_control
from entra_emulator.faults import Faults
from entra_emulator.graph_core import handle_graph_request
from entra_emulator.keepalive import ConnectionSet, KeepAliveHandler
from entra_emulator.oidc import OidcProvider
from entra_emulator.seed import DEFAULT_SEED, DOMAIN, TENANT_ID, build_tenant
from entra_emulator.tenant import ClientCertificate, Propagation, Tenant, check_licence
from entra_emulator.throttle import Throttle
from entra_emulator.tokens import GRAPH_APP_ID, GRAPH_RESOURCE, TokenService

logger = logging.getLogger("entra_emulator")

ROUTE_MODULES = (
    "users_api",
    "methods_api",
    "sessions_api",
    "requirements_api",
    "roles_api",
    "audit_api",
    "batch_api",
    "service_principals_api",
    "reports_api",
)


def load_route_modules() -> list[str]:
    """Import every route module that exists; returns the names imported."""
    loaded = []
    for name in ROUTE_MODULES:
        try:
            importlib.import_module(f"entra_emulator.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"entra_emulator.{name}":
                raise
            continue
        loaded.append(name)
    return loaded


class _QuietHandler(KeepAliveHandler):
    """Kept-alive connections (entra_emulator.keepalive), with request logging at DEBUG on the
    emulator's logger (URLs carry codes; keep them quiet)."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        logger.debug("%s %s %s", self.command, self.path.split("?", 1)[0], code)

    def log(self, type: str, message: str, *args: Any) -> None:
        logger.debug(message, *args)


def _check_loopback(host: str) -> None:
    if host == "localhost":
        return
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise ValueError(f"the emulator binds to loopback addresses only, not {host!r}")


class EmulatorServer:
    """The emulator: tenant state, token service, throttle, faults and the HTTPS server."""

    def __init__(
        self,
        state_dir: str | Path,
        host: str = "127.0.0.1",
        port: int = 0,
        users: int = 200,
        seed: int = DEFAULT_SEED,
        *,
        reports_limit: tuple[int, float] = (5, 10.0),
        identity_limit: tuple[int, float] = (3500, 10.0),
        throttle_enabled: bool = True,
        now: datetime | Callable[[], datetime] | None = None,
        redirect_uris: Iterable[str] = (),
        client_cert_paths: Iterable[str | Path] = (),
        fault_seed: int | None = None,
        licence: str = "p2",
    ) -> None:
        _check_loopback(host)
        self.state_dir = Path(state_dir)
        self.host = host
        self.users = users
        self.seed = seed
        self._now = now
        self.redirect_uris = tuple(redirect_uris)
        self.licence = check_licence(licence)
        self.propagation = Propagation()
        self.pki = pki.load_or_create(self.state_dir)
        self._client_certificates: list[ClientCertificate] = pki.load_client_certificates(
            self.state_dir
        ) + [pki.client_certificate_from_pem(Path(p).read_bytes()) for p in client_cert_paths]
        load_route_modules()

        self.faults = Faults(seed=fault_seed if fault_seed is not None else seed)
        self.throttle = Throttle(
            {"reports": reports_limit, "identity": identity_limit}, enabled=throttle_enabled
        )
        self._httpd: BaseWSGIServer = make_server(
            host,
            port,
            self._wsgi,
            threaded=True,
            ssl_context=self.pki.server_ssl_context(),
            request_handler=_QuietHandler,
        )
        # Read by KeepAliveHandler; stop() closes what is still open.
        self._connections = ConnectionSet()
        self._httpd.open_connections = self._connections  # type: ignore[attr-defined]
        self.port = int(self._httpd.server_port)
        url_host = f"[{host}]" if ":" in host else host
        self.base_url = f"https://{url_host}:{self.port}"
        self.tenant: Tenant = self._build_tenant()
        self.tokens = TokenService(
            signing_key=self.pki.signing_key,
            signing_cert=self.pki.signing_cert,
            tenant_id=TENANT_ID,
            issuer=f"{self.base_url}/{TENANT_ID}/v2.0",
            graph_audiences=(GRAPH_RESOURCE, GRAPH_APP_ID, self.base_url, self.base_url + "/"),
        )
        self.oidc = OidcProvider(
            tenant_getter=lambda: self.tenant,
            tokens=self.tokens,
            faults=self.faults,
            base_url=self.base_url,
            tenant_id=TENANT_ID,
            domain=DOMAIN,
        )
        self._thread: threading.Thread | None = None
        self._serving = threading.Event()

    # --- state ----------------------------------------------------------------------------------

    @property
    def ca_path(self) -> Path:
        return self.pki.ca_path

    @property
    def issuer(self) -> str:
        return self.tokens.issuer

    def now(self) -> datetime:
        """The data clock (Graph timestamps, audit events): pinned when ``now`` was given."""
        if self._now is None:
            return datetime.now(UTC)
        if callable(self._now):
            return self._now()
        return self._now

    def _build_tenant(self) -> Tenant:
        tenant = build_tenant(
            users=self.users,
            seed=self.seed,
            now=self.now(),
            redirect_uris=self.redirect_uris,
            client_certificates=self._client_certificates,
        )
        # The licence and the propagation delays are the server's settings: a reset keeps them.
        tenant.licence = self.licence
        tenant.propagation = self.propagation
        return tenant

    def set_licence(self, licence: str) -> None:
        """Change the tenant's licence ("free", "p1", "p2"), kept across ``reset``."""
        self.licence = check_licence(licence)
        with self.tenant.lock:
            self.tenant.licence = self.licence

    def set_propagation(self, **seconds: float) -> Propagation:
        """Set propagation delays (``pim_seconds``, ``role_assignment_seconds``,
        ``method_deletion_seconds``), kept across ``reset``."""
        for name, value in seconds.items():
            if name not in Propagation.__dataclass_fields__:
                raise ValueError(f"unknown propagation delay {name!r}")
            if float(value) < 0:
                raise ValueError(f"{name} must not be negative")
            setattr(self.propagation, name, float(value))
        return self.propagation

    def register_client_certificate(self, pem: bytes) -> None:
        """Add a certificate credential to the portal app (kept across ``reset``)."""
        cert = pki.client_certificate_from_pem(pem)
        self._client_certificates.append(cert)
        from entra_emulator.seed import CLIENT_ID

        with self.tenant.lock:
            self.tenant.apps[CLIENT_ID].certificates.append(cert)

    def reset(self) -> None:
        """Re-seed the tenant in place and clear faults, throttle buckets and sign-in state."""
        self.tenant.replace_with(self._build_tenant())
        methods_api.forget_deleted(self.tenant)
        self.faults.reset()
        self.throttle.configure()
        self.oidc.reset()

    # --- serving --------------------------------------------------------------------------------

    def _wsgi(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        path = request.path
        try:
            if path.startswith(("/v1.0/", "/beta/")) or path in {"/v1.0", "/beta"}:
                response = handle_graph_request(self, request)
            elif path.startswith("/_emulator/"):
                response = handle_control(self, request)
            else:
                response = self.oidc.handle(request)
        except Exception:  # a bug must answer 500 in Graph's shape, not kill the connection
            logger.exception("unhandled error for %s %s", request.method, path)
            response = Response(
                '{"error": {"code": "generalException", "message": "Emulator error."}}',
                status=500,
                content_type="application/json",
            )
        return response(environ, start_response)

    def start(self, timeout: float = 15.0) -> EmulatorServer:
        """Serve in a daemon thread; return once ``/_emulator/health`` answers over HTTPS."""
        if self._thread is not None:
            return self
        self._thread = threading.Thread(
            target=self.serve_forever, name=f"entra-emulator:{self.port}", daemon=True
        )
        self._thread.start()
        context = ssl.create_default_context(cafile=str(self.ca_path))
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(  # noqa: S310 - our own https URL
                    f"{self.base_url}/_emulator/health", context=context, timeout=2
                ) as answer:
                    if answer.status == 200:
                        return self
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def serve_forever(self) -> None:
        """Serve in the calling thread until ``stop()`` (the CLI)."""
        self._serving.set()
        self._httpd.serve_forever()

    def stop(self) -> None:
        """Stop serving, wake injected sleeps, close the socket."""
        self.faults.stop()
        if self._serving.is_set():
            # shutdown() waits for serve_forever to notice; never call it if that never ran.
            self._httpd.shutdown()
            self._serving.clear()
        self._httpd.server_close()
        # A client's kept connection must not outlive the server (it would still be answered).
        self._connections.close_all()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def __enter__(self) -> EmulatorServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
