"""A stamp of what a live request page shows, so that its poll can answer "nothing new".

A request page polls its live fragment every second while the request is open. The page sends
the stamp of what it shows (``?seen=``); when the stamp of the row is still the same the view
answers 204 and htmx swaps nothing: a comment being typed into a decision form on that fragment
is not wiped, and a screen reader is not handed the same region again every second.
"""

from __future__ import annotations

import hashlib
import json

from outbox.models import DurableRequest


def live_stamp(row: DurableRequest, *extra: object) -> str:
    """A short digest of ``row``'s visible state (status, steps, decision, outcome, last save)
    and of ``extra`` (what else the fragment shows this viewer, such as the buttons it gets)."""
    state = [
        row.status,
        row.steps,
        row.decided_by_name,
        row.decision_comment,
        row.decided_at,
        row.finished_at,
        row.error_code,
        row.error_message,
        row.error_request_id,
        row.updated_at,
        *extra,
    ]
    text = json.dumps(state, default=str, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:20]
