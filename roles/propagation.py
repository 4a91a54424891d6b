"""Patience with Entra's read-after-write lag: reading back a write Graph accepted until it shows.

PIM provisions a schedule request asynchronously (its ``status`` is first a pending value such as
``PendingProvisioning``, then ``Provisioned``:
https://learn.microsoft.com/graph/api/resources/unifiedroleassignmentschedulerequest), and the
directory is eventually consistent ("A successful write to Microsoft Entra does not guarantee that
an immediate read will reflect that change":
https://devblogs.microsoft.com/identity/designing-for-eventual-consistency-for-microsoft-entra/).
So a runner that does not see its accepted write yet does not fail at once: it records a visible
waiting step and lets the durable-request engine retry it after a backoff (``outbox.engine``:
the row goes back to ``pending`` and the task is re-sent). The re-run reads only: the write
journal (``completed_writes``) says the write was done, so it is never sent again.

Each poll is one attempt of ``PORTAL_ACTION_MAX_ATTEMPTS``, after the engine's backoff; the last
attempt left waits out the runner's limit (``ROLES_PROPAGATION_TIMEOUT_SECONDS`` for role changes,
``PORTAL_RELIST_TIMEOUT_SECONDS`` for a re-registration's re-list). Past the limit, or with no
attempt left, :func:`poll_again_or_give_up` returns the seconds waited and the runner ends the
request in a state a person reads ("not yet visible after N s; check Entra").
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from django.conf import settings
from django.utils import timezone

from graph.errors import GraphTransient
from outbox.engine import Run, backoff_seconds

NOT_YET_VISIBLE = "NotYetVisible"


def first_step_at(steps: Sequence[dict[str, Any]], prefix: str) -> datetime | None:
    """When the first step whose text starts with ``prefix`` was recorded (None: no such step):
    the moment a runner first read back its write, kept across polls in the row's steps."""
    for step in steps:
        if str(step.get("text", "")).startswith(prefix) and step.get("at"):
            try:
                return datetime.fromisoformat(str(step["at"]))
            except ValueError:
                return None
    return None


def poll_again_or_give_up(
    run: Run[Any], *, since: datetime, limit_seconds: float, waiting: str, detail: str = ""
) -> float:
    """The write Graph accepted is not visible yet. Within ``limit_seconds`` of ``since`` (and
    with an attempt left), record the step ``waiting`` ("Provisioning in Entra…") and raise
    GraphTransient ``NotYetVisible`` carrying the countdown, which the engine turns into a
    deferral (back to ``pending``, retried after the countdown). Otherwise return the seconds
    waited so far: the caller ends the request, saying so.

    The countdown is the engine's backoff (``backoff_seconds``: 5, 10, 20 s by default) and,
    for the last attempt left, the rest of the limit; never past the limit.
    """
    row = run.row
    elapsed = max(0.0, (timezone.now() - since).total_seconds())
    remaining = float(limit_seconds) - elapsed
    attempts_left = int(settings.PORTAL_ACTION_MAX_ATTEMPTS) - int(row.attempts)
    if remaining <= 0 or attempts_left <= 0:
        return elapsed
    # The engine's backoff while attempts remain; the last one waits out the limit.
    wait = backoff_seconds(row.attempts, None) if attempts_left > 1 else remaining
    countdown = max(1.0, min(remaining, wait))
    run.step(
        f"{waiting}: not visible yet {elapsed:.0f} s after Graph accepted it; "
        f"checking again in {countdown:.0f} s",
        state="waiting",
        detail=detail,
    )
    exc = GraphTransient(
        0,
        NOT_YET_VISIBLE,
        f"Entra does not show the change yet, {elapsed:.0f} s after Graph accepted it "
        "(still provisioning or replicating); it is not sent again.",
    )
    # The engine reads ``retry_after`` for its countdown (defer_or_fail).
    setattr(exc, "retry_after", countdown)  # noqa: B010
    raise exc


def not_visible_message(elapsed: float, what: str) -> str:
    """The message of a request that ends with its accepted write still not visible."""
    return (
        f"Graph accepted {what}, but Entra does not show it yet after {elapsed:.0f} s; check "
        "Entra (PIM may still be provisioning it, or the directory replicating it). The portal "
        "did not send it again."
    )
