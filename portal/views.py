"""The portal's own pages: home, the favicon, and the error pages' views."""

from __future__ import annotations

from datetime import datetime
from functools import cache
from pathlib import Path

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_GET

from accounts.roles import display_name_of, portal_roles_of, role_required


def greeting_for(moment: datetime) -> str:
    """The greeting for the hour: morning 05-12, afternoon 12-18, evening otherwise."""
    if 5 <= moment.hour < 12:
        return "Good morning"
    if 12 <= moment.hour < 18:
        return "Good afternoon"
    return "Good evening"


@require_GET
@role_required()
def home(request: HttpRequest) -> HttpResponse:
    """Greets the person by name and lists their roles and the areas they can open."""
    return render(
        request,
        "home.html",
        {
            "greeting": greeting_for(timezone.localtime()),
            "person": display_name_of(request.user),
            "roles": sorted(portal_roles_of(request.user)),
        },
    )


# Browsers ask for /favicon.ico on every page whatever the <link rel="icon"> says (and the
# static one lives under /static/, served by the proxy in production).
FAVICON = Path(settings.BASE_DIR) / "static" / "favicon.ico"
FAVICON_MAX_AGE_SECONDS = 86_400


@cache
def _favicon_bytes() -> bytes:
    return FAVICON.read_bytes()


@require_GET
def favicon(request: HttpRequest) -> HttpResponse:
    """The portal's icon (a white padlock on the accent blue), cached for a day."""
    response = HttpResponse(_favicon_bytes(), content_type="image/x-icon")
    response["Cache-Control"] = f"public, max-age={FAVICON_MAX_AGE_SECONDS}"
    return response
