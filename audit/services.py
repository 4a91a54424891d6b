"""Writing portal events."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser, User
from django.http import HttpRequest

from audit.models import PortalEvent

USER_AGENT_MAX_LENGTH = 512


def _actor_identity(actor: AbstractBaseUser) -> tuple[str, str]:
    """(display name, Entra oid) of ``actor``, from the profile kept at sign-in."""
    profile = getattr(actor, "portal_profile", None)
    if profile is not None:
        return profile.display_name or profile.upn, profile.oid
    username = str(actor.get_username())
    return username, ""


def portal_event_record(
    *,
    kind: str,
    actor: AbstractBaseUser | AnonymousUser | None = None,
    request: HttpRequest | None = None,
    action_request_id: int | None = None,
    target_id: str = "",
    target_name: str = "",
    ticket: str = "",
    old_value: Any = None,
    new_value: Any = None,
    detail: dict[str, Any] | None = None,
) -> PortalEvent:
    """Append one event and return it.

    ``request`` is the HTTP request the event arose from (source IP and user agent are taken from
    it; None for events from tasks). ``action_request_id`` names the ActionRequest concerned.
    The actor's display name and Entra oid are copied onto the row so the log still reads after
    the person's account changes. Call it inside the same transaction as the change it records.
    Raises ValueError for a ``kind`` that is not a ``PortalEvent.Kind``.
    """
    if kind not in PortalEvent.Kind.values:
        raise ValueError(f"unknown portal event kind: {kind!r}")
    event = PortalEvent(
        kind=kind,
        request=action_request_id,
        target_id=target_id,
        target_name=target_name,
        ticket=ticket,
        old_value=old_value,
        new_value=new_value,
        detail=detail or {},
    )
    if actor is not None and actor.is_authenticated:
        assert isinstance(actor, User)
        event.actor = actor
        event.actor_name, event.actor_oid = _actor_identity(actor)
    if request is not None:
        # REMOTE_ADDR only: X-Forwarded-For is whatever the client wrote. Behind a proxy, the
        # WSGI server must be told to take the client address from the proxy.
        event.source_ip = request.META.get("REMOTE_ADDR") or None
        event.user_agent = str(request.META.get("HTTP_USER_AGENT", ""))[:USER_AGENT_MAX_LENGTH]
    event.save()
    return event
