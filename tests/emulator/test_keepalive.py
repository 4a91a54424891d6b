"""The emulator keeps a client's connection open between requests, as Graph does
(entra_emulator/keepalive.py), and a stopped emulator answers no kept connection."""

from __future__ import annotations

import http.client
import json
import ssl
from pathlib import Path

import pytest

from entra_emulator.server import EmulatorServer


def _connection(server: EmulatorServer) -> http.client.HTTPSConnection:
    context = ssl.create_default_context(cafile=str(server.ca_path))
    return http.client.HTTPSConnection("127.0.0.1", server.port, context=context, timeout=10)


def _get(conn: http.client.HTTPSConnection, path: str, **headers: str) -> http.client.HTTPResponse:
    conn.request("GET", path, headers=headers)
    answer = conn.getresponse()
    answer.read()
    return answer


def test_requests_share_one_connection(emu: EmulatorServer) -> None:
    conn = _connection(emu)
    try:
        first = _get(conn, "/_emulator/health")
        sock = conn.sock
        second = _get(conn, "/_emulator/health")
        assert (first.status, second.status) == (200, 200)
        assert first.getheader("Connection") is None
        assert conn.sock is sock  # http.client reconnects (a new socket) after a close
        assert int(second.getheader("Content-Length") or 0) > 0
    finally:
        conn.close()


def test_an_unread_request_body_does_not_become_the_next_request(emu: EmulatorServer) -> None:
    conn = _connection(emu)
    try:
        # No route reads this body; the next request on the connection must still be whole.
        body = json.dumps({"padding": "x" * 5000}).encode()
        conn.request(
            "POST", "/nowhere/at/all", body=body, headers={"Content-Type": "application/json"}
        )
        sock = conn.sock
        answer = conn.getresponse()
        answer.read()
        again = _get(conn, "/_emulator/health")
        assert 400 <= answer.status < 500
        assert again.status == 200
        assert conn.sock is sock
    finally:
        conn.close()


def test_connection_close_is_honoured(emu: EmulatorServer) -> None:
    conn = _connection(emu)
    try:
        answer = _get(conn, "/_emulator/health", Connection="close")
        assert answer.status == 200
        assert answer.getheader("Connection") == "close"
        assert conn.sock is None  # http.client closed it, as the server said
    finally:
        conn.close()


def test_a_stopped_emulator_answers_no_kept_connection(tmp_path: Path) -> None:
    server = EmulatorServer(state_dir=tmp_path, port=0, users=5).start()
    conn = _connection(server)
    try:
        assert _get(conn, "/_emulator/health").status == 200
        server.stop()
        with pytest.raises((http.client.RemoteDisconnected, ConnectionError, ssl.SSLError)):
            # http.client does not reconnect a connection it still believes open.
            conn.request("GET", "/_emulator/health")
            conn.getresponse().read()
    finally:
        conn.close()
        server.stop()
