"""Signals of the audit sync, for the apps above audit (mfa) to listen to.

audit never imports mfa: an app that keeps answers about people's security info (mfa's person
cache) connects a receiver to :data:`security_events_seen`.
"""

from __future__ import annotations

from collections.abc import Iterable

from django.db import transaction
from django.dispatch import Signal

from audit import activities
from audit.correlation import modified_property_names
from audit.models import DirectoryAuditRecord

# Sent (sender: ``DirectoryAuditRecord``) after the audit sync (the tenant-wide run or one
# person's on-demand sync) committed events it had not stored before that changed someone's
# security info, methods or per-user MFA state, and that no portal request explains (the
# portal's own writes tell the cache themselves, mfa.runners). Arguments:
#   principal_ids: tuple[str, ...]   the people those events are about (object ids, lower case)
#   activities: tuple[str, ...]      every activity name among them
#   changes: dict[str, tuple[str, ...]]   person id -> the activity names about them
security_events_seen = Signal()

# Activities that change what mfa's person cache holds: methods registered, updated or deleted
# (Authentication Methods and Device Registration services), the default method, and the
# per-user MFA state (its own rows, and "Update user" when it modified the MFA requirement).
SECURITY_ACTIVITIES: frozenset[str] = frozenset(
    {
        *activities.AUTHENTICATION_METHODS_ACTIVITIES,
        *activities.DEVICE_REGISTRATION_ACTIVITIES,
        *activities.PER_USER_MFA_ACTIVITIES,
    }
)


def changes_security(record: DirectoryAuditRecord) -> bool:
    """Whether the event changed a person's methods, default method or per-user MFA state."""
    if record.activity in SECURITY_ACTIVITIES:
        return True
    return record.activity == activities.USER_UPDATED and (
        activities.MFA_REQUIREMENT_PROPERTY in modified_property_names(record.raw)
    )


def security_changes(records: Iterable[DirectoryAuditRecord]) -> dict[str, tuple[str, ...]]:
    """Person id (lower case) -> activity names of ``records`` that changed their security info
    and are not linked to a portal request (correlated first: ``action_request_id`` set)."""
    found: dict[str, set[str]] = {}
    for record in records:
        if not record.target_id or record.action_request_id is not None:
            continue
        if changes_security(record):
            found.setdefault(record.target_id.lower(), set()).add(record.activity)
    return {person: tuple(sorted(names)) for person, names in found.items()}


def send_security_events_seen_on_commit(records: Iterable[DirectoryAuditRecord]) -> None:
    """Send :data:`security_events_seen` for ``records`` (newly stored, correlated) once the
    transaction that stores them commits; nothing when none changed anyone's security info."""
    changes = security_changes(records)
    if not changes:
        return

    def send() -> None:
        names = sorted({name for found in changes.values() for name in found})
        security_events_seen.send(
            sender=DirectoryAuditRecord,
            principal_ids=tuple(changes),
            activities=tuple(names),
            changes=changes,
        )

    transaction.on_commit(send)
