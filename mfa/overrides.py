"""Rate-limit overrides: a lead lets one agent make a few more requests past the rate limit.

``mfa.policy.check_rate`` refuses an agent at the limit unless an override grant of theirs still
has requests left. A grant (``mfa.models.RateOverride``) allows ``PORTAL_RATE_OVERRIDE_REQUESTS``
more requests within the current rate window, not a stretch of unlimited time: each request made
at the limit takes one (``rate_override_take``, under the agent's lock, in the transaction that
records the request) and names the grant's lead in ``ActionRequest.rate_override_by`` with a
``rate_override`` event. The grant itself is a ``rate_override`` event too.

Who may grant (``rate_override_refusal``): a Lead or an Admin for an agent; only an Admin for a
Lead or an Admin (Leads do not override each other, and an Admin's override needs another
Admin); nobody for themself. The rule is checked again when a grant is used.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import F, Sum
from django.http import HttpRequest
from django.utils import timezone

from accounts.roles import ADMIN_ROLES, APPROVER_ROLES, display_name_of, has_role
from audit.models import PortalEvent
from audit.services import portal_event_record
from mfa.models import RateOverride
from outbox.errors import NotAllowed


def rate_override_refusal(lead: Any, agent: Any) -> str:
    """Why ``lead`` may not let ``agent`` past the rate limit ("" when they may)."""
    if not has_role(lead, *APPROVER_ROLES):
        return "Only a Lead or an Admin can override the rate limit."
    if lead.pk == agent.pk:
        return "You cannot override your own rate limit."
    if has_role(agent, *APPROVER_ROLES) and not has_role(lead, *ADMIN_ROLES):
        return "Only an Admin can override the rate limit of a Lead or an Admin."
    return ""


def rate_override_grant(
    *, lead: Any, agent: Any, comment: str, http_request: HttpRequest | None = None
) -> RateOverride:
    """Let ``agent`` make PORTAL_RATE_OVERRIDE_REQUESTS more requests past the rate limit, within
    the current rate window, on ``lead``'s authority.

    Raises NotAllowed when ``rate_override_refusal`` refuses. Records the grant and a
    ``rate_override`` event (stage ``granted``) with the number of requests and the comment.
    """
    refusal = rate_override_refusal(lead, agent)
    if refusal:
        raise NotAllowed(refusal)
    now = timezone.now()
    requests = int(settings.PORTAL_RATE_OVERRIDE_REQUESTS)
    with transaction.atomic():
        grant = RateOverride.objects.create(
            agent=agent,
            granted_by=lead,
            granted=requests,
            comment=comment,
            created_at=now,
            expires_at=now + timedelta(minutes=settings.PORTAL_AGENT_RATE_WINDOW_MINUTES),
        )
        portal_event_record(
            kind=PortalEvent.Kind.RATE_OVERRIDE,
            actor=lead,
            request=http_request,
            detail={
                "stage": "granted",
                "agent_id": agent.pk,
                "agent": display_name_of(agent),
                "override": grant.pk,
                "requests": requests,
                "expires_at": grant.expires_at.isoformat(),
                "comment": comment,
            },
        )
    return grant


def rate_override_take(agent: Any, *, now: datetime | None = None) -> RateOverride | None:
    """Take one request from ``agent``'s oldest live grant that has one left; None when none has.

    Call it only inside the transaction that records the request, holding the agent's lock
    (``mfa.services.action_request_create``): the count goes back with a rolled-back request,
    and two submissions never take the same last request. A grant whose lead may no longer
    grant it (a role removed) is passed over.
    """
    now = now or timezone.now()
    live = (
        RateOverride.objects.select_for_update()
        .select_related("granted_by")
        .filter(agent=agent, expires_at__gt=now, used__lt=F("granted"))
        .order_by("created_at", "id")
    )
    for grant in live:
        if rate_override_refusal(grant.granted_by, agent):
            continue
        taken = RateOverride.objects.filter(pk=grant.pk, used__lt=F("granted")).update(
            used=F("used") + 1
        )
        if taken:
            grant.refresh_from_db(fields=["used"])
            return grant
    return None


def rate_override_remaining(agent: Any, *, now: datetime | None = None) -> int:
    """How many extra requests ``agent``'s live grants still allow (for display)."""
    now = now or timezone.now()
    totals = RateOverride.objects.filter(agent=agent, expires_at__gt=now).aggregate(
        granted=Sum("granted"), used=Sum("used")
    )
    return max(0, int(totals["granted"] or 0) - int(totals["used"] or 0))
