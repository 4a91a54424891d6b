"""The sign-in rules that need no identity provider: safe ``next``, login_hint, PKCE, state."""

from __future__ import annotations

import base64
import hashlib
from urllib.parse import parse_qs, urlsplit

import pytest
from django.test import Client, RequestFactory

from accounts.signin import (
    PENDING_MAX_COUNT,
    SESSION_KEY,
    clean_login_hint,
    pkce_challenge,
    safe_next_path,
    signin_begin,
    signin_take,
)

AUTHORIZE = (
    "https://login.example.test/tenant/oauth2/v2.0/authorize?response_type=code&client_id=c"
    "&redirect_uri=http%3A%2F%2F127.0.0.1%3A8000%2Foauth2%2Fcallback&state=L3NlY3JldA%3D%3D"
    "&scope=openid+profile"
)


@pytest.mark.parametrize(
    "candidate",
    [
        "https://evil.example/",
        "http://127.0.0.1:8000/",  # absolute, even to ourselves: only relative paths are kept
        "//evil.example/path",
        "/\\evil.example",
        "\\\\evil.example",
        "/\r\nLocation: https://evil.example/",
        "/\tevil",
        "javascript:alert(1)",
        "evil.example",
        "",
        None,
    ],
)
def test_next_refuses_anything_but_a_same_site_path(rf: RequestFactory, candidate: str) -> None:
    request = rf.get("/oauth2/login", HTTP_HOST="127.0.0.1:8000")
    assert safe_next_path(request, candidate) == "/"


def test_next_keeps_relative_paths_with_query(rf: RequestFactory) -> None:
    request = rf.get("/oauth2/login", HTTP_HOST="127.0.0.1:8000")
    assert safe_next_path(request, "/users/?q=ann%20lee&page=2") == "/users/?q=ann%20lee&page=2"


def test_login_hint_is_passed_only_when_sane() -> None:
    assert clean_login_hint(" ada.agent@contoso-demo.onmicrosoft.com ") == (
        "ada.agent@contoso-demo.onmicrosoft.com"
    )
    assert clean_login_hint("a b@c") == ""
    assert clean_login_hint("x" * 300) == ""
    assert clean_login_hint(None) == ""


def test_pkce_challenge_is_s256_base64url_without_padding() -> None:
    verifier = "dBjftJeZ4CVP-mJ92K9bJpOxhJd5Ry1SzJ1fJsE8S4c"
    challenge = pkce_challenge(verifier)
    assert len(challenge) == 43 and "=" not in challenge
    padded = challenge + "="
    assert base64.urlsafe_b64decode(padded) == hashlib.sha256(verifier.encode()).digest()


@pytest.mark.django_db
def test_state_is_random_bound_to_the_session_and_single_use(rf: RequestFactory) -> None:
    from django.contrib.sessions.backends.db import SessionStore

    request = rf.get("/oauth2/login")
    request.session = SessionStore()
    first = parse_qs(
        urlsplit(signin_begin(request, authorization_url=AUTHORIZE, next_path="/x")).query
    )
    second = parse_qs(
        urlsplit(signin_begin(request, authorization_url=AUTHORIZE, next_path="/y")).query
    )
    # The library's base64 "next" state is replaced, never sent alongside.
    assert len(first["state"]) == 1 and first["state"] != ["L3NlY3JldA=="]
    assert first["state"] != second["state"] and first["nonce"] != second["nonce"]
    assert first["code_challenge_method"] == ["S256"]
    assert first["scope"] == ["openid profile"] and first["client_id"] == ["c"]

    taken = signin_take(request, first["state"][0])
    assert taken is not None and taken.next_path == "/x"
    assert pkce_challenge(taken.code_verifier) == first["code_challenge"][0]
    assert taken.nonce == first["nonce"][0]
    assert signin_take(request, first["state"][0]) is None  # used once
    assert signin_take(request, "forged") is None
    assert signin_take(request, None) is None
    other = rf.get("/")
    other.session = SessionStore()
    assert signin_take(other, second["state"][0]) is None  # another browser's state


@pytest.mark.django_db
def test_only_the_newest_pending_sign_ins_are_kept(rf: RequestFactory) -> None:
    from django.contrib.sessions.backends.db import SessionStore

    request = rf.get("/oauth2/login")
    request.session = SessionStore()
    states = [
        parse_qs(urlsplit(signin_begin(request, authorization_url=AUTHORIZE, next_path="/")).query)[
            "state"
        ][0]
        for _ in range(PENDING_MAX_COUNT + 2)
    ]
    assert len(request.session[SESSION_KEY]) == PENDING_MAX_COUNT
    assert signin_take(request, states[0]) is None
    assert signin_take(request, states[-1]) is not None


@pytest.mark.django_db
def test_callback_without_a_started_sign_in_is_refused(client: Client) -> None:
    response = client.get("/oauth2/callback", {"code": "stolen-code", "state": "forged"})
    assert response.status_code == 400
    assert "could not be verified" in response.content.decode()
    assert "_auth_user_id" not in client.session


# Entra's error text is shown only for a sign-in this browser started (issue 10, point 12):
# tests/accounts/test_accounts_session_recheck.py.


def test_sign_out_is_post_only(client: Client) -> None:
    assert client.get("/oauth2/logout").status_code == 405


def test_sign_out_needs_the_csrf_token() -> None:
    assert Client(enforce_csrf_checks=True).post("/oauth2/logout").status_code == 403
