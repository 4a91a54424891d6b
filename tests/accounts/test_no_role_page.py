"""Bug 7, below the browser: a person without a portal role is sent from the callback to the plain
``/no-role/`` page; a used callback met again while signed in says "already signed in" (400, and
nothing is exchanged); ``/no-role/`` sends anyone else where they belong. The real sign-in views
against the real HTTPS emulator (tests/accounts/test_accounts_sign_in_flow.py's ``Browser``)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.test import Client

from audit.models import PortalEvent
from tests.accounts.test_accounts_sign_in_flow import Browser
from tests.personas import PERSONAS, signed_in


@pytest.fixture
def browser(emulator: Any, db: None) -> Iterator[Browser]:
    session = Browser(emulator)
    yield session
    session.close()


def test_the_callback_sends_a_person_without_a_role_to_a_plain_page(browser: Browser) -> None:
    callback = browser.authorize(browser.start_sign_in(login_hint=PERSONAS.outsider.upn))
    response = browser.portal.get(callback)
    assert response.status_code == 302 and response["Location"] == "/no-role/"
    page = browser.portal.get("/no-role/")
    assert page.status_code == 403
    html = page.content.decode()
    assert "You are signed in as <strong>Otto Outsider</strong>" in html
    assert "but you hold no portal role" in html
    # The refusal is recorded once, at the callback, not at every reload.
    assert browser.portal.get("/no-role/").status_code == 403
    assert PortalEvent.objects.filter(kind=PortalEvent.Kind.SIGN_IN_REFUSED).count() == 1

    # The same callback again (a reload before the redirect, the back button).
    again = browser.portal.get(callback)
    assert again.status_code == 400
    text = again.content.decode()
    assert "You are already signed in" in text and "Otto Outsider" in text
    assert "Sign-in failed" not in text and 'href="/no-role/"' in text


def test_a_used_callback_while_signed_in_with_a_role_links_home(browser: Browser) -> None:
    callback = browser.authorize(browser.start_sign_in(login_hint=PERSONAS.agent.upn))
    assert browser.portal.get(callback).status_code == 302
    again = browser.portal.get(callback)
    assert again.status_code == 400
    text = again.content.decode()
    assert "You are already signed in" in text and "Ada Agent" in text
    assert "Go to the portal" in text
    assert PortalEvent.objects.filter(kind=PortalEvent.Kind.SIGN_IN).count() == 1
    # An error callback this session never started says the same, and never an outsider's words.
    stale = browser.portal.get(
        "/oauth2/callback", {"error": "access_denied", "error_description": "Call +1 555 0100"}
    )
    assert stale.status_code == 400
    assert "You are already signed in" in stale.content.decode()
    assert "555 0100" not in stale.content.decode()


@pytest.mark.django_db
def test_the_no_role_page_sends_everyone_else_where_they_belong() -> None:
    anonymous = Client().get("/no-role/")
    assert anonymous.status_code == 302 and anonymous["Location"] == "/oauth2/login?next=/"
    agent = signed_in(PERSONAS.agent).get("/no-role/")
    assert agent.status_code == 302 and agent["Location"] == "/"
    outsider = signed_in(PERSONAS.outsider).get("/no-role/")
    assert outsider.status_code == 403 and b"you hold no portal role" in outsider.content
    assert signed_in(PERSONAS.outsider).post("/no-role/").status_code == 405
