"""Celery tasks of directory role administration: thin wrappers that call one service each.

Arguments are primary keys (and a priority name) only; outcomes live in the database. Found by
autodiscovery. Each task is registered twice: under its name here (``roles.tasks.<name>``) and
under the name it had in ``accounts.role_tasks``, so that messages queued before an upgrade still
run; nothing sends the old names any more.
"""

from __future__ import annotations

from typing import Any

from celery import shared_task

from graph import Priority
from roles import services

# A role change is claimed with a lease and fenced: a message redelivered after a lost worker is
# safe to run again (PORTAL_ACTION_MAX_ATTEMPTS is counted in the database, not by Celery).
_RUN_OPTIONS: dict[str, Any] = {
    "bind": True,
    "acks_late": True,
    "reject_on_worker_lost": True,
    "ignore_result": True,
    "max_retries": None,
}
_OLD_PREFIX = "accounts.role_tasks."


def _role_change_run(task: Any, request_id: int) -> None:
    try:
        services.role_change_execute(request_id=request_id)
    except services.RoleChangeDeferred as deferred:
        raise task.retry(countdown=deferred.countdown, exc=None, throw=True) from None


@shared_task(name="roles.tasks.role_change_run", **_RUN_OPTIONS)
def role_change_run(self: Any, request_id: int) -> None:
    """Execute role change ``request_id`` (services.role_change_execute); a throttled or
    transient Graph failure re-sends this task after Graph's ``Retry-After``."""
    _role_change_run(self, request_id)


@shared_task(name="roles.tasks.role_holders_refresh", ignore_result=True)
def role_holders_refresh(snapshot_id: int, priority: str = Priority.SYNC) -> None:
    """Read every holder into snapshot ``snapshot_id`` at ``priority``."""
    services.role_holders_refresh(snapshot_id=snapshot_id, priority=Priority(priority))


@shared_task(name="roles.tasks.role_holders_refresh_scheduled", ignore_result=True)
def role_holders_refresh_scheduled() -> None:
    """Beat, every ``ROLES_REFRESH_SECONDS``: queue a read of the holders at sync priority."""
    services.role_holders_refresh_request(trigger="schedule")


@shared_task(name="roles.tasks.role_changes_redispatch", ignore_result=True)
def role_changes_redispatch() -> int:
    """Beat, every 30 s: dispatch again the role changes no worker picked up."""
    return services.role_changes_redispatch()


# --- the names of accounts.role_tasks, for messages queued before the upgrade ---------------------


@shared_task(name=f"{_OLD_PREFIX}role_change_run", **_RUN_OPTIONS)
def old_role_change_run(self: Any, request_id: int) -> None:
    """``role_change_run`` under its old name (a retry goes out under the old name too)."""
    _role_change_run(self, request_id)


@shared_task(name=f"{_OLD_PREFIX}role_holders_refresh", ignore_result=True)
def old_role_holders_refresh(snapshot_id: int, priority: str = Priority.SYNC) -> None:
    """``role_holders_refresh`` under its old name."""
    role_holders_refresh(snapshot_id, priority)


@shared_task(name=f"{_OLD_PREFIX}role_holders_refresh_scheduled", ignore_result=True)
def old_role_holders_refresh_scheduled() -> None:
    """``role_holders_refresh_scheduled`` under its old name."""
    role_holders_refresh_scheduled()


@shared_task(name=f"{_OLD_PREFIX}role_changes_redispatch", ignore_result=True)
def old_role_changes_redispatch() -> int:
    """``role_changes_redispatch`` under its old name."""
    return services.role_changes_redispatch()
