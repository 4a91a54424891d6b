"""``{% waiting_items as items %}``: what waits for the signed-in person (mfa.waiting), for the
home page, which lists it without its view (portal.views.home) knowing the helpdesk's rules."""

from __future__ import annotations

from typing import Any

from django import template

from mfa.waiting import WaitingItem, waiting_for

register = template.Library()


@register.simple_tag(takes_context=True)
def waiting_items(context: dict[str, Any]) -> list[WaitingItem]:
    """The approvals, role grants and escalations waiting for the request's user, the one
    expiring first first; empty for an anonymous request."""
    request = context.get("request")
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return []
    return waiting_for(user).items()
