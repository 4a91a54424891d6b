"""Celery tasks of directory role administration: thin wrappers that call one service each.

Arguments are primary keys (and a priority name) only; outcomes live in the database. Listed in
``CELERY_IMPORTS`` (autodiscovery only finds modules named ``tasks``).
"""

from __future__ import annotations

from typing import Any

from celery import shared_task

from accounts import role_services
from graph import Priority


@shared_task(
    bind=True,
    name="accounts.role_tasks.role_change_run",
    acks_late=True,
    reject_on_worker_lost=True,
    ignore_result=True,
    max_retries=None,  # the database counts attempts (PORTAL_ACTION_MAX_ATTEMPTS)
)
def role_change_run(self: Any, request_id: int) -> None:
    """Execute role change ``request_id`` (role_services.role_change_execute); a throttled or
    transient Graph failure re-sends this task after Graph's ``Retry-After``."""
    try:
        role_services.role_change_execute(request_id=request_id)
    except role_services.RoleChangeDeferred as deferred:
        raise self.retry(countdown=deferred.countdown, exc=None, throw=True) from None


@shared_task(name="accounts.role_tasks.role_holders_refresh", ignore_result=True)
def role_holders_refresh(snapshot_id: int, priority: str = Priority.SYNC) -> None:
    """Read every holder into snapshot ``snapshot_id`` at ``priority``."""
    role_services.role_holders_refresh(snapshot_id=snapshot_id, priority=Priority(priority))


@shared_task(name="accounts.role_tasks.role_holders_refresh_scheduled", ignore_result=True)
def role_holders_refresh_scheduled() -> None:
    """Beat, every ``ROLES_REFRESH_SECONDS``: queue a read of the holders at sync priority."""
    role_services.role_holders_refresh_request(trigger="schedule")


@shared_task(name="accounts.role_tasks.role_changes_redispatch", ignore_result=True)
def role_changes_redispatch() -> int:
    """Beat, every 30 s: dispatch again the role changes no worker picked up."""
    return role_services.role_changes_redispatch()
