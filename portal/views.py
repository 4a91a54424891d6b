"""The portal's own pages: home, and the error pages' views."""

from __future__ import annotations

from datetime import datetime

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
