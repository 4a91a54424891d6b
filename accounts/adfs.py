"""django-auth-adfs settings that point at ``settings.ENTRA_LOGIN_HOST``.

The library derives its server from ``TENANT_ID`` (always login.microsoftonline.com) and refuses
``SERVER`` next to ``TENANT_ID``. Setting ``SERVER`` after the library's own checks lets the
same code sign in against Entra in production and against the emulator in the demo and tests.
"""

from __future__ import annotations

from django.conf import settings as django_settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django_auth_adfs.config import Settings

from accounts.signin import sign_in_refusal
from graph.client import proxy_for


def sign_in_failed_response(request: HttpRequest, error_message: str, status: int) -> HttpResponse:
    """The library's failure page, in the portal's layout (the library's own uses inline CSS).

    The library says only "Login failed."; when the backend recorded why Entra refused
    (``accounts.signin.refuse_sign_in``), that reason and its fix are shown instead.
    """
    refusal = sign_in_refusal(request)
    if refusal:
        error_message = f"Entra ID did not sign you in: {refusal}"
    return render(
        request, "accounts/sign_in_failed.html", {"error_message": error_message}, status=status
    )


class PortalAdfsSettings(Settings):  # type: ignore[misc]  # the library is untyped
    """``django_auth_adfs.config.Settings`` with ``SERVER`` taken from ``ENTRA_LOGIN_HOST``."""

    def __init__(self) -> None:
        super().__init__()
        self.SERVER = django_settings.ENTRA_LOGIN_HOST
        self.CUSTOM_FAILED_RESPONSE_VIEW = sign_in_failed_response
        self.PROXIES = sign_in_proxies()


def sign_in_proxies() -> dict[str, str]:
    """The library session's proxies: the egress proxy (``ENTRA_HTTPS_PROXY``) unless
    ``ENTRA_NO_PROXY`` lists the login host, the same rule the Graph client applies
    (graph.client.proxy_for). The library calls only the login host (discovery, keys, token)."""
    proxy = proxy_for(
        f"https://{django_settings.ENTRA_LOGIN_HOST}/",
        django_settings.ENTRA_HTTPS_PROXY,
        django_settings.ENTRA_NO_PROXY,
    )
    return {"https": proxy} if proxy else {}
