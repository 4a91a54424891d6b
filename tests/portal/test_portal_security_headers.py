"""Security headers and cookie flags on real responses, and pages free of inline code (CSP)."""

from __future__ import annotations

import re

import pytest
from django.conf import settings
from django.test import Client

from portal.security import SecurityHeadersMiddleware, content_security_policy
from tests.personas import AGENT, portal_user


def directives(header: str) -> dict[str, str]:
    return {
        name: value.strip()
        for name, _, value in (part.strip().partition(" ") for part in header.split(";"))
    }


def assert_strict_headers(response: object) -> None:
    csp = directives(response["Content-Security-Policy"])  # type: ignore[index]
    assert csp["default-src"] == "'self'"
    assert csp["script-src"] == "'self'"
    assert csp["style-src"] == "'self'"
    assert csp["img-src"] == "'self' data:"
    assert csp["frame-ancestors"] == "'none'"
    assert csp["form-action"] == f"'self' https://{settings.ENTRA_LOGIN_HOST}"
    assert csp["base-uri"] == "'none'"
    assert csp["object-src"] == "'none'"
    header = response["Content-Security-Policy"]  # type: ignore[index]
    assert "unsafe-inline" not in header and "unsafe-eval" not in header
    assert "camera=()" in response["Permissions-Policy"]  # type: ignore[index]
    assert response["X-Frame-Options"] == "DENY"  # type: ignore[index]
    assert response["X-Content-Type-Options"] == "nosniff"  # type: ignore[index]
    assert response["Referrer-Policy"] == "same-origin"  # type: ignore[index]


def test_headers_on_anonymous_responses(client: Client) -> None:
    for path in ("/healthz", "/", "/signed-out/"):
        assert_strict_headers(client.get(path))


@pytest.mark.django_db
def test_headers_and_no_inline_code_on_the_home_page(client: Client) -> None:
    client.force_login(portal_user(AGENT))
    response = client.get("/")
    assert response.status_code == 200
    assert_strict_headers(response)
    html = response.content.decode()
    # Every script is a same-origin file; no inline script, style element or style attribute.
    scripts = re.findall(r"<script\b[^>]*>", html)
    assert scripts and all('src="/static/' in tag for tag in scripts)
    assert "<style" not in html and " style=" not in html and " on" + "click=" not in html
    assert 'href="/static/css/portal.css"' in html
    # The sign-out button posts with a CSRF token.
    assert 'action="/oauth2/logout"' in html and "csrfmiddlewaretoken" in html


def test_session_and_csrf_cookies_are_httponly_and_samesite() -> None:
    assert settings.SESSION_COOKIE_HTTPONLY and settings.CSRF_COOKIE_HTTPONLY
    assert settings.SESSION_COOKIE_SAMESITE == "Lax"
    # Secure everywhere but the plain-http demo.
    assert settings.SESSION_COOKIE_SECURE == (not settings.DEMO)


def test_policy_names_the_configured_login_host() -> None:
    csp = directives(content_security_policy("login.microsoftonline.com"))
    assert csp["form-action"] == "'self' https://login.microsoftonline.com"


def test_a_view_may_set_its_own_policy() -> None:
    from django.http import HttpResponse

    def view(request: object) -> HttpResponse:
        response = HttpResponse("x")
        response["Content-Security-Policy"] = "default-src 'none'"
        return response

    middleware = SecurityHeadersMiddleware(view)
    response = middleware(object())  # type: ignore[arg-type]
    assert response["Content-Security-Policy"] == "default-src 'none'"
    assert "Permissions-Policy" in response
