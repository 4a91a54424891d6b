"""mfa's receivers of other apps' signals, connected in ``MfaConfig.ready()`` (which imports this
module: the audit sync's receiver connects itself below, at import)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.db.models.signals import post_save

from accounts.navigation import counter_register
from audit.models import PortalEvent
from audit.signals import security_events_seen
from mfa import person_cache, waiting
from mfa.models import ActionRequest
from mfa.policy import target_profile_forget
from outbox.states import Status
from roles.models import RoleChangeRequest


def forget_profiles_after_role_change(
    sender: Any, *, principal_ids: Iterable[str] = (), **kwargs: Any
) -> None:
    """``roles.signals.directory_roles_changed``: drop the cached profile of every person whose
    directory roles changed, so their person page and the tier of the next request read Graph
    again."""
    for principal_id in principal_ids:
        target_profile_forget(principal_id)


def forget_security_after_audit_events(
    sender: Any, *, principal_ids: Iterable[str] = (), **kwargs: Any
) -> None:
    """``audit.signals.security_events_seen``: the audit sync saw a security-info, method or
    per-user MFA event about these people that the portal did not make: their methods, default
    and MFA state are read from Graph again on their next person page."""
    for principal_id in principal_ids:
        person_cache.forget(principal_id)


security_events_seen.connect(
    forget_security_after_audit_events, dispatch_uid="mfa.forget_security_after_audit_events"
)


# --- what starts waiting for someone: tell them (mfa.notifications.notify_waiting) -------------

# Events after which a request waits for an approval again (the execution-time check sent it
# back): the row changed through an UPDATE, which sends no post_save of its own.
_RETURNED_TO_APPROVAL = ("action_returned_to_approval", "role_change_returned_to_approval")


def notify_when_created_waiting(
    sender: Any, *, instance: ActionRequest | RoleChangeRequest, created: bool, **kwargs: Any
) -> None:
    """post_save of a request: one recorded waiting for an approval, or escalated, tells the
    people who can act on it (on commit; a second report of the same entry is absorbed)."""
    if created and instance.status in (Status.AWAITING_APPROVAL, Status.ESCALATED):
        from mfa.notifications import notify_waiting

        notify_waiting(instance)


def notify_when_returned_to_approval(
    sender: Any, *, instance: PortalEvent, created: bool, **kwargs: Any
) -> None:
    """post_save of a PortalEvent: a request sent back to approval tells its approvers again."""
    if not created or instance.kind not in _RETURNED_TO_APPROVAL:
        return
    from mfa.notifications import notify_waiting

    row: ActionRequest | RoleChangeRequest | None
    if instance.kind == "action_returned_to_approval":
        row = (
            ActionRequest.objects.filter(pk=instance.request).first()
            if instance.request is not None
            else None
        )
    else:
        public_id = (instance.detail or {}).get("role_change") or (instance.detail or {}).get(
            "public_id"
        )
        row = RoleChangeRequest.objects.filter(public_id=public_id).first() if public_id else None
    if row is not None and row.status == Status.AWAITING_APPROVAL:
        notify_waiting(row)


post_save.connect(
    notify_when_created_waiting, sender=ActionRequest, dispatch_uid="mfa.notify_waiting_action"
)
post_save.connect(
    notify_when_created_waiting,
    sender=RoleChangeRequest,
    dispatch_uid="mfa.notify_waiting_role_change",
)
post_save.connect(
    notify_when_returned_to_approval,
    sender=PortalEvent,
    dispatch_uid="mfa.notify_waiting_returned",
)

# The header's counts of what waits for the signed-in person (accounts.navigation).
counter_register("mfa.waiting", waiting.nav_counts)
