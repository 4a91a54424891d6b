"""A small scripted HTTPS server on loopback for the transport's unit tests.

It answers the OpenID discovery and token requests MSAL makes (so the real MSAL code path runs)
and, for Graph paths, plays back answers a test scripted, recording every request. The integration
tests use the real emulator instead (test_against_emulator.py); this server exists to produce
exact edge cases on demand: a 429 with or without Retry-After, a dropped connection, a slow answer.
"""

from __future__ import annotations

import json
import re
import ssl
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import trustme

TENANT = "11111111-2222-3333-4444-555555555555"
CLIENT_ID = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"
CLIENT_SECRET = "local-test-secret"


@dataclass
class Answer:
    """A scripted answer. ``drop`` closes the connection without answering (after reading the
    request); ``delay`` sleeps before answering."""

    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    drop: bool = False
    delay: float = 0.0


@dataclass
class Recorded:
    method: str
    path: str  # raw path and query, as sent
    headers: dict[str, str]
    body: Any
    at: float


class LocalGraph:
    """``base_url``, ``ca_path``; ``script(method, path_regex, *answers)`` queues answers (the
    last one repeats); ``requests`` lists what arrived; ``token_answers`` scripts the token
    endpoint (default: a fresh token each time)."""

    def __init__(self, state_dir: Path) -> None:
        ca = trustme.CA()
        cert = ca.issue_cert("127.0.0.1", "localhost")
        self.ca_path = state_dir / "local-ca.pem"
        ca.cert_pem.write_to_path(str(self.ca_path))
        self._context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        cert.configure_cert(self._context)
        self._scripts: list[tuple[str, re.Pattern[str], list[Answer]]] = []
        self.requests: list[Recorded] = []
        self.token_requests: list[dict[str, Any]] = []
        self.token_answers: list[Answer] = []
        self.discovery_answers: list[Answer] = []
        self._lock = threading.Lock()
        self._tokens_issued = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                server._handle(self)

            def do_POST(self) -> None:
                server._handle(self)

            def do_PATCH(self) -> None:
                server._handle(self)

            def do_DELETE(self) -> None:
                server._handle(self)

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._httpd.socket = self._context.wrap_socket(self._httpd.socket, server_side=True)
        self.port = self._httpd.server_address[1]
        self.base_url = f"https://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def reset(self) -> None:
        with self._lock:
            self._scripts.clear()
            self.requests.clear()
            self.token_requests.clear()
            self.token_answers.clear()
            self.discovery_answers.clear()
            self._tokens_issued = 0

    def script(self, method: str, path_regex: str, *answers: Answer) -> None:
        with self._lock:
            self._scripts.append((method, re.compile(path_regex), list(answers)))

    def graph_requests(self) -> list[Recorded]:
        return [r for r in self.requests if not r.path.startswith(f"/{TENANT}/")]

    # --- serving ------------------------------------------------------------------------------

    def _pick(self, method: str, path: str) -> Answer | None:
        with self._lock:
            for m, pattern, answers in self._scripts:
                if m == method and pattern.search(unquote(urlsplit(path).path)):
                    return answers.pop(0) if len(answers) > 1 else answers[0]
        return None

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length) if length else b""
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode("utf-8", "replace")
        record = Recorded(handler.command, handler.path, dict(handler.headers), body, time.time())
        with self._lock:
            self.requests.append(record)
        path = urlsplit(handler.path).path
        if path == f"/{TENANT}/v2.0/.well-known/openid-configuration":
            answer = self._next(self.discovery_answers) or Answer(body=self._discovery())
        elif path == f"/{TENANT}/oauth2/v2.0/token":
            self.token_requests.append({"body": raw.decode(), "headers": dict(handler.headers)})
            answer = self._next(self.token_answers) or self._token()
        else:
            answer = self._pick(handler.command, handler.path) or Answer(
                404, {"error": {"code": "Request_ResourceNotFound", "message": "not scripted"}}
            )
        self._send(handler, answer)

    def _next(self, answers: list[Answer]) -> Answer | None:
        with self._lock:
            if not answers:
                return None
            return answers.pop(0) if len(answers) > 1 else answers[0]

    def _discovery(self) -> dict[str, Any]:
        base = f"{self.base_url}/{TENANT}"
        return {
            "issuer": f"{base}/v2.0",
            "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
            "token_endpoint": f"{base}/oauth2/v2.0/token",
            "jwks_uri": f"{base}/discovery/v2.0/keys",
            "end_session_endpoint": f"{base}/oauth2/v2.0/logout",
        }

    def _token(self) -> Answer:
        with self._lock:
            self._tokens_issued += 1
            n = self._tokens_issued
        return Answer(body={"token_type": "Bearer", "expires_in": 3600, "access_token": f"t{n}"})

    @staticmethod
    def _send(handler: BaseHTTPRequestHandler, answer: Answer) -> None:
        if answer.delay:
            time.sleep(answer.delay)
        if answer.drop:
            handler.close_connection = True
            handler.connection.close()
            return
        data = b"" if answer.body is None else json.dumps(answer.body).encode()
        try:
            handler.send_response(answer.status)
            for name, value in answer.headers.items():
                handler.send_header(name, value)
            if "request-id" not in answer.headers:
                handler.send_header("request-id", "local-req")
            if data:
                handler.send_header("Content-Type", "application/json")
            handler.send_header("Content-Length", str(len(data)))
            handler.end_headers()
            handler.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
            pass


def graph_error(status: int, code: str, message: str = "scripted", request_id: str = "rid") -> Any:
    """Graph's JSON error shape."""
    return {
        "error": {
            "code": code,
            "message": message,
            "innerError": {"request-id": request_id, "client-request-id": "x", "date": "now"},
        }
    }
