"""Sign-in state, session rotation and flushing, and no open redirect through ``next``.

Already covered in tests/accounts (and not repeated here):

- ``state`` random, bound to the session that started the sign-in, single use, and refused when
  another browser's or altered (login CSRF): test_accounts_signin_rules.py
  ``test_state_is_random_bound_to_the_session_and_single_use``, test_accounts_sign_in_flow.py
  ``test_a_state_this_browser_did_not_start_is_refused``; PKCE and nonce checks beside them;
- the session cookie changes at sign-in (``test_round_trip_greets_the_agent_by_name``), the
  session ends at sign-out (``test_sign_out_ends_the_portal_and_the_entra_session``);
- four hostile ``next`` values (``test_next_cannot_send_the_person_to_another_site``).

Added here: the old session keys are really gone from the store (a stolen or planted cookie is
useless after sign-in and after sign-out), more hostile ``next`` values through the whole
sign-in, and ``next`` carried from a protected page through sign-in and back.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.conf import settings
from django.contrib.sessions.models import Session
from django.test import Client

from tests.accounts.test_accounts_sign_in_flow import PORTAL_HOST, Browser
from tests.personas import PERSONAS

pytestmark = pytest.mark.django_db


@pytest.fixture
def browser(emulator: Any) -> Any:
    session = Browser(emulator)
    yield session
    session.close()


def _cookie(browser: Browser) -> str:
    return str(browser.portal.cookies[settings.SESSION_COOKIE_NAME].value)


def _replay(session_key: str, path: str = "/") -> Any:
    """A request from another client carrying ``session_key`` as its cookie."""
    thief = Client(HTTP_HOST=PORTAL_HOST)
    thief.cookies[settings.SESSION_COOKIE_NAME] = session_key
    return thief.get(path)


def test_a_planted_session_key_is_worthless_after_sign_in(browser: Browser) -> None:
    # Session fixation: the attacker knows the key of the session the sign-in starts in.
    authorize = browser.start_sign_in(login_hint=PERSONAS.agent.upn)
    planted = _cookie(browser)
    assert Session.objects.filter(session_key=planted).exists()

    assert browser.portal.get(browser.authorize(authorize)).status_code == 302
    signed_in_key = _cookie(browser)
    assert signed_in_key != planted
    assert not Session.objects.filter(session_key=planted).exists()
    # The planted key opens nothing; the new one is the person's.
    assert _replay(planted).status_code == 302
    assert _replay(signed_in_key).status_code == 200


def test_sign_out_deletes_the_session_from_the_store(browser: Browser) -> None:
    browser.sign_in(PERSONAS.agent.upn)
    key = _cookie(browser)
    assert _replay(key).status_code == 200

    assert browser.portal.post("/oauth2/logout").status_code == 302
    assert not Session.objects.filter(session_key=key).exists()
    # A copy of the cookie taken before sign-out no longer signs anyone in.
    replay = _replay(key)
    assert replay.status_code == 302 and replay["Location"].startswith("/oauth2/login")


@pytest.mark.parametrize(
    "next_path",
    [
        "///evil.example/",
        "https:evil.example",
        "/\t/evil.example",
        "\\\\evil.example",
        "/\\/evil.example",
        "javascript:alert(1)",
        "http://127.0.0.1:8000.evil.example/",
        " //evil.example",
        "https://127.0.0.1:8000@evil.example/",
    ],
)
def test_hostile_next_never_leaves_the_portal(browser: Browser, next_path: str) -> None:
    response = browser.sign_in(PERSONAS.agent.upn, next_path=next_path)
    assert response.status_code == 302
    # Refused: the person lands on the home page, never on the hostile target.
    assert response["Location"] == "/"


def test_next_from_a_protected_page_survives_the_sign_in(browser: Browser) -> None:
    refused = browser.portal.get("/requests/", {"status": "pending"})
    assert refused.status_code == 302
    assert refused["Location"] == "/oauth2/login?next=/requests/%3Fstatus%3Dpending"
    authorize = browser.portal.get(refused["Location"] + f"&login_hint={PERSONAS.agent.upn}")
    assert authorize.status_code == 302
    response = browser.portal.get(browser.authorize(authorize["Location"]))
    assert response.status_code == 302 and response["Location"] == "/requests/?status=pending"
