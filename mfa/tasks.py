"""Celery tasks of the helpdesk actions: thin wrappers that call one service each.

Queues come from ``task_routes`` in portal/celery.py: ``action_request_run`` on ``interactive``
(an agent is watching), the beat tasks on ``sync``. Arguments are primary keys only and results
are ignored: a task message never carries anything about the person or a secret. Outcomes live in
the ActionRequest row.
"""

from __future__ import annotations

from typing import Any

from celery import shared_task

from mfa import services


@shared_task(
    bind=True,
    name="mfa.tasks.action_request_run",
    acks_late=True,
    reject_on_worker_lost=True,
    ignore_result=True,
    # The database counts attempts (PORTAL_ACTION_MAX_ATTEMPTS); Celery need not stop us first.
    max_retries=None,
)
def action_request_run(self: Any, request_id: int) -> None:
    """Execute request ``request_id`` (see services.action_request_execute). A throttled or
    transient Graph failure re-sends this task after Graph's ``Retry-After``."""
    try:
        services.action_request_execute(request_id=request_id)
    except services.ActionDeferred as deferred:
        raise self.retry(countdown=deferred.countdown, exc=None, throw=True) from None


@shared_task(name="mfa.tasks.requests_redispatch", ignore_result=True)
def requests_redispatch() -> int:
    """Beat, every 30 s: dispatch again the requests no worker picked up."""
    return services.requests_redispatch()


@shared_task(name="mfa.tasks.requests_expire_stale", ignore_result=True)
def requests_expire_stale() -> int:
    """Beat, every minute: expire requests that waited too long for an approval."""
    return services.requests_expire_stale()
