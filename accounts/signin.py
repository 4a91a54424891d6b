"""What django-auth-adfs leaves out of the sign-in: state, nonce, PKCE and a safe ``next``.

``signin_begin`` turns the library's authorization URL into one bound to this browser session:
a random ``state`` (login CSRF), a ``nonce`` (checked against the id_token by the backend) and a
PKCE S256 challenge (the backend sends the verifier with the code). ``signin_take`` consumes the
pending sign-in that a callback's ``state`` names; a state that this session did not start, or
that is older than ``PENDING_MAX_AGE_SECONDS``, yields None. ``refuse_sign_in`` records why
Entra refused a sign-in; ``explain_entra_error`` adds the fix for the AADSTS codes a
misconfigured registration meets (no Application ID URI, no or a wrong credential).
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from dataclasses import asdict, dataclass
from typing import Any, NoReturn
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest
from django.shortcuts import resolve_url
from django.utils.http import url_has_allowed_host_and_scheme

SESSION_KEY = "portal_pending_signins"
PENDING_MAX_AGE_SECONDS = 600
# Several tabs may start a sign-in at once; keep the newest few, drop the rest.
PENDING_MAX_COUNT = 5
LOGIN_HINT_MAX_LENGTH = 256
_REQUEST_ATTRIBUTE = "_portal_pending_signin"
_REFUSAL_ATTRIBUTE = "_portal_signin_refusal"


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


def refuse_sign_in(request: HttpRequest | None, reason: str) -> NoReturn:
    """Record why Entra (or the portal's own credential) refused this sign-in, for the failure
    page (``sign_in_refusal``), and raise PermissionDenied, which Django's ``authenticate``
    turns into a failed sign-in."""
    if request is not None:
        setattr(request, _REFUSAL_ATTRIBUTE, reason)
    raise PermissionDenied(reason)


def sign_in_refusal(request: HttpRequest) -> str:
    """The words for a person of why this request's sign-in was refused ("" if none recorded):
    Entra's reason and, for a known AADSTS code, the fix (``explain_entra_error``)."""
    reason = getattr(request, _REFUSAL_ATTRIBUTE, "")
    return explain_entra_error(reason) if isinstance(reason, str) and reason else ""


# The fix for the AADSTS codes a portal misconfigured in Entra meets, by code. Codes and their
# meaning: https://learn.microsoft.com/entra/identity-platform/reference-error-codes
_APP = "the Microsoft Entra admin center: App registrations > the portal's app"
_FIXES: dict[str, str] = {
    # The sign-in scope api://{client}/.default names the portal's Application ID URI.
    "500011": (
        "The portal's app registration exposes no API named api://{client}. An Entra "
        "administrator fixes it in " + _APP + " > Expose an API > Application ID URI > Add "
        "(keep the default api://{client}) > Save."
    ),
    "7000218": (
        "The portal sent no credential. Set ENTRA_CLIENT_CERT_PATH (a certificate registered "
        "on the app, preferred) or ENTRA_CLIENT_SECRET."
    ),
    "7000215": (
        "The client secret is wrong. Put the secret's Value (not its Secret ID) from "
        + _APP
        + " > Certificates & secrets into ENTRA_CLIENT_SECRET."
    ),
    "7000222": (
        "The client secret has expired. Create a new one in " + _APP + " > Certificates & "
        "secrets, or switch to a certificate (ENTRA_CLIENT_CERT_PATH)."
    ),
    "700027": (
        "Entra does not accept the portal's certificate (not uploaded, or expired). Upload its "
        "public certificate in "
        + _APP
        + " > Certificates & secrets > Certificates > Upload certificate."
    ),
}


def explain_entra_error(reason: str) -> str:
    """``reason`` (Entra's "AADSTSnnnn: ..." text, cut short) followed by the fix for its code
    when the portal knows one."""
    text = reason.strip()[:300]
    code = text[6:].split(":", 1)[0] if text.startswith("AADSTS") else ""
    fix = _FIXES.get(code, "")
    client = settings.ENTRA_CLIENT_ID
    if code == "500011" and f"api://{client}".lower() not in text.lower():
        fix = ""  # another resource is missing: the Expose an API fix would mislead
    if not fix:
        return text
    return f"{text} {fix.format(client=client)}"
