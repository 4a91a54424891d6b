"""Fixtures of the emulator's own tests: a private emulator in this process.

``emulator_server`` (session) is an ``EmulatorServer`` of its own (state in a pytest temporary
folder, random port), separate from the run's shared ``emulator`` of tests/plugin.py, because
these tests switch faults and throttling on and re-seed the tenant. A client certificate
credential is registered on the portal app for the certificate-assertion tests.
``emu`` (function) is the same server; after the test its faults are cleared, throttling is back
to Graph's defaults and the tenant is re-seeded.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from entra_emulator import pki
from entra_emulator.seed import CLIENT_ID, CLIENT_SECRET, READER_CLIENT_ID, TENANT_ID
from entra_emulator.server import EmulatorServer


@dataclass(frozen=True)
class ClientCert:
    cert_path: Path
    key_path: Path  # key followed by the certificate (what MSAL loads)


@pytest.fixture(scope="session")
def client_cert(tmp_path_factory: pytest.TempPathFactory) -> ClientCert:
    folder = tmp_path_factory.mktemp("client-cert")
    cert_path, key_path = pki.create_client_certificate(folder, "portal-credential")
    return ClientCert(cert_path, key_path)


@pytest.fixture(scope="session")
def emulator_server(
    tmp_path_factory: pytest.TempPathFactory, client_cert: ClientCert
) -> Iterator[EmulatorServer]:
    state_dir = tmp_path_factory.mktemp("emulator-state")
    server = EmulatorServer(
        state_dir=state_dir, port=0, users=200, client_cert_paths=[client_cert.cert_path]
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def emu(emulator_server: EmulatorServer) -> Iterator[EmulatorServer]:
    try:
        yield emulator_server
    finally:
        emulator_server.reset()
        emulator_server.throttle.configure(
            limits={"reports": (5, 10.0), "identity": (3500, 10.0)}, enabled=True
        )


def token_url(server: EmulatorServer) -> str:
    return f"{server.base_url}/{TENANT_ID}/oauth2/v2.0/token"


def http(server: EmulatorServer) -> requests.Session:
    """A session trusting only the emulator's CA (REQUESTS_CA_BUNDLE ignored)."""
    session = requests.Session()
    session.trust_env = False
    session.verify = str(server.ca_path)
    return session


def app_token(
    server: EmulatorServer, client_id: str = CLIENT_ID, secret: str = CLIENT_SECRET
) -> str:
    answer = http(server).post(
        token_url(server),
        data={
            "grant_type": "client_credentials",
            "client_id": client_id,
            "client_secret": secret,
            "scope": "https://graph.microsoft.com/.default",
        },
        timeout=10,
    )
    assert answer.status_code == 200, answer.text
    return str(answer.json()["access_token"])


def reader_token(server: EmulatorServer) -> str:
    from entra_emulator.seed import READER_CLIENT_SECRET

    return app_token(server, READER_CLIENT_ID, READER_CLIENT_SECRET)


def graph_get(
    server: EmulatorServer,
    path: str,
    token: str,
    *,
    params: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 10,
) -> requests.Response:
    all_headers = {"Authorization": f"Bearer {token}", **(headers or {})}
    return http(server).get(
        f"{server.base_url}/v1.0{path}", params=params, headers=all_headers, timeout=timeout
    )
