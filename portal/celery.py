"""The one Celery application of the portal.

Configuration comes from Django settings under the ``CELERY_`` namespace (``CELERY_BROKER_URL``
is ``REDIS_URL``). Tasks are discovered in every installed app's ``tasks`` module.

Queues (declared here so that a worker started with ``-Q interactive,bulk,sync`` and the tests'
embedded worker agree on them):

- ``interactive``: one agent is waiting for the result (the default queue);
- ``bulk``: work on many users that nobody watches live;
- ``sync``: periodic work (audit sync, role refresh, the outbox reaper, session clean-up).

A task chooses its queue with ``@shared_task(queue=...)`` or ``apply_async(queue=...)``; both win
over the name-prefix routes below, which only give a sensible default.
"""

from __future__ import annotations

import os

from celery import Celery
from kombu import Exchange, Queue

QUEUE_NAMES: tuple[str, ...] = ("interactive", "bulk", "sync")

# ``celery -A portal worker`` imports this module before anything has named the settings.
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")

app = Celery("portal")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.update(
    # One direct exchange per queue keeps routing keys equal to queue names, so a route or an
    # ``apply_async(queue=...)`` naming a queue reaches exactly that queue. The default exchange
    # and routing key follow ``task_default_queue`` (settings: interactive).
    task_queues=tuple(
        Queue(name, Exchange(name, type="direct"), routing_key=name) for name in QUEUE_NAMES
    ),
    # The audit trail and periodic refreshes read in the background: keep them off the queue
    # that an agent's live request waits on.
    task_routes={
        "audit.tasks.*": {"queue": "sync"},
        "accounts.tasks.*": {"queue": "sync"},
        # An agent watches an action run; the outbox reaper is background work.
        "mfa.tasks.action_request_run": {"queue": "interactive"},
        "mfa.tasks.requests_*": {"queue": "sync"},
        # A role change is watched like an action; the holders' schedule and the redispatch
        # are background work (an Admin's refresh button names its queue itself).
        "roles.tasks.role_change_run": {"queue": "interactive"},
        "roles.tasks.role_holders_refresh_scheduled": {"queue": "sync"},
        "roles.tasks.role_changes_redispatch": {"queue": "sync"},
        "*.bulk_*": {"queue": "bulk"},
    },
)
app.autodiscover_tasks()
