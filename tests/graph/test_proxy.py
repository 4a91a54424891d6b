"""The egress proxy: Graph, token and sign-in calls go through an HTTPS (CONNECT) proxy when one is
configured, NO_PROXY bypasses it, and TLS through the tunnel is still checked against the
configured CA bundle (the environment's REQUESTS_CA_BUNDLE never replaces it).

The proxy is a tiny CONNECT proxy on loopback that counts its tunnels. It can also redirect a
tunnel to another port: the clients are pointed at a port where nothing listens, and only the
proxy knows where the server really is, so a call that did not go through the proxy fails.
"""

from __future__ import annotations

import os
import select
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme
from django.test import override_settings

from accounts.adfs import PortalAdfsSettings, sign_in_proxies
from graph import users
from graph.client import bypasses_proxy, proxy_for
from graph.errors import GraphTokenUnavailable
from portal.devrun import BASE_DIR
from portal.graph_client import graph_config_from_settings
from tests.graph.conftest import MakeClient
from tests.graph.local_graph import TENANT, Answer, LocalGraph
from tests.test_settings import PRODUCTION, last_line

USER = {"id": "u1", "displayName": "Sam Standard", "userPrincipalName": "sam@contoso.test"}


class TunnelProxy:
    """An HTTP CONNECT proxy on 127.0.0.1: ``tunnels`` lists each CONNECT target it opened;
    ``redirect`` maps a requested port to the port it really connects to."""

    def __init__(self) -> None:
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = self._server.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.tunnels: list[str] = []
        self.redirect: dict[int, int] = {}
        self._lock = threading.Lock()
        self._stopped = False
        threading.Thread(target=self._accept, daemon=True).start()

    def stop(self) -> None:
        self._stopped = True
        self._server.close()

    def _accept(self) -> None:
        while not self._stopped:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            threading.Thread(target=self._tunnel, args=(client,), daemon=True).start()

    def _tunnel(self, client: socket.socket) -> None:
        with client:
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = client.recv(4096)
                if not chunk:
                    return
                head += chunk
            method, target, _ = head.split(b"\r\n", 1)[0].decode().split(" ", 2)
            if method != "CONNECT":
                client.sendall(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")
                return
            host, _, port = target.rpartition(":")
            with self._lock:
                self.tunnels.append(target)
            try:
                upstream = socket.create_connection(
                    (host, self.redirect.get(int(port), int(port))), timeout=5
                )
            except OSError:
                client.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
                return
            with upstream:
                client.sendall(b"HTTP/1.1 200 Connection Established\r\n\r\n")
                _pump(client, upstream)


def _pump(a: socket.socket, b: socket.socket) -> None:
    peers = {a: b, b: a}
    while True:
        readable, _, _ = select.select(list(peers), [], [], 10)
        if not readable:
            return
        for sock in readable:
            try:
                data = sock.recv(65536)
            except OSError:
                return
            if not data:
                return
            peers[sock].sendall(data)


def _dead_port() -> int:
    """A loopback port where nothing listens."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def proxy() -> Iterator[TunnelProxy]:
    server = TunnelProxy()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def hidden(local_graph: LocalGraph, proxy: TunnelProxy) -> str:
    """``127.0.0.1:<dead port>``: reachable only through the proxy, which leads it to the server."""
    port = _dead_port()
    proxy.redirect[port] = local_graph.port
    return f"127.0.0.1:{port}"


def _drop_connections(client: Any) -> None:
    # Close the pooled connections (and tunnels) so that the next call opens a new one.
    client._shared.session.close()


def test_token_and_graph_calls_go_through_the_proxy(
    local_graph: LocalGraph, make_client: MakeClient, proxy: TunnelProxy, hidden: str
) -> None:
    local_graph.script("GET", r"^/v1.0/users/[^/]+$", Answer(body=USER))
    client = make_client(
        login_host=hidden, graph_url=f"https://{hidden}", https_proxy=proxy.url, no_proxy=""
    )
    client.check_token()  # MSAL: discovery at the hidden port, then its token endpoint
    assert len(local_graph.token_requests) == 1
    assert hidden in proxy.tunnels
    token_tunnels = len(proxy.tunnels)
    _drop_connections(client)
    assert users.get_user(client, "u1").display_name == "Sam Standard"
    assert len(proxy.tunnels) == token_tunnels + 1
    assert proxy.tunnels[-1] == hidden
    assert len(local_graph.graph_requests()) == 1


def test_without_the_proxy_the_hidden_server_is_unreachable(
    make_client: MakeClient, hidden: str
) -> None:
    client = make_client(login_host=hidden, graph_url=f"https://{hidden}", max_retries=0)
    with pytest.raises(GraphTokenUnavailable):
        client.check_token()


def test_no_proxy_bypasses_the_proxy(
    local_graph: LocalGraph, make_client: MakeClient, proxy: TunnelProxy
) -> None:
    local_graph.script("GET", r"^/v1.0/users/[^/]+$", Answer(body=USER))
    client = make_client(https_proxy=proxy.url, no_proxy="example.com, 127.0.0.1")
    assert users.get_user(client, "u1").display_name == "Sam Standard"
    assert proxy.tunnels == []
    assert len(local_graph.token_requests) == 1


def test_the_ca_bundle_still_decides_trust_through_the_tunnel(
    local_graph: LocalGraph,
    make_client: MakeClient,
    proxy: TunnelProxy,
    hidden: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    other_ca = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other_ca))
    through = {"login_host": hidden, "graph_url": f"https://{hidden}", "https_proxy": proxy.url}
    # The environment's bundle trusts the server; the configured one does not: refused.
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(local_graph.ca_path))
    monkeypatch.setenv("CURL_CA_BUNDLE", str(local_graph.ca_path))
    refused = make_client(ca_bundle=str(other_ca), max_retries=0, **through)
    with pytest.raises(GraphTokenUnavailable):
        refused.check_token()
    assert hidden in proxy.tunnels  # it did reach the server through the proxy
    assert local_graph.token_requests == []
    # The other way round: the configured bundle trusts it, the environment's does not.
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(other_ca))
    monkeypatch.setenv("CURL_CA_BUNDLE", str(other_ca))
    make_client(ca_bundle=str(local_graph.ca_path), **through).check_token()
    assert len(local_graph.token_requests) == 1


def test_sign_in_discovery_and_token_calls_go_through_the_proxy(
    local_graph: LocalGraph, proxy: TunnelProxy, hidden: str, settings: Any
) -> None:
    """django-auth-adfs's own session (discovery, keys, the code exchange) uses the proxy."""
    from django_auth_adfs import config as adfs_config

    base = f"https://{hidden}/{TENANT}"
    local_graph.discovery_answers.append(
        Answer(
            body={
                "issuer": f"{base}/v2.0",
                "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
                "token_endpoint": f"{base}/oauth2/v2.0/token",
                "jwks_uri": f"{base}/discovery/v2.0/keys",
                "end_session_endpoint": f"{base}/oauth2/v2.0/logout",
                "msgraph_host": "graph.microsoft.com",
            }
        )
    )
    local_graph.script("GET", r"/discovery/v2.0/keys$", Answer(body={"keys": []}))
    auth_adfs = {**settings.AUTH_ADFS, "TENANT_ID": TENANT, "CA_BUNDLE": str(local_graph.ca_path)}
    with override_settings(
        ENTRA_LOGIN_HOST=hidden,
        ENTRA_HTTPS_PROXY=proxy.url,
        ENTRA_NO_PROXY="localhost",
        AUTH_ADFS=auth_adfs,
    ):
        adfs_settings = PortalAdfsSettings()
        assert adfs_settings.PROXIES == {"https": proxy.url}
        original = adfs_config.settings
        adfs_config.settings = adfs_settings
        try:
            provider = adfs_config.ProviderConfig()
            provider.session.trust_env = False  # as accounts.apps.AccountsConfig.ready does
            provider.load_config()
            response = provider.session.post(
                provider.token_endpoint,
                data={"grant_type": "authorization_code", "code": "c"},
                timeout=5,
            )
        finally:
            adfs_config.settings = original
    assert response.status_code == 200
    assert provider.token_endpoint == f"{base}/oauth2/v2.0/token"
    assert len(local_graph.token_requests) == 1
    assert proxy.tunnels and set(proxy.tunnels) == {hidden}


def test_sign_in_bypasses_the_proxy_for_a_login_host_in_no_proxy(settings: Any) -> None:
    settings.ENTRA_LOGIN_HOST = "login.microsoftonline.com"
    settings.ENTRA_HTTPS_PROXY = "http://proxy.example.com:3128"
    settings.ENTRA_NO_PROXY = ".microsoftonline.com"
    assert sign_in_proxies() == {}
    settings.ENTRA_NO_PROXY = "graph.microsoft.com"
    assert sign_in_proxies() == {"https": "http://proxy.example.com:3128"}


def test_graph_config_takes_the_proxy_settings(settings: Any) -> None:
    settings.ENTRA_HTTPS_PROXY = "http://user:secret@proxy.example.com:3128"
    settings.ENTRA_NO_PROXY = "10.0.0.0/8"
    config = graph_config_from_settings()
    assert config.https_proxy == "http://user:secret@proxy.example.com:3128"
    assert config.no_proxy == "10.0.0.0/8"
    assert "secret" not in repr(config)


@pytest.mark.parametrize(
    ("url", "no_proxy", "bypass"),
    [
        ("https://graph.microsoft.com/v1.0/users", "", False),
        ("https://graph.microsoft.com/v1.0/users", "*", True),
        ("https://graph.microsoft.com/v1.0/users", "graph.microsoft.com", True),
        ("https://graph.microsoft.com/v1.0/users", "GRAPH.microsoft.com", True),
        ("https://graph.microsoft.com/v1.0/users", "microsoft.com", True),
        ("https://graph.microsoft.com/v1.0/users", ".microsoft.com", True),
        ("https://graph.microsoft.com/v1.0/users", "soft.com", False),
        ("https://graph.microsoft.com/v1.0/users", "example.com, graph.microsoft.com", True),
        ("https://graph.microsoft.com/v1.0/users", "graph.microsoft.com:443", True),
        ("https://graph.microsoft.com/v1.0/users", "graph.microsoft.com:8443", False),
        ("https://10.1.2.3:8443/x", "10.0.0.0/8", True),
        ("https://10.1.2.3:8443/x", "192.168.0.0/16", False),
        ("https://10.1.2.3:8443/x", "10.1.2.3", True),
        ("https://10.1.2.3:8443/x", "1.2.3", False),
        ("https://[::1]:8443/x", "::1/128", True),
        ("https://[::1]:8443/x", "[::1]:8443", True),
    ],
)
def test_no_proxy_syntax(url: str, no_proxy: str, bypass: bool) -> None:
    assert bypasses_proxy(url, no_proxy) is bypass
    expected = None if bypass else "http://proxy:3128"
    assert proxy_for(url, "http://proxy:3128", no_proxy) == expected


def test_no_proxy_configured_means_direct() -> None:
    assert proxy_for("https://graph.microsoft.com/", "", "") is None


def _settings_in_a_subprocess(changes: dict[str, str | None]) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k.lower() not in {"https_proxy", "no_proxy"}}
    env["DJANGO_SETTINGS_MODULE"] = "portal.settings"
    for name, value in changes.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    code = (
        "import django; django.setup(); from django.conf import settings; "
        "print(repr(settings.ENTRA_HTTPS_PROXY), repr(settings.ENTRA_NO_PROXY))"
    )
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_settings_read_the_standard_variables_lower_case_first() -> None:
    result = _settings_in_a_subprocess(
        {
            **PRODUCTION,
            "HTTPS_PROXY": "http://upper.example.com:3128",
            "https_proxy": "http://lower.example.com:3128",
            "NO_PROXY": "localhost,.internal.example.com",
        }
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [
        "'http://lower.example.com:3128'",
        "'localhost,.internal.example.com'",
    ]


def test_the_demo_ignores_the_proxy() -> None:
    result = _settings_in_a_subprocess({"HTTPS_PROXY": "http://proxy.example.com:3128"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["''", "''"]


@pytest.mark.parametrize(
    "value", ["proxy.example.com:3128", "socks5://proxy:1080", "http://:3128", "http://u:pw@p"]
)
def test_a_bad_proxy_stops_the_start_without_showing_it(value: str) -> None:
    result = _settings_in_a_subprocess({**PRODUCTION, "HTTPS_PROXY": value})
    assert result.returncode != 0
    assert last_line(result).startswith("portal.config.ConfigError: HTTPS_PROXY ")
    assert "pw" not in result.stderr
