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


# --- notices of what starts waiting (mfa.notifications.notify_waiting) --------------------------


@shared_task(name="mfa.tasks.waiting_notify", ignore_result=True)
def waiting_notify(ref: str, status: str) -> None:
    """Mail the people request ``ref`` waits for (while it still waits in ``status``) and
    enqueue the webhook post. ``ref`` is a model and a primary key ("action:12"), nothing more."""
    from mfa import notifications

    notifications.waiting_notify(ref=ref, status=status)


@shared_task(
    bind=True,
    name="mfa.tasks.waiting_webhook_post",
    ignore_result=True,
    max_retries=None,
)
def waiting_webhook_post(self: Any, ref: str, notice: dict[str, str]) -> None:
    """Post one waiting notice to PORTAL_NOTIFY_WEBHOOK_URL. A network error, 408, 429 or 5xx is
    retried (PORTAL_NOTIFY_WEBHOOK_ATTEMPTS in all, backing off from
    PORTAL_NOTIFY_WEBHOOK_BACKOFF_SECONDS); the last failure, or a refusal, is recorded as a
    ``waiting_notified`` event. ``notice`` holds no secret (mfa.webhook.Notice)."""
    from django.conf import settings

    from mfa import notifications, waiting, webhook

    try:
        webhook.post(webhook.Notice.from_dict(notice))
    except webhook.WebhookFailed as failure:
        attempts = int(settings.PORTAL_NOTIFY_WEBHOOK_ATTEMPTS)
        if failure.retryable and self.request.retries + 1 < attempts:
            countdown = float(settings.PORTAL_NOTIFY_WEBHOOK_BACKOFF_SECONDS) * (
                2**self.request.retries
            )
            raise self.retry(countdown=min(countdown, 600.0), exc=None, throw=True) from None
        row = waiting.row_of(ref)
        if row is not None:
            notifications.waiting_event_record(
                row,
                detail={
                    "webhook": "failed",
                    "failed": [
                        f"webhook ({failure.reason}, after {self.request.retries + 1} attempts)"
                    ],
                },
            )
