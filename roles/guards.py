"""The guards on removing a holder: some roles must never be left without an active holder.

Both the request (``roles.services.role_change_create``) and the run
(``roles.execution``) ask them, the run again on what Graph says then.
"""

from __future__ import annotations

from collections.abc import Sequence

from roles.catalog import GLOBAL_ADMIN, PAA, ROLES_NEVER_EMPTY
from roles.holders import Holding, active_people
from roles.models import RoleChange, RoleChangeRequest


def removal_guard_message(
    holdings: Sequence[Holding], *, removing: Holding, also_removing: Sequence[Holding] = ()
) -> str | None:
    """Why removing ``removing`` (with the removals ``also_removing`` already under way) is
    refused, or None when it may go ahead.

    * the last Global Administrator can never be removed;
    * a removal that leaves no active PAA holder is refused: someone must always be able to
      reset an administrator's MFA.
    Only active holdings count (an eligibility must be activated before it can be used).
    """
    role_name = removing.role_name
    if role_name not in ROLES_NEVER_EMPTY:
        return None

    def key(h: Holding) -> tuple[str, str, str]:
        return (h.principal_id.lower(), h.how, h.assignment_id or h.schedule_id)

    gone = {key(removing)} | {key(h) for h in also_removing}
    remaining = active_people(h for h in holdings if key(h) not in gone)
    if remaining:
        return None
    if role_name == GLOBAL_ADMIN:
        return (
            f"{removing.display_name} cannot be removed: no active Global Administrator would "
            "remain. The last Global Administrator can never be removed."
        )
    return (
        f"{removing.display_name} cannot be removed: no one would hold {PAA} actively any more, "
        "and someone must always be able to reset an administrator's MFA. Add another holder "
        "first."
    )


def open_removals(role_name: str, holdings: tuple[Holding, ...]) -> list[Holding]:
    """The holdings of ``role_name`` that open removal requests (awaiting approval, pending or
    running) will take away: the guards count them as gone already."""
    open_rows = RoleChangeRequest.objects.open().filter(
        change=RoleChange.REMOVE, role_name=role_name
    )
    wanted = {(r.principal_id.lower(), r.hold_kind) for r in open_rows}
    return [h for h in holdings if (h.principal_id.lower(), h.how) in wanted]
