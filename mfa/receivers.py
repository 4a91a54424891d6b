"""mfa's receivers of other apps' signals, connected in ``MfaConfig.ready()`` (which imports this
module: the audit sync's receiver connects itself below, at import)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from audit.signals import security_events_seen
from mfa import person_cache
from mfa.policy import target_profile_forget


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
