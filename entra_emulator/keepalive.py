"""HTTP/1.1 persistent connections for the emulator's server.

Graph and the login host keep a client's connection open between requests: HTTP/1.1's default
(RFC 9112, section 9.3, "Persistence"), which Microsoft's client guidance relies on when it tells
apps to reuse one HTTP client so that its pooled connections are reused
(https://learn.microsoft.com/dotnet/fundamentals/networking/http/httpclient-guidelines). The
Graph documentation does not say how long Graph keeps an idle connection; ``IDLE_SECONDS`` is
ours.

Werkzeug's development server closes every connection ("Connection: close" on each answer, and
it drains whatever follows the request on the socket, which on a kept connection would swallow
the next request). Against it, every Graph call of the portal paid a new TLS handshake on both
sides, a cost no real tenant charges. This handler answers each request on the same connection
instead:

- the request body is read through a stream limited to its Content-Length, and what the
  application left unread is read off before the next request (a chunked request body closes
  the connection after the answer instead);
- the answer is buffered whole and sent with its Content-Length (the emulator's answers are
  small JSON or HTML documents);
- the connection closes when the client asks (``Connection: close``, or HTTP/1.0 without
  keep-alive), after an application error, or after ``IDLE_SECONDS`` without a request.

``ConnectionSet`` records the open connections so that stopping the server closes them too: a
stopped emulator must look unreachable to a client holding a pooled connection, as a stopped
Graph would, not go on answering on the old connection's thread.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable
from typing import Any

from werkzeug.serving import WSGIRequestHandler
from werkzeug.wsgi import LimitedStream

logger = logging.getLogger("entra_emulator")

# How long an idle connection stays open (the socket timeout of a connection's reads).
IDLE_SECONDS = 120.0
# No body to send with these answers (RFC 9110, sections 15.2, 15.3.5 and 15.4.5).
_NO_BODY_CODES = frozenset({204, 304})
_DROPPED = (ConnectionError, TimeoutError, socket.timeout)


class ConnectionSet:
    """The server's open client connections, closed all at once by ``close_all``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()

    def add(self, conn: socket.socket) -> None:
        with self._lock:
            self._open.add(conn)

    def discard(self, conn: socket.socket) -> None:
        with self._lock:
            self._open.discard(conn)

    def close_all(self) -> None:
        with self._lock:
            conns, self._open = list(self._open), set()
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # already closed by the client


class KeepAliveHandler(WSGIRequestHandler):
    """A WSGI request handler that keeps the connection open between requests (see above)."""

    protocol_version = "HTTP/1.1"
    timeout = IDLE_SECONDS

    def setup(self) -> None:
        super().setup()
        # An answer goes out in one write (below); never hold it back for the client's ACK.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        connections = getattr(self.server, "open_connections", None)
        if connections is not None:
            connections.add(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            connections = getattr(self.server, "open_connections", None)
            if connections is not None:
                connections.discard(self.connection)

    def run_wsgi(self) -> None:
        if self.headers.get("Expect", "").lower().strip(" \t") == "100-continue":
            self.wfile.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        self.environ = environ = self.make_environ()
        if environ.get("wsgi.input_terminated"):
            # A chunked body (werkzeug's DechunkedInput): answered, then the connection closes,
            # so nothing of it can be taken for the next request.
            self.close_connection = True
            body_in: Any = None
        else:
            try:
                length = int(environ.get("CONTENT_LENGTH") or 0)
            except ValueError:
                length = -1
            if length < 0:
                self.close_connection = True
                self._send(400, [("Content-Type", "text/plain")], b"Bad Content-Length")
                return
            body_in = LimitedStream(self.rfile, length)  # type: ignore[arg-type]
            environ["wsgi.input"] = body_in
            environ["wsgi.input_terminated"] = True

        answer: dict[str, Any] = {}

        def start_response(
            status: str, headers: list[tuple[str, str]], exc_info: Any = None
        ) -> Callable[[bytes], None]:
            if exc_info and answer:
                raise exc_info[1].with_traceback(exc_info[2])
            answer["status"], answer["headers"] = status, headers
            return lambda data: answer.setdefault("written", []).append(data)

        try:
            chunks = self.server.app(environ, start_response)
            try:
                body = b"".join([*answer.get("written", []), *chunks])
            finally:
                close = getattr(chunks, "close", None)
                if close is not None:
                    close()
            if body_in is not None:
                body_in.exhaust()  # what the application did not read, before the next request
        except _DROPPED:
            self.close_connection = True
            return
        except Exception:
            # The path only: a query can carry codes (as _QuietHandler.log_request keeps it).
            logger.exception("emulator error for %s %s", self.command, self.path.split("?", 1)[0])
            self.close_connection = True
            self._send(500, [("Content-Type", "text/plain")], b"Internal Server Error")
            return
        code_text, _, reason = answer["status"].partition(" ")
        self._send(int(code_text), answer["headers"], body, reason)

    def _send(
        self, code: int, headers: list[tuple[str, str]], body: bytes, reason: str = ""
    ) -> None:
        try:
            self.send_response(code, reason or None)
            for key, value in headers:
                if key.lower() not in ("content-length", "connection", "transfer-encoding"):
                    self.send_header(key, value)
            no_body = code in _NO_BODY_CODES or 100 <= code < 200
            if not no_body:
                if self.command == "HEAD":
                    given = [v for k, v in headers if k.lower() == "content-length"]
                    self.send_header("Content-Length", given[0] if given else str(len(body)))
                else:
                    self.send_header("Content-Length", str(len(body)))
            if self.close_connection:
                self.send_header("Connection", "close")
            # The head and the body in one write (end_headers() would send the head alone).
            self._headers_buffer.append(b"\r\n")
            if body and not no_body and self.command != "HEAD":
                self._headers_buffer.append(body)
            self.flush_headers()
        except _DROPPED:
            self.close_connection = True
