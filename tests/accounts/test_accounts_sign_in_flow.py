"""The whole sign-in through the real django-auth-adfs views against the real HTTPS emulator.

A ``Browser`` is one person's browser: Django's test client talks to the portal, a
``requests.Session`` (trusting the emulator's CA) talks to the emulator, and redirects between
the two are followed by hand so each step can be checked. The emulator's ``/authorize`` signs
the ``login_hint`` person in directly and answers with a redirect carrying the code.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from django.conf import settings
from django.test import Client

from accounts.models import PortalProfile
from accounts.signin import SESSION_KEY
from audit.models import PortalEvent
from tests.personas import LEAD, Personas

PORTAL_HOST = "127.0.0.1:8000"


class Browser:
    """One person's browser, with separate cookies for the portal and the emulator."""

    def __init__(self, emulator: Any) -> None:
        self.portal = Client(HTTP_HOST=PORTAL_HOST)
        self.idp = requests.Session()
        self.idp.trust_env = False
        self.idp.verify = str(emulator.ca_path)

    def start_sign_in(self, *, login_hint: str | None, next_path: str | None = None) -> str:
        """Open the portal's sign-in; returns the emulator authorize URL it redirects to."""
        query = {k: v for k, v in (("login_hint", login_hint), ("next", next_path)) if v}
        response = self.portal.get("/oauth2/login", query)
        assert response.status_code == 302, response
        location: str = response["Location"]
        assert location.startswith(f"https://{settings.ENTRA_LOGIN_HOST}/")
        return location

    def authorize(self, authorize_url: str) -> str:
        """Let the emulator sign in; returns the portal callback path with code and state."""
        response = self.idp.get(authorize_url, allow_redirects=False, timeout=10)
        assert response.status_code in (302, 303), (response.status_code, response.text[:300])
        callback = urlsplit(response.headers["Location"])
        assert f"{callback.scheme}://{callback.netloc}" == f"http://{PORTAL_HOST}"
        assert callback.path == "/oauth2/callback"
        return f"{callback.path}?{callback.query}"

    def sign_in(self, upn: str, next_path: str | None = None) -> Any:
        """The whole round trip; returns the portal's answer to the callback."""
        return self.portal.get(
            self.authorize(self.start_sign_in(login_hint=upn, next_path=next_path))
        )

    def close(self) -> None:
        self.idp.close()


@pytest.fixture
def browser(emulator: Any, db: None) -> Iterator[Browser]:
    session = Browser(emulator)
    yield session
    session.close()


def test_round_trip_greets_the_agent_by_name(browser: Browser, personas: Personas) -> None:
    ada = personas.agent
    authorize_url = browser.start_sign_in(login_hint=ada.upn)
    query = parse_qs(urlsplit(authorize_url).query)
    assert query["client_id"] == [settings.ENTRA_CLIENT_ID]
    assert query["login_hint"] == [ada.upn]
    assert query["code_challenge_method"] == ["S256"] and query["nonce"][0]
    assert query["redirect_uri"] == [f"http://{PORTAL_HOST}/oauth2/callback"]
    state = query["state"][0]
    assert state in browser.portal.session[SESSION_KEY]
    key_before = browser.portal.cookies[settings.SESSION_COOKIE_NAME].value

    response = browser.portal.get(browser.authorize(authorize_url))
    assert response.status_code == 302 and response["Location"] == "/"
    # Signing in rotated the session key (no session fixation) and used up the state.
    assert browser.portal.cookies[settings.SESSION_COOKIE_NAME].value != key_before
    assert state not in browser.portal.session.get(SESSION_KEY, {})

    home = browser.portal.get("/")
    assert home.status_code == 200
    html = home.content.decode()
    assert any(f"Good {part}, Ada Agent" in html for part in ("morning", "afternoon", "evening"))
    assert '<span class="role-badge">Agent</span>' in html

    profile = PortalProfile.objects.get(oid=ada.oid)
    assert profile.display_name == "Ada Agent" and profile.upn == ada.upn
    assert profile.roles == ["Agent"]
    assert profile.user.username == ada.oid
    event = PortalEvent.objects.get(kind=PortalEvent.Kind.SIGN_IN)
    assert (event.actor_name, event.actor_oid) == ("Ada Agent", ada.oid)


@pytest.mark.django_db(transaction=True)
def test_round_trip_in_a_real_browser_session(
    live_server: Any, emulator: Any, personas: Personas
) -> None:
    """Every redirect followed by ``requests``, as a browser would, against a live portal."""
    with requests.Session() as web:
        web.trust_env = False
        web.verify = str(emulator.ca_path)
        response = web.get(
            f"{live_server.url}/oauth2/login",
            params={"login_hint": personas.lead.upn, "next": "/"},
            timeout=20,
        )
    assert response.status_code == 200, response.text[:500]
    assert response.url == f"{live_server.url}/"
    assert "Leo Lead" in response.text and '<span class="role-badge">Lead</span>' in response.text


def test_person_without_a_role_is_refused_everywhere(browser: Browser, personas: Personas) -> None:
    response = browser.sign_in(personas.outsider.upn)
    assert response.status_code == 302 and response["Location"] == "/no-role/"
    response = browser.portal.get("/no-role/")
    assert response.status_code == 403
    html = response.content.decode()
    assert "You are signed in as <strong>Otto Outsider</strong>" in html
    assert "but you hold no portal role" in html and "Helpdesk.Agent" in html
    home = browser.portal.get("/")
    assert home.status_code == 403 and "you hold no portal role" in home.content.decode()
    event = PortalEvent.objects.get()
    assert event.kind == PortalEvent.Kind.SIGN_IN_REFUSED
    assert event.actor_name == "Otto Outsider"


def test_roles_follow_entra_at_the_next_sign_in(
    fresh_tenant: Any, browser: Browser, db: None
) -> None:
    leo = LEAD
    tenant = fresh_tenant.tenant
    try:
        browser.sign_in(leo.upn)
        assert PortalProfile.objects.get(oid=leo.oid).roles == ["Lead"]

        with tenant.lock:
            tenant.app_role_assignments[leo.oid] = {"Helpdesk.Agent"}
        browser.portal.post("/oauth2/logout")
        browser.sign_in(leo.upn)
        assert PortalProfile.objects.get(oid=leo.oid).roles == ["Agent"]

        with tenant.lock:
            tenant.app_role_assignments.pop(leo.oid, None)
        browser.portal.post("/oauth2/logout")
        refused = browser.sign_in(leo.upn)
        assert refused.status_code == 302 and refused["Location"] == "/no-role/"
        assert PortalProfile.objects.get(oid=leo.oid).roles == []
    finally:
        # Later tests sign in as Leo with his seeded role.
        fresh_tenant.reset()


def test_a_state_this_browser_did_not_start_is_refused(
    emulator: Any, browser: Browser, personas: Personas
) -> None:
    # An attacker starts a sign-in as Otto and sends the callback link to Ada (login CSRF).
    attacker = Browser(emulator)
    try:
        callback = attacker.authorize(attacker.start_sign_in(login_hint=personas.outsider.upn))
    finally:
        attacker.close()
    response = browser.portal.get(callback)
    assert response.status_code == 400
    assert "_auth_user_id" not in browser.portal.session

    # A state altered in transit is refused too, and the code is not exchanged.
    callback = browser.authorize(browser.start_sign_in(login_hint=personas.agent.upn))
    path, _, query = callback.partition("?")
    params = parse_qs(query)
    tampered = f"{path}?code={params['code'][0]}&state={params['state'][0]}x"
    assert browser.portal.get(tampered).status_code == 400
    assert "_auth_user_id" not in browser.portal.session
    # The genuine callback still works once, and a replay of it is refused.
    assert browser.portal.get(callback).status_code == 302
    assert browser.portal.get(callback).status_code == 400
    assert PortalEvent.objects.filter(kind=PortalEvent.Kind.SIGN_IN).count() == 1


def _tamper_pending(browser: Browser, field: str, value: str) -> None:
    session = browser.portal.session
    pending = session[SESSION_KEY]
    for item in pending.values():
        item[field] = value
    session[SESSION_KEY] = pending
    session.save()


def test_a_wrong_pkce_verifier_fails_the_code_exchange(
    browser: Browser, personas: Personas
) -> None:
    callback = browser.authorize(browser.start_sign_in(login_hint=personas.agent.upn))
    _tamper_pending(browser, "code_verifier", "x" * 64)
    response = browser.portal.get(callback)
    assert response.status_code == 401
    assert "_auth_user_id" not in browser.portal.session


def test_an_id_token_with_another_nonce_is_refused(browser: Browser, personas: Personas) -> None:
    callback = browser.authorize(browser.start_sign_in(login_hint=personas.agent.upn))
    _tamper_pending(browser, "nonce", "not-the-nonce-we-sent")
    response = browser.portal.get(callback)
    assert response.status_code == 401
    assert "_auth_user_id" not in browser.portal.session
    assert not PortalEvent.objects.exists()


@pytest.mark.parametrize(
    "next_path",
    ["https://evil.example/phish", "//evil.example/phish", "/\\evil.example", "http://testserver/"],
)
def test_next_cannot_send_the_person_to_another_site(
    browser: Browser, personas: Personas, next_path: str
) -> None:
    response = browser.sign_in(personas.agent.upn, next_path=next_path)
    assert response.status_code == 302
    assert response["Location"] == "/"


def test_next_to_a_portal_page_is_honoured(browser: Browser, personas: Personas) -> None:
    response = browser.sign_in(personas.agent.upn, next_path="/signed-out/?from=test")
    assert response.status_code == 302
    assert response["Location"] == "/signed-out/?from=test"


def test_sign_out_ends_the_portal_and_the_entra_session(
    browser: Browser, personas: Personas
) -> None:
    browser.sign_in(personas.agent.upn)
    assert browser.portal.get("/").status_code == 200
    assert browser.idp.cookies, "the emulator keeps a sign-in session cookie"

    response = browser.portal.post("/oauth2/logout")
    assert response.status_code == 302
    end_session = urlsplit(response["Location"])
    assert f"{end_session.scheme}://{end_session.netloc}" == f"https://{settings.ENTRA_LOGIN_HOST}"
    assert end_session.path == f"/{settings.ENTRA_TENANT_ID}/oauth2/v2.0/logout"
    assert parse_qs(end_session.query)["post_logout_redirect_uri"] == [
        f"http://{PORTAL_HOST}/signed-out/"
    ]
    # The portal session is gone.
    assert "_auth_user_id" not in browser.portal.session
    assert browser.portal.get("/").status_code == 302
    event = PortalEvent.objects.get(kind=PortalEvent.Kind.SIGN_OUT)
    assert event.actor_name == "Ada Agent"

    # The browser follows the redirect to Entra, which ends its session and comes back.
    back = browser.idp.get(response["Location"], allow_redirects=False, timeout=10)
    assert back.status_code in (302, 303)
    assert back.headers["Location"] == f"http://{PORTAL_HOST}/signed-out/"
    assert browser.portal.get("/signed-out/").status_code == 200
    # Without a login_hint, Entra no longer signs this browser in silently.
    again = browser.idp.get(
        browser.start_sign_in(login_hint=None), allow_redirects=False, timeout=10
    )
    assert not (again.status_code in (302, 303) and "code=" in again.headers.get("Location", ""))
