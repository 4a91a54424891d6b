"""Escalation instead of a dead end (issue 13): one more state of the durable-request engine.

Under ``PORTAL_MIRROR_ENTRA_TIERING`` only people who hold Privileged Authentication
Administrator (PAA) in the tenant act on privileged people, as in Entra. An agent without PAA
facing a privileged person can still do the first half of the work: verify the caller, write
the reason and ticket, and submit. ``mfa.services.action_request_create`` then records the
request ``escalated`` (not ``awaiting_approval``), naming who can take it (:func:`takers`).

A **taker** is a portal user with a helpdesk role (Agent, Lead or Admin) who holds PAA actively
in the tenant now, and is neither the requester nor the person acted on. They find it in the
queue (:func:`waiting_for`, the page ``mfa:escalations``) with the recorded verification, and
take it on (:func:`escalation_take`: it goes on to the usual approval and run, with the taker as
the agent the tiering checks read) or refuse it (:func:`escalation_refuse`: ``rejected``, with
their reason). Both are ``outbox.decisions.take``: the same engine, one more transition. An
escalation nobody takes expires after ``PORTAL_APPROVAL_TTL_MINUTES``, like an approval.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db.models import QuerySet
from django.http import HttpRequest

from accounts.roles import REQUESTER_ROLES, display_name_of, has_role
from graph.errors import GraphError
from mfa.models import ActionRequest, Status
from outbox.errors import NotAllowed
from roles.catalog import PAA
from roles.tiering import agent_holds_paa, oid_of

logger = logging.getLogger(__name__)

# The PortalEvent kinds of the escalation's transitions (audit.models.PortalEvent.Kind).
EVENT_ESCALATED = "action_escalated"
EVENT_TAKEN = "action_escalation_taken"
EVENT_REFUSED = "action_escalation_refused"

_TAKERS_CACHE_KEY = "mfa:escalation-takers:v1"
# Who holds PAA and a portal role changes rarely; the tiering checks read it afresh anyway.
_TAKERS_CACHE_SECONDS = 300


@dataclass(frozen=True)
class Taker:
    """Someone who may take escalations: holds PAA actively and a helpdesk role in the portal."""

    oid: str
    name: str
    upn: str


def takers(*, use_cache: bool = True) -> tuple[Taker, ...] | None:
    """Everyone who may take an escalation now, by name; None when Graph could not say (the
    portal then names the role instead of people). Read from Graph (the holders of PAA, active
    directly or through a role-assignable group, and the portal app's role assignments) and
    kept in the shared cache for five minutes."""
    if use_cache:
        cached = cache.get(_TAKERS_CACHE_KEY)
        if isinstance(cached, tuple):
            return cached
    from portal.graph_client import get_graph_client
    from roles.holders import read_portal_roles, read_role

    client = get_graph_client()
    try:
        holdings = read_role(client, PAA)
        portal_roles = read_portal_roles(client)
    except GraphError as exc:
        logger.warning("could not read who may take escalations: %s", exc.code)
        return None
    found: dict[str, Taker] = {}
    for holding in holdings:
        if holding.how != "active":
            continue
        for person in holding.people():
            roles = set(portal_roles.get(person.id.lower(), ()))
            if roles & set(REQUESTER_ROLES):
                found[person.id.lower()] = Taker(
                    oid=person.id.lower(), name=person.display_name or person.upn, upn=person.upn
                )
    result = tuple(sorted(found.values(), key=lambda t: t.name.lower()))
    cache.set(_TAKERS_CACHE_KEY, result, timeout=_TAKERS_CACHE_SECONDS)
    return result


def takers_forget() -> None:
    """Forget the cached takers (after a change of who holds PAA or a portal role)."""
    cache.delete(_TAKERS_CACHE_KEY)


def takers_for(*, requester_oid: str, target_id: str) -> tuple[Taker, ...] | None:
    """:func:`takers` other than the requester and the person acted on (None: unknown)."""
    every = takers()
    if every is None:
        return None
    skip = {requester_oid.lower(), target_id.lower()}
    return tuple(t for t in every if t.oid not in skip)


def names_text(names: list[str]) -> str:
    """``["A"]`` -> "A"; ``["A", "B", "C"]`` -> "A, B or C"."""
    if len(names) <= 1:
        return "".join(names)
    return f"{', '.join(names[:-1])} or {names[-1]}"


def needs_escalation(agent: Any, *, privileged: bool) -> bool:
    """Whether a request by ``agent`` on a person of this tier must be escalated: the person is
    privileged, tiering mirrors Entra's, ``agent`` holds a helpdesk role but not PAA now."""
    return (
        privileged
        and bool(settings.PORTAL_MIRROR_ENTRA_TIERING)
        and has_role(agent, *REQUESTER_ROLES)
        and not agent_holds_paa(agent)
    )


def escalation_refusal(agent: Any, *, target_id: str) -> str | None:
    """Why ``agent`` may not even escalate (nobody could take it), or None when they may."""
    found = takers_for(requester_oid=oid_of(agent), target_id=target_id)
    if found is None or found:
        return None
    return (
        "This person is privileged. Like Entra itself, the portal lets only people who hold "
        f"{PAA} in the tenant act on privileged people, and you do not hold it. Nobody else "
        "with a helpdesk role holds it now (the person acted on aside), so nobody could take an "
        "escalation: ask an administrator of the tenant."
    )


def escalated_to(agent: Any, *, target_id: str) -> list[str]:
    """The names an escalation by ``agent`` about ``target_id`` is raised to: the takers, or
    the role when Graph could not say."""
    found = takers_for(requester_oid=oid_of(agent), target_id=target_id)
    if not found:
        return [f"a holder of {PAA}"]
    return [t.name for t in found]


def escalation_notice(agent: Any, profile: Any) -> str:
    """The sentence the person page and the action form show an agent whose request on this
    person will be escalated; "" when it will not be."""
    if not needs_escalation(agent, privileged=bool(profile.privileged)):
        return ""
    names = escalated_to(agent, target_id=profile.user.id)
    return (
        f"Escalate to {names_text(names)}: {profile.user.display_name} is privileged and, as in "
        f"Entra, only holders of {PAA} act on privileged people. Verify the caller, write the "
        "reason and ticket and submit: your request waits for one of them to take it on, then "
        "for a Lead's or an Admin's approval."
    )


# --- who takes --------------------------------------------------------------------------------


def may_take_escalations(user: Any) -> bool:
    """Whether ``user`` may take escalations at all: a helpdesk role and PAA held now."""
    return has_role(user, *REQUESTER_ROLES) and agent_holds_paa(user)


def check_may_take(user: Any, row: ActionRequest) -> None:
    """Raises NotAllowed unless ``user`` may take (or refuse) the escalation ``row``."""
    if not has_role(user, *REQUESTER_ROLES):
        raise NotAllowed("Only a portal Agent, Lead or Admin can take an escalation.")
    if user.pk == row.requester_id:
        raise NotAllowed("You raised this escalation: someone who holds PAA must take it.")
    if oid_of(user).lower() == row.target_id.lower():
        raise NotAllowed("This escalation is about your own account: a colleague must take it.")
    if not agent_holds_paa(user, use_cache=False):
        raise NotAllowed(
            f"Only people who hold {PAA} in the tenant now can take an escalation, and you do "
            "not hold it."
        )


def waiting_for(user: Any) -> QuerySet[ActionRequest]:
    """The escalations ``user`` may take now, oldest first (never their own, never about
    themself); none for someone who may not take escalations."""
    open_ = ActionRequest.objects.filter(status=Status.ESCALATED)
    if not getattr(user, "is_authenticated", False) or not open_.exists():
        return ActionRequest.objects.none()
    if not may_take_escalations(user):
        return ActionRequest.objects.none()
    return (
        open_.exclude(requester=user)
        .exclude(target_id__iexact=oid_of(user))
        .select_related("verification", "requester")
        .order_by("created_at", "id")
    )


# --- take and refuse -----------------------------------------------------------------------------


def escalation_take(
    *,
    action_request: ActionRequest,
    taker: Any,
    comment: str = "",
    http_request: HttpRequest | None = None,
) -> ActionRequest:
    """``taker`` takes the escalation on: it goes on to ``awaiting_approval`` (a privileged
    person always needs one) with ``taker`` as the agent the tiering checks read from now on.
    Raises NotAllowed (:func:`check_may_take`) or InvalidRequest (no longer escalated, expired,
    comment too long)."""
    from mfa.flow import ACTION_REQUESTS
    from outbox import decisions

    row = decisions.take(
        ACTION_REQUESTS,
        row=action_request,
        taker=taker,
        comment=comment,
        accept=True,
        http_request=http_request,
    )
    return row


def escalation_refuse(
    *,
    action_request: ActionRequest,
    taker: Any,
    comment: str,
    http_request: HttpRequest | None = None,
) -> ActionRequest:
    """``taker`` refuses the escalation (a reason is required): it ends ``rejected``."""
    from mfa.flow import ACTION_REQUESTS
    from outbox import decisions

    return decisions.take(
        ACTION_REQUESTS,
        row=action_request,
        taker=taker,
        comment=comment,
        accept=False,
        http_request=http_request,
    )


def take_columns(taker: Any, comment: str, now: datetime) -> dict[str, Any]:
    """The ActionRequest columns a take or a refusal writes (besides the engine's)."""
    return {
        "taken_by": taker,
        "taken_by_name": display_name_of(taker),
        "take_comment": comment,
        "taken_at": now,
    }


def on_taken(row: ActionRequest) -> None:
    """After a take (inside its transaction): tell whoever must now approve it."""
    from mfa.notifications import notify_waiting

    if row.status == Status.AWAITING_APPROVAL:
        notify_waiting(row)
