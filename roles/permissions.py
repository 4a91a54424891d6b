"""Who may do what in directory role administration: every permission rule of the roles app.

* the pages of /roles/ are for portal Admins only (:data:`ROLES_PAGE_ROLES`);
* an Admin may ask for a change of anyone's directory roles but their own;
* a second Admin decides a change that waits for approval: not the requester, and not the
  person the change is for;
* any Admin may cancel a change that has not started.

The guards on what may be removed (``roles.guards``) and tiering (``roles.tiering``) are rules
of the directory, not of who is asking; they live with the holders.
"""

from __future__ import annotations

import uuid
from typing import Any

from django.http import Http404

from accounts.roles import ADMIN_ROLES, Role, has_role
from outbox.errors import NotAllowed, PolicyError
from outbox.states import Status
from roles.models import RoleChangeRequest
from roles.tiering import oid_of

# The portal roles that reach the pages of /roles/ (``accounts.roles.role_required``).
ROLES_PAGE_ROLES: tuple[str, ...] = ADMIN_ROLES


def role_change_check_may_request(requester: Any) -> None:
    """Raises NotAllowed unless ``requester`` is a portal Admin."""
    if not has_role(requester, Role.ADMIN):
        raise NotAllowed("Only a portal Admin can change who holds directory roles.")


def role_change_check_not_own_roles(requester: Any, principal_id: str) -> None:
    """Raises NotAllowed when ``principal_id`` is ``requester`` themself."""
    if principal_id.lower() == oid_of(requester).lower():
        raise NotAllowed("You cannot change your own directory roles: ask another Admin.")


def role_change_check_may_decide(approver: Any, row: RoleChangeRequest) -> None:
    """Raises NotAllowed unless ``approver`` is an Admin who neither asked for the change nor is
    the person it gives the role to."""
    if not has_role(approver, Role.ADMIN):
        raise NotAllowed("Only a portal Admin can approve or reject role changes.")
    if approver.pk == row.requester_id:
        raise NotAllowed(
            "You cannot approve or reject your own change: another Admin must decide it."
        )
    if oid_of(approver).lower() == row.principal_id.lower():
        raise NotAllowed("You cannot decide a change of your own directory roles.")


def role_change_check_may_cancel(by: Any) -> None:
    """Raises NotAllowed unless ``by`` is a portal Admin (any Admin may cancel any change)."""
    if not has_role(by, Role.ADMIN):
        raise NotAllowed("Only a portal Admin can cancel role changes.")


def can_decide(user: Any, row: RoleChangeRequest) -> bool:
    """Whether ``user`` sees Approve/Reject: waiting, and not their own change or own roles."""
    if row.status != Status.AWAITING_APPROVAL:
        return False
    try:
        role_change_check_may_decide(user, row)
    except PolicyError:
        return False
    return True


def get_role_change_for_user(user: Any, public_id: str) -> RoleChangeRequest:
    """The change ``public_id`` as ``user`` may see it: every Admin may see every change (the
    view's ``role_required`` has checked the role). Http404 for an unknown id."""
    try:
        return RoleChangeRequest.objects.get(public_id=uuid.UUID(str(public_id)))
    except (ValueError, RoleChangeRequest.DoesNotExist) as exc:
        raise Http404("No such role change") from exc
