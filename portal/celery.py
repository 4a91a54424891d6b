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

Logs: the periodic tasks of ``beat_schedule`` (redispatch every 30 s, the audit sync, ...) would
print "Sending due task", "received", "succeeded" and their own INFO lines all day and bury what
matters in ``make run``'s output. :class:`QuietRoutine` drops INFO (and DEBUG) lines about them
from the worker's and beat's handlers; their warnings and errors, and every line about an
agent's own task, stay. ``PORTAL_LOG_ROUTINE=1`` shows the routine lines again.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping
from typing import Any

from celery import Celery
from celery._state import get_current_task
from celery.signals import after_setup_logger, after_setup_task_logger
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
        # Notices of what waits for someone (emails, the webhook post): background work.
        "mfa.tasks.waiting_*": {"queue": "sync"},
        # A role change is watched like an action; the holders' schedule and the redispatch
        # are background work (an Admin's refresh button names its queue itself).
        "roles.tasks.role_change_run": {"queue": "interactive"},
        "roles.tasks.role_holders_refresh_scheduled": {"queue": "sync"},
        "roles.tasks.role_changes_redispatch": {"queue": "sync"},
        "*.bulk_*": {"queue": "bulk"},
    },
)
app.autodiscover_tasks()


# --- quiet routine work in the logs -----------------------------------------------------------
ROUTINE_ENV = "PORTAL_LOG_ROUTINE"


def routine_task_names(schedule: Mapping[str, Any] | None = None) -> frozenset[str]:
    """The names of the tasks beat sends on a schedule (``beat_schedule`` by default)."""
    entries = app.conf.beat_schedule if schedule is None else schedule
    return frozenset(str(entry["task"]) for entry in (entries or {}).values() if "task" in entry)


class QuietRoutine(logging.Filter):
    """Drops INFO and DEBUG lines about routine tasks (``routine``: task names): beat's "Sending
    due task", the worker's "received" and "succeeded", and whatever the task logs while it
    runs. WARNING and above always pass, and so does every line about any other task."""

    def __init__(self, routine: Iterable[str]) -> None:
        super().__init__()
        self.routine = frozenset(routine)

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.WARNING:
            return True
        return not self._about_routine(record)

    def _about_routine(self, record: logging.LogRecord) -> bool:
        args = record.args
        # celery.app.trace and celery.worker.strategy: ("Task %(name)s[%(id)s] ...", {name, ...})
        if isinstance(args, Mapping) and args.get("name") in self.routine:
            return True
        # celery.beat: ("Scheduler: Sending due task %s (%s)", entry name, task name)
        if record.name == "celery.beat" and isinstance(args, tuple):
            return any(arg in self.routine for arg in args if isinstance(arg, str))
        task = get_current_task()
        return task is not None and getattr(task, "name", None) in self.routine


def quiet_routine(logger: logging.Logger, routine: Iterable[str] | None = None) -> None:
    """Put a :class:`QuietRoutine` filter on every handler of ``logger`` (once each), unless
    ``PORTAL_LOG_ROUTINE=1``."""
    if os.environ.get(ROUTINE_ENV, "").strip() in {"1", "true", "yes"}:
        return
    names = routine_task_names() if routine is None else frozenset(routine)
    for handler in logger.handlers:
        if not any(isinstance(f, QuietRoutine) for f in handler.filters):
            handler.addFilter(QuietRoutine(names))


@after_setup_logger.connect
def _quiet_routine_logs(logger: logging.Logger, **kwargs: Any) -> None:
    quiet_routine(logger)


@after_setup_task_logger.connect
def _quiet_routine_task_logs(logger: logging.Logger, **kwargs: Any) -> None:
    quiet_routine(logger)
