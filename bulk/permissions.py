"""Who may do what with bulk operations: every permission rule of the bulk pages.

* Responders and Admins start operations (``RESPONDER_ROLES``); Leads, Responders and Admins
  open /bulk/ (``BULK_ROLES``) and approve (``BULK_APPROVER_ROLES``), never their own;
* a dry run (a draft) is seen by its starter and by Admins (who may include staff and
  break-glass people, one by one); a confirmed operation by everyone of ``BULK_ROLES``;
* the starter confirms the dry run; the starter, Leads, Responders and Admins pause, resume,
  cancel and retry the failed people (``bulk.services.may_steer``, the same rule the services
  apply);
* everyone who sees an operation may export its results.

Someone who may not see an operation gets 404 (its existence is not revealed); someone who sees
it but may not do the thing gets 403.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied
from django.http import Http404

from accounts.roles import Role, has_role
from bulk import services
from bulk.models import BulkOperation


def is_starter(user: Any, operation: BulkOperation) -> bool:
    return bool(operation.requester_id == user.pk)


def can_see(user: Any, operation: BulkOperation) -> bool:
    if is_starter(user, operation):
        return True
    if operation.is_draft:
        return has_role(user, Role.ADMIN)
    return True  # every role that reaches /bulk/ (role_required on each view)


def can_start(user: Any) -> bool:
    return services.may_start(user)


def can_confirm(user: Any, operation: BulkOperation) -> bool:
    return operation.is_draft and is_starter(user, operation)


def can_confirm_people(user: Any, operation: BulkOperation) -> bool:
    """An Admin includes refused staff and break-glass people, on the dry run only."""
    return operation.is_draft and has_role(user, Role.ADMIN)


def can_decide(user: Any, operation: BulkOperation) -> bool:
    return services.may_approve(user, operation)


def can_steer(user: Any, operation: BulkOperation) -> bool:
    """Pause, resume, cancel and retry (``bulk.services.may_steer``: the starter, a Lead, a
    Responder or an Admin), on a confirmed operation."""
    return not operation.is_draft and services.may_steer(user, operation)


def get_operation_for_user(user: Any, public_id: Any) -> BulkOperation:
    """The operation ``public_id`` if ``user`` may see it; Http404 otherwise."""
    operation = (
        BulkOperation.objects.select_related("requester", "decided_by")
        .filter(public_id=public_id)
        .first()
    )
    if operation is None or not can_see(user, operation):
        raise Http404("No such bulk operation.")
    return operation


def require(allowed: bool, message: str) -> None:
    """PermissionDenied with ``message`` unless ``allowed``."""
    if not allowed:
        raise PermissionDenied(message)
