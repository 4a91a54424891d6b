"""Rate-limit overrides: a lead lets one agent go past the action rate limit for a short while.

``mfa.policy.check_rate`` refuses an agent at the limit unless a Lead or Admin is named as
``override_by``. A lead grants that here; the grant lives in the shared Django cache (Redis) for
``OVERRIDE_MINUTES`` so every web process sees it, and the grant itself is a ``rate_override``
portal event (``mfa.services.action_request_create`` records each request that used it).
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.db import transaction
from django.http import HttpRequest

from accounts.roles import APPROVER_ROLES, display_name_of, has_role
from audit.models import PortalEvent
from audit.services import portal_event_record
from mfa.policy import NotAllowed

OVERRIDE_MINUTES = 15


def _key(agent_pk: int) -> str:
    return f"mfa:rate-override:{agent_pk}"


def rate_override_grant(
    *, lead: Any, agent: Any, comment: str, http_request: HttpRequest | None = None
) -> None:
    """Let ``agent`` exceed the rate limit for OVERRIDE_MINUTES, on ``lead``'s authority.

    Raises NotAllowed unless ``lead`` is a Lead or Admin other than ``agent``. Records a
    ``rate_override`` event with the comment.
    """
    if not has_role(lead, *APPROVER_ROLES):
        raise NotAllowed("Only a Lead or an Admin can override the rate limit.")
    if lead.pk == agent.pk:
        raise NotAllowed("You cannot override your own rate limit.")
    with transaction.atomic():
        portal_event_record(
            kind=PortalEvent.Kind.RATE_OVERRIDE,
            actor=lead,
            request=http_request,
            detail={
                "stage": "granted",
                "agent_id": agent.pk,
                "agent": display_name_of(agent),
                "minutes": OVERRIDE_MINUTES,
                "comment": comment,
            },
        )
        transaction.on_commit(
            lambda: cache.set(_key(agent.pk), lead.pk, timeout=OVERRIDE_MINUTES * 60)
        )


def rate_override_for(agent: Any) -> Any:
    """The Lead or Admin whose override currently covers ``agent``, or None."""
    lead_pk = cache.get(_key(agent.pk))
    if lead_pk is None:
        return None
    lead = get_user_model().objects.filter(pk=lead_pk).first()
    if lead is None or not has_role(lead, *APPROVER_ROLES):
        return None
    return lead
