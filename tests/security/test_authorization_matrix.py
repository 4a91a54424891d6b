"""The authorization matrix: every URL of the URLconf, for every persona, GET and POST.

The URLs come from the URLconf itself (``portal_routes``), so a new URL is a new test case, and
that case fails until ``EXPECTED`` below says what each persona gets there. Path parameters are
real: the object id of a seeded person, the public ids of requests and role changes made through
the portal's services at the start of each case.

Personas: anonymous (no session), ``outsider`` (signed in, no portal role: Otto Outsider),
``agent`` (Ada), ``lead`` (Leo), ``admin`` (Ana), ``responder`` (Rita: Helpdesk.Responder only,
who starts bulk operations and acts on nobody alone). CSRF checks are off here (Django's test client
default): tests/security/test_csrf.py checks that every POST needs the token.

Reading a row: ``{"GET": {...}, "POST": {...}}`` maps each persona to the status code. An
anonymous person sent to sign in gets 302 to /oauth2/login (checked); a signed-in admitted persona
posting an empty form gets the view's own answer (a redirect with a message, a 400 form) and never
a 5xx.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from tests.personas import PERSONAS, signed_in
from tests.security.portal_routes import Route, RouteObjects, portal_routes

pytestmark = pytest.mark.django_db

PERSONA_KEYS = ("anonymous", "outsider", "agent", "lead", "admin", "responder")
METHODS = ("GET", "POST")
LOGIN = 302  # anonymous: sent to sign in (the Location is checked)


def _row(
    anonymous: int, outsider: int, agent: int, lead: int, admin: int, responder: int
) -> dict[str, int]:
    return dict(
        zip(PERSONA_KEYS, (anonymous, outsider, agent, lead, admin, responder), strict=True)
    )


def everyone(status: int) -> dict[str, int]:
    """The same answer for every persona (public pages, wrong methods)."""
    return _row(status, status, status, status, status, status)


def roles(*, agent: int, lead: int, admin: int, responder: int = 403) -> dict[str, int]:
    """A page behind ``role_required``: anonymous signs in, no role gets the 403 page. A
    Responder holds a portal role, but none of the helpdesk's: 403 unless said otherwise."""
    return _row(LOGIN, 403, agent, lead, admin, responder)


def helpdesk(status: int) -> dict[str, int]:
    """Agent, Lead and Admin (``accounts.roles.REQUESTER_ROLES``) all get ``status``."""
    return roles(agent=status, lead=status, admin=status)


def oversight(status: int) -> dict[str, int]:
    """Lead and Admin only (approvals, dashboard)."""
    return roles(agent=403, lead=status, admin=status)


def bulk_roles(status: int, *, lead: int | None = None) -> dict[str, int]:
    """Lead, Responder and Admin (``accounts.roles.BULK_ROLES``), the Lead's answer apart:
    404 on Rita's dry run, which only she and Admins see."""
    return roles(agent=403, lead=status if lead is None else lead, admin=status, responder=status)


def starters(status: int) -> dict[str, int]:
    """Responder and Admin (``accounts.roles.RESPONDER_ROLES``): who starts bulk operations."""
    return roles(agent=403, lead=403, admin=status, responder=status)


def admins(status: int) -> dict[str, int]:
    """Admin only (/roles/)."""
    return roles(agent=403, lead=403, admin=status)


NOT_ALLOWED = everyone(405)

EXPECTED: dict[str, dict[str, dict[str, int]]] = {
    # portal
    "": {"GET": roles(agent=200, lead=200, admin=200, responder=200), "POST": NOT_ALLOWED},
    "signed-out/": {"GET": everyone(200), "POST": NOT_ALLOWED},
    # the plain page after signing in without a portal role; anyone with a role goes home
    "no-role/": {"GET": _row(LOGIN, 403, 302, 302, 302, 302), "POST": NOT_ALLOWED},
    "favicon.ico": {"GET": everyone(200), "POST": NOT_ALLOWED},
    "healthz": {"GET": everyone(200), "POST": NOT_ALLOWED},
    "readyz": {"GET": everyone(200), "POST": NOT_ALLOWED},
    # sign-in: anyone may start one; a callback this session did not start is refused (400);
    # sign-out is POST only (the CSRF test checks its token).
    "oauth2/login": {"GET": everyone(302), "POST": NOT_ALLOWED},
    "oauth2/callback": {"GET": everyone(400), "POST": NOT_ALLOWED},
    "oauth2/logout": {"GET": NOT_ALLOWED, "POST": everyone(302)},
    # helpdesk (mfa)
    "users/": {"GET": helpdesk(200), "POST": NOT_ALLOWED},
    "users/<guid:oid>/": {"GET": helpdesk(200), "POST": NOT_ALLOWED},
    # The person page's panels: Graph fragments, Refresh (back to the page), the Entra events
    # from the local cache and "sync this person now" (queued, back to the page).
    "users/<guid:oid>/panels/methods/": {"GET": helpdesk(200), "POST": NOT_ALLOWED},
    "users/<guid:oid>/panels/mfa/": {"GET": helpdesk(200), "POST": NOT_ALLOWED},
    "users/<guid:oid>/panels/refresh/": {"GET": NOT_ALLOWED, "POST": helpdesk(302)},
    "users/<guid:oid>/panels/entra-events/": {"GET": helpdesk(200), "POST": NOT_ALLOWED},
    "users/<guid:oid>/panels/entra-events/sync/": {"GET": NOT_ALLOWED, "POST": helpdesk(302)},
    # Empty forms: each answers with a redirect back to the person page and a message.
    "users/<guid:oid>/verify/send/": {"GET": NOT_ALLOWED, "POST": helpdesk(302)},
    "users/<guid:oid>/verify/check/": {"GET": NOT_ALLOWED, "POST": helpdesk(302)},
    "users/<guid:oid>/verify/manual/": {"GET": NOT_ALLOWED, "POST": helpdesk(302)},
    # An empty action form is a 400 with the form's errors.
    "users/<guid:oid>/actions/<slug:kind>/": {"GET": helpdesk(200), "POST": helpdesk(400)},
    "requests/": {"GET": helpdesk(200), "POST": NOT_ALLOWED},
    # Ada's own request: she, leads and admins may open it.
    "requests/<guid:public_id>/": {"GET": helpdesk(200), "POST": NOT_ALLOWED},
    "requests/<guid:public_id>/cancel/": {"GET": NOT_ALLOWED, "POST": helpdesk(302)},
    # Only the requester ever reaches a pass: 404 for everyone else, leads and admins included.
    "requests/<guid:public_id>/tap/": {
        "GET": roles(agent=200, lead=404, admin=404),
        "POST": roles(agent=200, lead=404, admin=404),
    },
    "approvals/": {"GET": oversight(200), "POST": NOT_ALLOWED},
    # Aaron's request on Priya: an empty decision redirects back with a message.
    "approvals/<guid:public_id>/": {"GET": NOT_ALLOWED, "POST": oversight(302)},
    "approvals/rate-override/": {"GET": NOT_ALLOWED, "POST": oversight(302)},
    # The demo's mailbox: anyone holding a portal role, a Responder too.
    "mailbox/": {
        "GET": roles(agent=200, lead=200, admin=200, responder=200),
        "POST": NOT_ALLOWED,
    },
    # The escalation queue (B): every helpdesk role opens it (a non-PAA holder sees why it is
    # empty); a decision on a request that was never escalated (Ada's own pass) is 404.
    "escalations/": {"GET": helpdesk(200), "POST": NOT_ALLOWED},
    "escalations/<guid:public_id>/": {
        "GET": NOT_ALLOWED,
        "POST": roles(agent=404, lead=404, admin=404),
    },
    # directory role administration (roles)
    "roles/": {"GET": admins(200), "POST": NOT_ALLOWED},
    "roles/refresh/": {"GET": NOT_ALLOWED, "POST": admins(302)},
    "roles/add/": {"GET": admins(200), "POST": admins(200)},
    "roles/add/principals/": {"GET": admins(200), "POST": NOT_ALLOWED},
    # No holding named in the query string: 404, but only once the role check has passed.
    "roles/remove/": {"GET": admins(404), "POST": admins(404)},
    "roles/changes/<uuid:public_id>/": {"GET": admins(200), "POST": NOT_ALLOWED},
    "roles/changes/<uuid:public_id>/decide/": {"GET": NOT_ALLOWED, "POST": admins(302)},
    "roles/changes/<uuid:public_id>/cancel/": {"GET": NOT_ALLOWED, "POST": admins(302)},
    # the tenant check (preflight): the page shows the last run; a POST runs the checks
    "preflight/": {"GET": admins(200), "POST": admins(302)},
    # the Graph budget's operations view: read only
    "ops/": {"GET": admins(200), "POST": NOT_ALLOWED},
    # audit
    "audit/": {"GET": helpdesk(200), "POST": NOT_ALLOWED},
    "audit/export.<slug:fmt>": {"GET": helpdesk(200), "POST": NOT_ALLOWED},
    "audit/person/<uuid:oid>/": {"GET": helpdesk(200), "POST": NOT_ALLOWED},
    "dashboard/": {"GET": oversight(200), "POST": NOT_ALLOWED},
    # bulk operations (issue 14). The path's operation is Rita's dry run, not yet confirmed
    # (portal_routes.RouteObjects.bulk): she and Admins see it, a Lead gets 404 until she
    # confirms it.
    "bulk/": {"GET": bulk_roles(200), "POST": NOT_ALLOWED},
    # An empty start form is a 400 with the form's errors.
    "bulk/new/": {"GET": starters(200), "POST": starters(400)},
    "bulk/new/groups/": {"GET": starters(200), "POST": NOT_ALLOWED},
    "bulk/<uuid:public_id>/": {"GET": bulk_roles(200, lead=404), "POST": NOT_ALLOWED},
    # Rita confirms her own dry run (back to its page); an Admin sees it but may not confirm it.
    "bulk/<uuid:public_id>/confirm/": {
        "GET": NOT_ALLOWED,
        "POST": roles(agent=403, lead=403, admin=403, responder=302),
    },
    # Only an Admin includes staff or break-glass people; an empty form: back with a message.
    "bulk/<uuid:public_id>/people/": {"GET": NOT_ALLOWED, "POST": admins(302)},
    # A dry run is not awaiting approval, and its starter never decides it: 403.
    "bulk/<uuid:public_id>/decide/": {"GET": NOT_ALLOWED, "POST": bulk_roles(403, lead=404)},
    # Pause, resume, cancel and retry steer a confirmed operation only: 403 on a dry run.
    "bulk/<uuid:public_id>/pause/": {"GET": NOT_ALLOWED, "POST": bulk_roles(403, lead=404)},
    "bulk/<uuid:public_id>/resume/": {"GET": NOT_ALLOWED, "POST": bulk_roles(403, lead=404)},
    "bulk/<uuid:public_id>/cancel/": {"GET": NOT_ALLOWED, "POST": bulk_roles(403, lead=404)},
    "bulk/<uuid:public_id>/retry/": {"GET": NOT_ALLOWED, "POST": bulk_roles(403, lead=404)},
    "bulk/<uuid:public_id>/export.csv": {"GET": bulk_roles(200, lead=404), "POST": NOT_ALLOWED},
}

ROUTES = portal_routes()


@pytest.fixture(autouse=True)
def _demo_mailbox(settings: Any) -> None:
    """The demo's email backend, so /mailbox/ exists (pytest-django swaps in locmem)."""
    settings.EMAIL_BACKEND = "mfa.mailbox.MailboxBackend"


def _client(key: str) -> Client:
    if key == "anonymous":
        return Client()
    return signed_in(getattr(PERSONAS, key))


def _status(response: Any) -> int:
    # A streamed export is consumed so that an error while streaming fails here, not later.
    if getattr(response, "streaming", False):
        b"".join(response.streaming_content)
    return int(response.status_code)


def test_every_declared_url_exists() -> None:
    """A row for a URL that is gone is a stale promise: remove it."""
    known = {route.route for route in ROUTES}
    assert sorted(set(EXPECTED) - known) == []


def test_routes_are_read_from_the_urlconf() -> None:
    """The walk reaches into every include (a broken walk would make the matrix vacuous)."""
    names = {route.name for route in ROUTES}
    assert {"home", "django_auth_adfs:callback", "mfa:approval_decide"} <= names
    assert {"roles:role_change_decide", "audit:export", "readyz"} <= names
    assert len(ROUTES) >= 30


@pytest.mark.parametrize("route", ROUTES, ids=lambda r: r.name)
@pytest.mark.parametrize("persona", PERSONA_KEYS)
def test_authorization_matrix(route: Route, persona: str, emulator: Any) -> None:
    expected = EXPECTED.get(route.route)
    assert expected is not None, (
        f"{route.route} ({route.name}) has no row in EXPECTED: declare what each persona gets"
    )
    # The rows a path parameter points at cost Graph reads: made only for routes that need them.
    url = RouteObjects.create().url_for(route) if route.params else reverse(route.name)
    got: dict[str, int] = {}
    for method in METHODS:
        client = _client(persona)
        response = client.generic(method, url)
        got[method] = _status(response)
        row = expected[method]
        if persona == "anonymous" and row["anonymous"] == LOGIN and row["outsider"] == 403:
            # Behind role_required: the redirect goes to sign-in and comes back here.
            assert response["Location"].startswith("/oauth2/login?next="), (method, response)
    want = {method: expected[method][persona] for method in METHODS}
    assert got == want, f"{persona} on {url}"
