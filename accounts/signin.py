"""What django-auth-adfs leaves out of the sign-in: state, nonce, PKCE and a safe ``next``.

``signin_begin`` turns the library's authorization URL into one bound to this browser session:
a random ``state`` (login CSRF), a ``nonce`` (checked against the id_token by the backend) and a
PKCE S256 challenge (the backend sends the verifier with the code). ``signin_take`` consumes the
pending sign-in that a callback's ``state`` names; a state that this session did not start, or
that is older than ``PENDING_MAX_AGE_SECONDS``, yields None.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from django.conf import settings
from django.http import HttpRequest
from django.shortcuts import resolve_url
from django.utils.http import url_has_allowed_host_and_scheme

SESSION_KEY = "portal_pending_signins"
PENDING_MAX_AGE_SECONDS = 600
# Several tabs may start a sign-in at once; keep the newest few, drop the rest.
PENDING_MAX_COUNT = 5
LOGIN_HINT_MAX_LENGTH = 256
_REQUEST_ATTRIBUTE = "_portal_pending_signin"


@dataclass(frozen=True)
class PendingSignIn:
    """One sign-in that this session started and whose callback has not come back yet."""

    state: str
    nonce: str
    code_verifier: str
    next_path: str
    started_at: float


def safe_next_path(request: HttpRequest, candidate: str | None) -> str:
    """``candidate`` if it is a same-site relative path (``/users/?q=x``), else the default.

    Refuses absolute URLs, scheme-relative ``//host`` and ``/\\host`` forms, and anything with a
    scheme or host, so ``next`` can never send a person to another site after signing in.
    """
    default = resolve_url(settings.LOGIN_REDIRECT_URL)
    if not candidate or not candidate.startswith("/") or candidate.startswith(("//", "/\\")):
        return default
    if any(ord(char) < 0x20 or char == "\\" for char in candidate):
        return default
    parts = urlsplit(candidate)
    if parts.scheme or parts.netloc:
        return default
    if not url_has_allowed_host_and_scheme(
        candidate, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return default
    return candidate


def clean_login_hint(raw: str | None) -> str:
    """A login_hint worth passing to Entra (a UPN or email), or "" to send none."""
    hint = (raw or "").strip()
    if not hint or len(hint) > LOGIN_HINT_MAX_LENGTH:
        return ""
    if any(ord(char) < 0x21 for char in hint):
        return ""
    return hint


def pkce_challenge(verifier: str) -> str:
    """The S256 code challenge for ``verifier`` (RFC 7636 section 4.2)."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def _pending_map(request: HttpRequest) -> dict[str, dict[str, Any]]:
    raw = request.session.get(SESSION_KEY)
    if not isinstance(raw, dict):
        return {}
    now = time.time()
    return {
        state: item
        for state, item in raw.items()
        if isinstance(item, dict)
        and now - float(item.get("started_at", 0)) <= PENDING_MAX_AGE_SECONDS
    }


def signin_begin(
    request: HttpRequest, *, authorization_url: str, next_path: str, login_hint: str = ""
) -> str:
    """Record a pending sign-in in the session and return the authorization URL to redirect to.

    ``authorization_url`` is the one django-auth-adfs built (endpoint, client_id, redirect_uri,
    scope); its own ``state`` (the base64 ``next``) is replaced by a random one.
    """
    pending = PendingSignIn(
        state=secrets.token_urlsafe(32),
        nonce=secrets.token_urlsafe(32),
        code_verifier=secrets.token_urlsafe(64),
        next_path=next_path,
        started_at=time.time(),
    )
    pending_map = _pending_map(request)
    pending_map[pending.state] = asdict(pending)
    newest = sorted(pending_map.items(), key=lambda kv: kv[1]["started_at"])[-PENDING_MAX_COUNT:]
    request.session[SESSION_KEY] = dict(newest)

    parts = urlsplit(authorization_url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "state"]
    query += [
        ("state", pending.state),
        ("nonce", pending.nonce),
        ("code_challenge", pkce_challenge(pending.code_verifier)),
        ("code_challenge_method", "S256"),
        ("response_mode", "query"),
    ]
    if login_hint:
        query.append(("login_hint", login_hint))
    return urlunsplit(parts._replace(query=urlencode(query)))


def signin_take(request: HttpRequest, state: str | None) -> PendingSignIn | None:
    """Remove and return the pending sign-in named by ``state``; None if this session has none.

    A state is usable once: a replayed callback finds nothing.
    """
    pending_map = _pending_map(request)
    item = pending_map.pop(state, None) if state else None
    request.session[SESSION_KEY] = pending_map
    if item is None:
        return None
    try:
        return PendingSignIn(**item)
    except TypeError:
        return None


def attach_pending(request: HttpRequest, pending: PendingSignIn) -> None:
    """Hand the verified pending sign-in to the authentication backend for this request."""
    setattr(request, _REQUEST_ATTRIBUTE, pending)


def pending_of(request: HttpRequest | None) -> PendingSignIn | None:
    """The pending sign-in the callback verified for this request, if any."""
    found = getattr(request, _REQUEST_ATTRIBUTE, None)
    return found if isinstance(found, PendingSignIn) else None
