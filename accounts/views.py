"""Sign-in and sign-out: django-auth-adfs's views, wrapped with the checks the library lacks.

- ``login``: builds the library's authorization URL, then binds it to this session with a random
  ``state``, a ``nonce`` and a PKCE challenge (``accounts.signin``); ``next`` is kept only if it
  is a same-site relative path; ``login_hint`` is passed on to Entra.
- ``callback``: refuses a ``state`` this session did not start (login CSRF; Entra's error text
  is shown only for a state this session started), hands the verified
  sign-in to the backend (PKCE verifier, nonce), then runs the library's callback view, which
  authenticates and calls ``django.contrib.auth.login`` (that rotates the session key). A person
  without a portal role is signed in but is sent on to the plain ``no_role`` page (``/no-role/``),
  so a reload never replays the callback; a callback met again by a person already signed in
  (a reload, the back button) says so instead of "Sign-in failed".
- ``logout``: POST only (CSRF-protected); announces the sign-out, flushes the session and sends
  the browser to Entra's end_session_endpoint so the Entra session ends too.

Sign-in, refusal and sign-out are announced with ``accounts.signals``; audit records them.
"""

from __future__ import annotations

import base64
import logging
from urllib.parse import urlencode

from django.contrib.auth import logout as auth_logout
from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST
from django_auth_adfs.config import provider_config
from django_auth_adfs.views import OAuth2CallbackView

from accounts import signals
from accounts.roles import display_name_of, has_role, no_role_response
from accounts.signin import (
    attach_pending,
    clean_login_hint,
    explain_entra_error,
    safe_next_path,
    signin_begin,
    signin_take,
)

logger = logging.getLogger(__name__)

_library_callback = OAuth2CallbackView.as_view()


def _authorization_redirect(request: HttpRequest, *, next_path: str, login_hint: str = "") -> str:
    url = provider_config.build_authorization_endpoint(request)
    return signin_begin(request, authorization_url=url, next_path=next_path, login_hint=login_hint)


@never_cache
@require_GET
def login(request: HttpRequest) -> HttpResponse:
    """Start a sign-in: redirect to Entra's authorize endpoint (``?next=``, ``?login_hint=``)."""
    next_path = safe_next_path(request, request.GET.get("next"))
    hint = clean_login_hint(request.GET.get("login_hint"))
    return redirect(_authorization_redirect(request, next_path=next_path, login_hint=hint))


def _already_signed_in(request: HttpRequest) -> HttpResponse:
    """A callback whose state is used up (a reload, the back button) met by a person who is
    signed in: nothing is exchanged (400), and the page agrees with the header that names them."""
    logger.info("sign-in callback met again by a signed-in person: state already used")
    return render(
        request,
        "accounts/already_signed_in.html",
        {"signed_in_as": display_name_of(request.user), "has_role": has_role(request.user)},
        status=400,
    )


@never_cache
@require_GET
def callback(request: HttpRequest) -> HttpResponse:
    """Finish a sign-in that this session started; anything else is refused with 400."""
    if request.GET.get("error"):
        # Entra reports a refusal (consent, cancelled, policy) instead of a code. Its text is
        # shown only when the state names a sign-in this session started: anyone can send a
        # link to /oauth2/callback?error_description=..., and the portal's origin must not
        # speak an attacker's words.
        started = signin_take(request, request.GET.get("state"))
        if started is None and request.user.is_authenticated:
            return _already_signed_in(request)
        if started is None:
            logger.warning("sign-in error callback refused: state unknown to this session")
            message = (
                "This sign-in could not be verified: it was not started from this browser, or "
                "it took too long. Please sign in again."
            )
        else:
            message = "Entra ID did not sign you in: " + explain_entra_error(
                request.GET.get("error_description", request.GET["error"])[:300]
            )
        return render(
            request, "accounts/sign_in_failed.html", {"error_message": message}, status=400
        )
    pending = signin_take(request, request.GET.get("state"))
    if pending is None and request.user.is_authenticated:
        return _already_signed_in(request)
    if pending is None:
        logger.warning("sign-in callback refused: state unknown to this session or expired")
        return render(
            request,
            "accounts/sign_in_failed.html",
            {
                "error_message": "This sign-in could not be verified: it was not started from "
                "this browser, or it took too long. Please sign in again."
            },
            status=400,
        )
    attach_pending(request, pending)
    # The library's callback reads its redirect target from a base64 ``state``; give it the
    # ``next`` we checked when the sign-in started (the library checks it once more).
    query = request.GET.copy()
    query["state"] = base64.urlsafe_b64encode(pending.next_path.encode()).decode()
    request.GET = query  # type: ignore[assignment]  # a mutable copy, on purpose
    response: HttpResponse = _library_callback(request)

    location = response.get("Location", "")
    if response.status_code == 302 and location.startswith(
        str(provider_config.authorization_endpoint)
    ):
        # The library asks to sign in again with MFA; that round trip needs its own state too.
        return redirect(
            signin_begin(request, authorization_url=location, next_path=pending.next_path)
        )
    if not request.user.is_authenticated:
        return response
    if not has_role(request.user):
        signals.sign_in_refused.send(
            sender=type(request.user), request=request, user=request.user, reason="no portal role"
        )
        # A plain page of its own: the callback URL (one-use code and state) must not stay in the
        # address bar, where a reload would replay it and meet "Sign-in failed".
        return redirect("no_role")
    signals.signed_in.send(sender=type(request.user), request=request, user=request.user)
    return response


@never_cache
@require_GET
def no_role(request: HttpRequest) -> HttpResponse:
    """The page a signed-in person without a portal role is sent to after signing in (403).

    Anyone else has no business here: a person with a role goes home, an anonymous one signs in.
    """
    if not request.user.is_authenticated:
        return redirect_to_login(reverse("home"))
    if has_role(request.user):
        return redirect("home")
    return no_role_response(request)


@require_POST
def logout(request: HttpRequest) -> HttpResponse:
    """Sign out here and at Entra: redirect to the end_session_endpoint with a return address."""
    if request.user.is_authenticated:
        signals.signed_out.send(sender=type(request.user), request=request, user=request.user)
    auth_logout(request)  # flushes the session and rotates its key
    end_session = provider_config.build_end_session_endpoint()
    query = urlencode(
        {"post_logout_redirect_uri": request.build_absolute_uri(reverse("signed_out"))}
    )
    separator = "&" if "?" in end_session else "?"
    return HttpResponseRedirect(f"{end_session}{separator}{query}")


@never_cache
@require_GET
def signed_out(request: HttpRequest) -> HttpResponse:
    """Where Entra sends the browser back after sign-out."""
    return render(request, "accounts/signed_out.html")
