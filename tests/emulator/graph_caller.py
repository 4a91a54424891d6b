"""A tiny Graph caller for the emulator's own tests: real HTTPS, real tokens.

App-only tokens come from the emulator's token endpoint (client credentials with the portal's
demo secret), exactly as the portal gets them; delegated tokens are minted by the emulator's
token service for a named person (the sign-in flow itself is tested elsewhere).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import requests

from entra_emulator.seed import CLIENT_ID, CLIENT_SECRET, TENANT_ID

if TYPE_CHECKING:
    from entra_emulator.server import EmulatorServer


def app_token(
    server: EmulatorServer, *, client_id: str = CLIENT_ID, client_secret: str = CLIENT_SECRET
) -> str:
    """An app-only Graph token from ``/{tenant}/oauth2/v2.0/token`` (client credentials)."""
    answer = requests.post(
        f"{server.base_url.rstrip('/')}/{TENANT_ID}/oauth2/v2.0/token",
        data={
            "grant_type": "client_credentials",
            "client_id": client_id,
            "client_secret": client_secret,
            "scope": "https://graph.microsoft.com/.default",
        },
        verify=str(server.ca_path),
        timeout=30,
    )
    answer.raise_for_status()
    return str(answer.json()["access_token"])


def delegated_token(server: EmulatorServer, user_id: str, scopes: list[str]) -> str:
    """A delegated Graph token for ``user_id`` with ``scopes`` in ``scp``."""
    user = server.tenant.users[user_id]
    return server.tokens.issue_user_access_token(
        client_id=CLIENT_ID, user=user, audience="https://graph.microsoft.com", scopes=scopes
    )


class GraphCaller:
    """Calls ``{base}/{version}{path}`` with one bearer token; answers ``requests`` responses."""

    def __init__(self, server: EmulatorServer, token: str) -> None:
        self.server = server
        self.session = requests.Session()
        self.session.trust_env = False
        self.session.verify = str(server.ca_path)
        self.session.headers["Authorization"] = f"Bearer {token}"

    def url(self, path: str, version: str = "v1.0") -> str:
        return f"{self.server.base_url.rstrip('/')}/{version}{path}"

    def call(
        self,
        method: str,
        path: str,
        *,
        version: str = "v1.0",
        json: Any = None,
        params: dict[str, str] | None = None,
    ) -> requests.Response:
        return self.session.request(
            method, self.url(path, version), json=json, params=params, timeout=30
        )

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return self.call("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> requests.Response:
        return self.call("POST", path, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> requests.Response:
        return self.call("DELETE", path, **kwargs)

    def patch(self, path: str, **kwargs: Any) -> requests.Response:
        return self.call("PATCH", path, **kwargs)

    def follow(self, url: str) -> requests.Response:
        """GET an absolute ``@odata.nextLink`` verbatim."""
        return self.session.get(url, timeout=30)
