"""Security headers that Django's own settings do not cover.

HSTS, X-Frame-Options, Referrer-Policy, nosniff and COOP come from Django settings
(``SECURE_*``, ``X_FRAME_OPTIONS``). This middleware adds a strict Content-Security-Policy (no
inline script or style anywhere in the portal, no third-party origin) and a Permissions-Policy
that turns off browser features the portal never uses.
"""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse

PERMISSIONS_POLICY = ", ".join(
    f"{feature}=()"
    for feature in (
        "accelerometer",
        "camera",
        "display-capture",
        "geolocation",
        "gyroscope",
        "magnetometer",
        "microphone",
        "midi",
        "payment",
        "publickey-credentials-get",
        "screen-wake-lock",
        "usb",
        "xr-spatial-tracking",
    )
)


def content_security_policy(login_host: str) -> str:
    """The portal's CSP. ``form-action`` admits the login host: the sign-out form's redirect
    continues there, and browsers apply form-action to a form's redirects."""
    directives = {
        "default-src": "'self'",
        "script-src": "'self'",
        "style-src": "'self'",
        "img-src": "'self' data:",
        "connect-src": "'self'",
        "font-src": "'self'",
        "frame-ancestors": "'none'",
        "form-action": f"'self' https://{login_host}",
        "base-uri": "'none'",
        "object-src": "'none'",
    }
    return "; ".join(f"{name} {value}" for name, value in directives.items())


class SecurityHeadersMiddleware:
    """Sets Content-Security-Policy and Permissions-Policy on every response.

    A view that needs another policy sets the header itself; this middleware leaves it alone.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        self.csp = content_security_policy(settings.ENTRA_LOGIN_HOST)

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if "Content-Security-Policy" not in response:
            response["Content-Security-Policy"] = self.csp
        if "Permissions-Policy" not in response:
            response["Permissions-Policy"] = PERMISSIONS_POLICY
        if "Cross-Origin-Resource-Policy" not in response:
            response["Cross-Origin-Resource-Policy"] = "same-origin"
        return response
