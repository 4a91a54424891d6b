"""Who may do what in directory role administration: every permission rule of the roles app.

* the pages of /roles/ are for portal Admins only (:data:`ROLES_PAGE_ROLES`);
* an Admin may ask for a change of anyone's directory roles but their own, and a role given to
  a group is theirs too when they are a member of the group (transitively, as Entra passes the
  role on);
* a second Admin decides a change that waits for approval: not the requester, and not the
  person the change is for (nor a member of the group it is for);
* any Admin may cancel a change that has not started.

The guards on what may be removed (``roles.guards``) and tiering (``roles.tiering``) are rules
of the directory, not of who is asking; they live with the holders.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from django.http import Http404

from accounts.roles import ADMIN_ROLES, Role, has_role
from graph import GraphClient
from graph import groups as graph_groups
from graph.errors import GraphError
from outbox.errors import NotAllowed, PolicyError
from outbox.states import Status
from roles.models import PrincipalType, RoleChangeRequest
from roles.tiering import oid_of

logger = logging.getLogger(__name__)

# The portal roles that reach the pages of /roles/ (``accounts.roles.role_required``).
ROLES_PAGE_ROLES: tuple[str, ...] = ADMIN_ROLES


def role_change_check_may_request(requester: Any) -> None:
    """Raises NotAllowed unless ``requester`` is a portal Admin."""
    if not has_role(requester, Role.ADMIN):
        raise NotAllowed("Only a portal Admin can change who holds directory roles.")


def is_own_principal(
    user: Any, principal_id: str, principal_type: str, *, client: GraphClient | None = None
) -> bool:
    """Whether a role held by ``principal_id`` is ``user``'s own: the principal is the user, or
    a group (``principal_type`` ``group``) the user is a member of, nested groups expanded
    (``transitiveMembers``, as a role-assignable group passes its roles on). Reads Graph only
    for a group; raises GraphError as it comes."""
    oid = oid_of(user).lower()
    if principal_id.lower() == oid:
        return True
    if principal_type != PrincipalType.GROUP:
        return False
    if client is None:
        from portal.graph_client import get_graph_client

        client = get_graph_client()
    members = graph_groups.list_transitive_members(client, principal_id)
    return any(m.id.lower() == oid for m in members)


def _own_principal_or_refuse(
    user: Any, principal_id: str, principal_type: str, client: GraphClient | None
) -> bool:
    """:func:`is_own_principal`, failing closed: a Graph failure is a refusal (NotAllowed)."""
    try:
        return is_own_principal(user, principal_id, principal_type, client=client)
    except GraphError as exc:
        logger.warning("could not expand group %s: %s", principal_id, exc.code)
        raise NotAllowed(
            "The portal could not read the members of this group from Microsoft Graph "
            f"({exc.code}), so it cannot tell whether the role would be yours: try again in a "
            "minute."
        ) from None


def role_change_check_not_own_roles(
    requester: Any,
    principal_id: str,
    principal_type: str = PrincipalType.USER,
    *,
    client: GraphClient | None = None,
) -> None:
    """Raises NotAllowed when the role of ``principal_id`` is ``requester``'s own: themself, or
    a group they are a member of, directly or through nested groups (read from Graph; a failure
    to read it refuses too)."""
    if principal_id.lower() == oid_of(requester).lower():
        raise NotAllowed("You cannot change your own directory roles: ask another Admin.")
    if _own_principal_or_refuse(requester, principal_id, principal_type, client):
        raise NotAllowed(
            "You are a member of this group, so its directory roles are yours too: you cannot "
            "change them. Ask another Admin."
        )


def role_change_check_may_decide(
    approver: Any, row: RoleChangeRequest, *, client: GraphClient | None = None
) -> None:
    """Raises NotAllowed unless ``approver`` is an Admin who neither asked for the change nor is
    the person it gives the role to, nor a member (transitively) of the group it gives the role
    to (read from Graph for a group; a failure to read it refuses too)."""
    if not has_role(approver, Role.ADMIN):
        raise NotAllowed("Only a portal Admin can approve or reject role changes.")
    if approver.pk == row.requester_id:
        raise NotAllowed(
            "You cannot approve or reject your own change: another Admin must decide it."
        )
    if oid_of(approver).lower() == row.principal_id.lower():
        raise NotAllowed("You cannot decide a change of your own directory roles.")
    if _own_principal_or_refuse(approver, row.principal_id, row.principal_type, client):
        raise NotAllowed(
            f"You are a member of {row.principal_name}, so this change is of your own directory "
            "roles: another Admin must decide it."
        )


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
