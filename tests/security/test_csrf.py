"""CSRF: every state-changing request to every URL of the URLconf needs the token.

For each URL (read from the URLconf, see portal_routes.py) a client with Django's CSRF checks
on (``Client(enforce_csrf_checks=True)``), signed in as the persona the authorization matrix
admits there, sends POST, PUT, PATCH and DELETE without a token: each is refused with Django's
CSRF 403 and nothing is written. The same POST with the token then gets the matrix's answer,
so the refusal is the token's doing and not the view's.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.conf import settings
from django.test import Client

from audit.models import PortalEvent
from bulk.models import BulkItem, BulkOperation, BulkPart
from mfa.models import ActionRequest, CallerVerification, MailboxMessage
from roles.models import RoleChangeRequest, RoleHolderSnapshot
from tests.personas import PERSONAS, portal_user
from tests.security.portal_routes import Route, RouteObjects, portal_routes
from tests.security.test_authorization_matrix import EXPECTED

pytestmark = pytest.mark.django_db

UNSAFE_METHODS = ("POST", "PUT", "PATCH", "DELETE")
WRITTEN = (
    PortalEvent,
    ActionRequest,
    CallerVerification,
    RoleChangeRequest,
    RoleHolderSnapshot,
    MailboxMessage,
    BulkOperation,
    BulkItem,
    BulkPart,
)


def _admitted_persona(route: Route) -> str:
    """The persona whose POST the matrix lets through to the view (admin first), else admin."""
    row = EXPECTED[route.route]["POST"]
    for key in ("admin", "lead", "agent", "responder"):
        if row[key] not in (403, 404, 405):
            return key
    return "admin"


def _counts() -> dict[str, int]:
    return {model.__name__: model._default_manager.count() for model in WRITTEN}


@pytest.fixture(autouse=True)
def _demo_mailbox(settings: Any) -> None:
    settings.EMAIL_BACKEND = "mfa.mailbox.MailboxBackend"


@pytest.mark.parametrize("route", portal_routes(), ids=lambda r: r.name)
def test_unsafe_requests_without_the_token_are_refused(route: Route, emulator: Any) -> None:
    objects = RouteObjects.create()
    url = objects.url_for(route)
    persona = _admitted_persona(route)
    client = Client(enforce_csrf_checks=True)
    client.force_login(portal_user(getattr(PERSONAS, persona)))
    before = _counts()
    for method in UNSAFE_METHODS:
        response = client.generic(method, url, "ticket=INC0012345&reason=x")
        assert response.status_code == 403, (method, url, response.status_code)
        assert b"CSRF verification failed" in response.content, (method, url)
    assert _counts() == before

    # With the token the same POST reaches the view: the refusal above was the token's doing.
    client.get("/")  # any page with a form sets the CSRF cookie
    token = client.cookies[settings.CSRF_COOKIE_NAME].value
    answered = client.post(url, HTTP_X_CSRFTOKEN=token)
    assert answered.status_code == EXPECTED[route.route]["POST"][persona], url
    assert b"CSRF verification failed" not in answered.content


def test_the_csrf_cookie_is_httponly_and_the_token_travels_in_forms() -> None:
    """The token travels in each form (the cookie is HttpOnly: no script reads it); htmx posts
    send the form's fields, token included."""
    assert settings.CSRF_COOKIE_HTTPONLY
    client = Client(enforce_csrf_checks=True)
    client.force_login(portal_user(PERSONAS.agent))
    html = client.get("/").content.decode()
    assert 'name="csrfmiddlewaretoken"' in html
