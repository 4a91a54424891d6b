"""Making and running bulk operations in tests: the real services, the real engine (run inline,
synchronously, instead of through a Celery worker), the real HTTPS emulator."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bulk import services
from bulk.flow import BULK_OPERATIONS
from bulk.models import BulkItem, BulkOperation
from entra_emulator.seed import GROUP_IDS, PHISHING_GROUP
from outbox import engine
from tests.personas import PERSONAS, portal_user

REASON = "Phishing campaign: the people who clicked the link sign in again with new methods"
TICKET = "INC0099001"
PHISHING_GROUP_ID = GROUP_IDS[PHISHING_GROUP]


def rita() -> Any:
    return portal_user(PERSONAS.responder)


def plan(
    people: Sequence[str] | None = None,
    *,
    group_id: str | None = None,
    actions: Sequence[str] = ("revoke_sessions",),
    starter: Any = None,
    notify: bool = False,
) -> BulkOperation:
    return services.plan(
        starter=starter or rita(),
        people=list(people) if people is not None else None,
        group_id=group_id,
        actions=list(actions),
        reason=REASON,
        ticket=TICKET,
        notify=notify,
        source_label="test",
    )


def run(op: BulkOperation) -> BulkOperation:
    """Run the operation's task body once, inline."""
    engine.execute(BULK_OPERATIONS, op.pk)
    op.refresh_from_db()
    return op


def items(op: BulkOperation) -> list[BulkItem]:
    return list(BulkItem.objects.filter(operation=op).order_by("position"))


def group_standard_ids(server: Any, count: int) -> list[str]:
    """``count`` standard people of the phishing group (enabled members, no persona)."""
    tenant = server.tenant
    persona_ids = {p.oid for p in PERSONAS.all()}
    with tenant.lock:
        members = sorted(tenant.group_members[PHISHING_GROUP_ID])
        users = [tenant.users.get(m) for m in members]
    found = [
        u["id"]
        for u in users
        if u is not None and u.get("accountEnabled") and u["id"] not in persona_ids
    ]
    return found[:count]
