"""Propagation delays of role management (``Tenant.propagation``), used by ``roles_api``.

PIM provisions a request asynchronously: a schedule request's ``status`` goes through values
such as ``PendingProvisioning`` before ``Provisioned`` (or ``Revoked`` for a removal), and the
schedule or assignment it makes appears only once provisioned. The status values are those of
https://learn.microsoft.com/graph/api/resources/request and
https://learn.microsoft.com/graph/api/resources/privilegedaccessschedule ("Canceled, Denied,
Failed, Granted, PendingAdminDecision, PendingApproval, PendingProvisioning,
PendingScheduleCreation, Provisioned, Revoked, ScheduleCreated"). Docs silent on how long it
takes, and on which pending value a removal shows: the emulator uses PendingProvisioning.
Directory reads are eventually consistent: "A successful write to Microsoft Entra does not
guarantee that an immediate read will reflect that change" (Microsoft's identity blog,
https://devblogs.microsoft.com/identity/designing-for-eventual-consistency-for-microsoft-entra/;
learn.microsoft.com gives no bound): a created roleAssignment shows in reads only after
``role_assignment_seconds``, a deleted one goes on showing that long. Writes see the truth at
once (docs silent; a second delete is 404 here). All delays are 0 unless a test sets them.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from entra_emulator.audit_api import format_timestamp
from entra_emulator.tenant import Tenant

PENDING_PROVISIONING = "PendingProvisioning"


def shown(item: Mapping[str, Any], now: datetime) -> bool:
    """Whether reads show a stored assignment or schedule at ``now`` (made, and visible yet)."""
    visible_at = item.get("_visibleAt")
    return visible_at is None or now.timestamp() >= float(visible_at)


def live(item: Mapping[str, Any]) -> bool:
    """Whether it exists for writes: a removal still showing in reads is gone already."""
    return not item.get("_removed")


def lagging_remove(
    store: dict[str, dict[str, Any]], key: str, now: datetime, seconds: float
) -> None:
    """Remove ``store[key]`` at once for writes; reads go on showing it for ``seconds``."""
    if seconds <= 0:
        del store[key]
        return
    store[key]["_removed"] = True
    store[key]["_goneAt"] = now.timestamp() + seconds


def start_provisioning(request: dict[str, Any], now: datetime, seconds: float) -> None:
    """Make a new schedule request pending for ``seconds``: its status reads
    ``PendingProvisioning`` (no completedDateTime) until then, then its final status."""
    if seconds <= 0:
        return
    request["_finalStatus"] = request["status"]
    request["_settleAt"] = now.timestamp() + seconds
    request["status"] = PENDING_PROVISIONING
    request["completedDateTime"] = None


def settle(tenant: Tenant, now: datetime) -> None:
    """Finish provisioning whose time has come, and forget removals reads no longer show."""
    stamp = now.timestamp()
    for request in tenant.eligibility_requests.values():
        settle_at = request.get("_settleAt")
        if settle_at is not None and stamp >= float(settle_at):
            request["status"] = request.pop("_finalStatus")
            request["completedDateTime"] = format_timestamp(
                datetime.fromtimestamp(float(request.pop("_settleAt")), tz=now.tzinfo)
            )
    for store in (tenant.role_assignments, tenant.eligibility_schedules):
        for key, item in list(store.items()):
            if item.get("_removed") and stamp >= float(item.get("_goneAt") or 0):
                del store[key]
