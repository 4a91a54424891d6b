"""What every PortalEvent of a role change says about it: the target fields and the detail."""

from __future__ import annotations

from typing import Any

from roles.models import RoleChangeRequest


def event_fields(row: RoleChangeRequest) -> dict[str, Any]:
    return {
        "target_id": row.principal_id,
        "target_name": row.principal_name,
        "ticket": row.ticket,
    }


def event_detail(row: RoleChangeRequest, **more: Any) -> dict[str, Any]:
    return {
        "role_change": str(row.public_id),
        "role_change_id": row.pk,
        "change": row.change,
        "role": row.role_name,
        "role_template_id": row.role_template_id,
        "principal_type": row.principal_type,
        "hold_kind": row.hold_kind,
        "ends_at": row.ends_at.isoformat() if row.ends_at else None,
        **more,
    }
