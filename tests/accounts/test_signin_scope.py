"""The sign-in's scope ``api://{client}/.default`` names the portal app's Application ID URI,
and the sign-in needs v2.0 access tokens (the app's ``requestedAccessTokenVersion`` 2).

A registration that has not exposed it (Expose an API > Application ID URI) makes Entra answer
AADSTS500011 (https://learn.microsoft.com/entra/identity-platform/reference-error-codes); the
emulator does the same once ``identifier_uris`` is emptied through POST /_emulator/app. The
sign-in then fails with a page naming the code and the fix, never a 500.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests
from django.conf import settings

from tests.accounts.test_accounts_sign_in_flow import Browser
from tests.personas import Personas


@pytest.fixture
def browser(fresh_tenant: Any, db: None) -> Iterator[Browser]:
    session = Browser(fresh_tenant)
    yield session
    session.close()


def _change_app(emulator: Any, changes: dict[str, Any]) -> None:
    with requests.Session() as control:
        control.trust_env = False
        control.verify = str(emulator.ca_path)
        answer = control.post(f"{emulator.base_url}/_emulator/app", json=changes, timeout=10)
    assert answer.status_code == 200, answer.text


def _expose(emulator: Any, uris: list[str]) -> None:
    _change_app(emulator, {"identifier_uris": uris})


def _assert_names_the_fix(html: str) -> None:
    client = settings.ENTRA_CLIENT_ID
    assert "AADSTS500011" in html
    assert f"api://{client}" in html
    assert "Expose an API &gt; Application ID URI" in html


def test_unexposed_api_refused_at_authorize_names_aadsts500011_and_the_fix(
    fresh_tenant: Any, browser: Browser, personas: Personas
) -> None:
    _expose(fresh_tenant, [])
    response = browser.sign_in(personas.agent.upn)
    assert response.status_code == 400
    _assert_names_the_fix(response.content.decode())
    assert "_auth_user_id" not in browser.portal.session


def test_unexposed_api_refused_at_the_code_exchange_names_the_fix(
    fresh_tenant: Any, browser: Browser, personas: Personas
) -> None:
    callback = browser.authorize(browser.start_sign_in(login_hint=personas.agent.upn))
    _expose(fresh_tenant, [])  # removed between the authorize step and the code exchange
    response = browser.portal.get(callback)
    assert response.status_code == 401
    _assert_names_the_fix(response.content.decode())
    assert "_auth_user_id" not in browser.portal.session


def test_exposed_api_signs_in(fresh_tenant: Any, browser: Browser, personas: Personas) -> None:
    _expose(fresh_tenant, [f"api://{settings.ENTRA_CLIENT_ID}"])
    response = browser.sign_in(personas.agent.upn)
    assert response.status_code == 302 and response["Location"] == "/"


def test_v1_access_tokens_are_refused_with_the_manifest_fix(
    fresh_tenant: Any, browser: Browser, personas: Personas
) -> None:
    """A new registration's requestedAccessTokenVersion is null: Entra then issues v1.0 tokens,
    whose issuer is not the v2.0 one the portal validates (the access-tokens page)."""
    _change_app(fresh_tenant, {"requested_access_token_version": None})
    response = browser.sign_in(personas.agent.upn)
    assert response.status_code == 401
    html = response.content.decode()
    assert "v1.0 access token" in html and "requestedAccessTokenVersion" in html
    assert "_auth_user_id" not in browser.portal.session
