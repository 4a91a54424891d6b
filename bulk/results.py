"""What a bulk operation's pages and export read: its results as CSV rows, and its ETA."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from bulk.models import BulkItem, BulkOperation
from outbox.states import Status

EXPORT_HEADER = (
    "position",
    "asked",
    "upn",
    "display_name",
    "object_id",
    "tier",
    "included",
    "refusal",
    "refusal_text",
    "methods_count",
    "state",
    "error_code",
    "error_message",
    "graph_request_id",
    "action_requests",
)


def _cell(value: Any) -> str:
    """A CSV cell a spreadsheet never runs as a formula."""
    text = "" if value is None else str(value)
    return f"'{text}" if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def export_rows(op: BulkOperation) -> Iterator[list[str]]:
    """The operation's results, one row per asked-for person, header first (CSV-ready, formula
    cells escaped)."""
    yield list(EXPORT_HEADER)
    items = (
        BulkItem.objects.filter(operation=op)
        .order_by("position")
        .prefetch_related("parts__action_request")
    )
    for item in items.iterator(chunk_size=500):
        parts = " ".join(
            f"{p.kind}:{p.action_request.public_id}:{p.action_request.status}"
            for p in item.parts.all()
        )
        yield [
            _cell(v)
            for v in (
                item.position,
                item.asked,
                item.upn,
                item.display_name,
                item.target_id,
                item.tier,
                "yes" if item.included else "no",
                item.refusal,
                item.refusal_text,
                "" if item.methods_count is None else item.methods_count,
                item.state if item.included else "",
                item.error_code,
                item.error_message,
                item.graph_request_id,
                parts,
            )
        ]


def eta_seconds(op: BulkOperation) -> float | None:
    """Seconds the people left need at the budget's ceiling (the dry run's estimate scaled to
    what is left), or None when nothing is left or the operation is not running or queued."""
    if op.status not in (Status.PENDING, Status.RUNNING) or not op.left:
        return None
    total = float(op.dry_run.get("estimate_seconds") or 0.0)
    included = int(op.dry_run.get("included") or 0)
    if not included:
        return None
    return round(total * op.left / included, 1)
