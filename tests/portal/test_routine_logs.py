"""Quiet logs for routine work (portal/celery.py): beat's and the worker's INFO lines about the
periodic tasks (every 30 s) no longer bury ``make run``'s output; their warnings, and every line
about an agent's own task, still show.

The records are made by Celery's own logging calls (``celery.app.trace.info``, the beat
scheduler's logger), and the filter is installed by Celery's own ``after_setup_logger`` signal."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest
from celery._state import _task_stack  # type: ignore[attr-defined]  # what a worker pushes
from celery.app import trace
from celery.signals import after_setup_logger

from portal.celery import ROUTINE_ENV, QuietRoutine, routine_task_names

ROUTINE = "mfa.tasks.requests_redispatch"
AGENTS_OWN = "mfa.tasks.action_request_run"


@pytest.fixture
def celery_output() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    """A handler on the ``celery`` logger (beat's and the trace's parent) and ``audit``, as the
    worker's own handler on the root logger would be, installed through Celery's signal."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))
    holder = logging.getLogger("portal-test-celery-output")
    holder.handlers = [handler]
    watched = [logging.getLogger("celery"), logging.getLogger("audit")]
    levels = [logger.level for logger in watched]
    for logger in watched:
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
    after_setup_logger.send(
        sender=None, logger=holder, loglevel=logging.INFO, logfile=None, format="", colorize=False
    )
    try:
        yield holder, stream
    finally:
        for logger, level in zip(watched, levels, strict=True):
            logger.removeHandler(handler)
            logger.setLevel(level)


def _beat_sends(task: str) -> None:
    logging.getLogger("celery.beat").info("Scheduler: Sending due task %s (%s)", "entry", task)


def _worker_runs(task: str) -> None:
    trace.info(trace.LOG_RECEIVED, {"id": "1f0c", "name": task, "args": "()", "kwargs": "{}"})
    trace.info(
        trace.LOG_SUCCESS, {"id": "1f0c", "name": task, "runtime": 0.01, "return_value": None}
    )


def test_the_routine_tasks_are_the_beat_schedules() -> None:
    names = routine_task_names()
    assert {ROUTINE, "audit.tasks.entra_audit_sync", "roles.tasks.role_changes_redispatch"} <= names
    assert AGENTS_OWN not in names


def test_routine_info_lines_are_dropped_and_the_rest_kept(
    celery_output: tuple[logging.Logger, io.StringIO],
) -> None:
    holder, stream = celery_output
    assert any(isinstance(f, QuietRoutine) for f in holder.handlers[0].filters)

    _beat_sends(ROUTINE)
    _worker_runs(ROUTINE)
    # A line the routine task logs itself while it runs.
    from audit.tasks import entra_audit_sync

    _task_stack.push(entra_audit_sync)
    try:
        logging.getLogger("audit.sync").info("audit sync: 1 pages, 0 events read")
        logging.getLogger("audit.sync").warning("audit sync: Graph answered 429")
    finally:
        _task_stack.pop()
    logging.getLogger("celery.app.trace").warning("Task %s[1f0c] retry: throttled", ROUTINE)

    _beat_sends(AGENTS_OWN)
    _worker_runs(AGENTS_OWN)

    lines = stream.getvalue().splitlines()
    assert not [line for line in lines if ROUTINE in line and line.startswith("INFO")], lines
    assert "audit sync: 1 pages" not in stream.getvalue()
    assert "WARNING audit.sync audit sync: Graph answered 429" in lines
    assert f"WARNING celery.app.trace Task {ROUTINE}[1f0c] retry: throttled" in lines
    assert f"INFO celery.app.trace Task {AGENTS_OWN}[1f0c] received" in lines
    assert any(
        line.startswith(f"INFO celery.app.trace Task {AGENTS_OWN}[1f0c] succeeded")
        for line in lines
    )
    assert f"INFO celery.beat Scheduler: Sending due task entry ({AGENTS_OWN})" in lines


def test_portal_log_routine_shows_them_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(ROUTINE_ENV, "1")
    handler = logging.StreamHandler(io.StringIO())
    holder = logging.getLogger("portal-test-celery-verbose")
    holder.handlers = [handler]
    after_setup_logger.send(
        sender=None, logger=holder, loglevel=logging.INFO, logfile=None, format="", colorize=False
    )
    assert handler.filters == []
