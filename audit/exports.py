"""History exports: CSV and JSON Lines that follow the history filters, streamed.

``export_response`` records the export (a ``PortalEvent`` of kind ``audit_export`` with the
filters and the format) and returns a ``StreamingHttpResponse`` whose body is produced row by row
from ``audit.selectors.history_rows``: the rows are read in keyset batches, so memory stays flat
whatever the size of the export. The viewer's scope applies as on the page.

Cells that a spreadsheet would run as a formula (starting with ``=``, ``+``, ``-``, ``@``, tab or
carriage return) are prefixed with ``'`` in the CSV: names and reasons come from Entra and from
agents, and an export is opened by people with privileges.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC
from typing import Any, Literal

from django.http import HttpRequest, StreamingHttpResponse
from django.utils import timezone

from audit.models import PortalEvent
from audit.selectors import HistoryFilters, HistoryRow, history_rows
from audit.services import portal_event_record

ExportFormat = Literal["csv", "jsonl"]
FORMATS: dict[str, tuple[str, str]] = {
    "csv": ("text/csv; charset=utf-8", "csv"),
    "jsonl": ("application/x-ndjson; charset=utf-8", "jsonl"),
}
# Rows joined into one chunk of the response: fewer, larger writes to the socket.
ROWS_PER_CHUNK = 500

COLUMNS: tuple[str, ...] = (
    "time",
    "source",
    "kind",
    "kind_label",
    "outcome",
    "agent_name",
    "agent_oid",
    "target_id",
    "target_name",
    "target_upn",
    "ticket",
    "request_id",
    "request_kind",
    "request_status",
    "verification",
    "decided_by",
    "entra_id",
    "entra_initiated_by",
    "entra_initiated_by_kind",
    "outside_portal",
    "result_reason",
    "correlation_id",
    "detail",
)
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def export_record(row: HistoryRow) -> dict[str, Any]:
    """One row as the exports write it (``COLUMNS``, in that order). Times are ISO 8601 in
    UTC; ``request_id`` is the request's public id."""
    info = row.request
    return {
        "time": row.at.astimezone(UTC).isoformat(),
        "source": row.source,
        "kind": row.kind,
        "kind_label": row.kind_label,
        "outcome": row.outcome,
        "agent_name": row.agent_name,
        "agent_oid": row.agent_oid,
        "target_id": row.target_id,
        "target_name": row.target_name,
        "target_upn": row.target_upn,
        "ticket": row.ticket,
        "request_id": str(info.public_id) if info else "",
        "request_kind": info.kind if info else "",
        "request_status": info.status if info else "",
        "verification": info.verification_label if info else "",
        "decided_by": info.decided_by_name if info else "",
        "entra_id": row.entra_id,
        "entra_initiated_by": row.initiated_by_name,
        "entra_initiated_by_kind": row.initiated_by_kind,
        "outside_portal": row.outside_portal,
        "result_reason": row.result_reason,
        "correlation_id": row.correlation_id,
        "detail": row.detail if row.detail is not None else {},
    }


def _cell(value: Any) -> Any:
    if isinstance(value, str):
        return "'" + value if value.startswith(_FORMULA_START) else value
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False, sort_keys=True, default=str) if value else ""
    return value


class _Lines:
    """A write-only file for csv.writer that keeps what was written until taken."""

    def __init__(self) -> None:
        self.parts: list[str] = []

    def write(self, text: str) -> int:
        self.parts.append(text)
        return len(text)

    def take(self) -> bytes:
        data = "".join(self.parts).encode()
        self.parts.clear()
        return data


def csv_chunks(rows: Iterable[HistoryRow]) -> Iterator[bytes]:
    """The CSV export of ``rows``: a header line, then one line per row, in chunks."""
    buffer = _Lines()
    writer = csv.writer(buffer)
    writer.writerow(COLUMNS)
    pending = 1
    for row in rows:
        record = export_record(row)
        writer.writerow([_cell(record[name]) for name in COLUMNS])
        pending += 1
        if pending >= ROWS_PER_CHUNK:
            yield buffer.take()
            pending = 0
    yield buffer.take()


def jsonl_chunks(rows: Iterable[HistoryRow]) -> Iterator[bytes]:
    """The JSON Lines export of ``rows``: one JSON object per line, in chunks."""
    lines: list[str] = []
    for row in rows:
        lines.append(json.dumps(export_record(row), ensure_ascii=False, default=str))
        if len(lines) >= ROWS_PER_CHUNK:
            yield ("\n".join(lines) + "\n").encode()
            lines.clear()
    if lines:
        yield ("\n".join(lines) + "\n").encode()


CHUNKERS: dict[str, Callable[[Iterable[HistoryRow]], Iterator[bytes]]] = {
    "csv": csv_chunks,
    "jsonl": jsonl_chunks,
}


def export_response(
    *, request: HttpRequest, filters: HistoryFilters, fmt: ExportFormat
) -> StreamingHttpResponse:
    """Record the export, then stream it. Raises KeyError for an unknown ``fmt``."""
    content_type, extension = FORMATS[fmt]
    portal_event_record(
        kind=PortalEvent.Kind.AUDIT_EXPORT,
        actor=request.user,
        request=request,
        # No target: an export acts on nobody (the filters, person included, are in the detail).
        detail={"format": fmt, "filters": filters.to_params()},
    )
    rows = history_rows(filters, request.user)
    response = StreamingHttpResponse(CHUNKERS[fmt](rows), content_type=content_type)
    stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
    response["Content-Disposition"] = f'attachment; filename="audit-history-{stamp}.{extension}"'
    response["Cache-Control"] = "no-store"
    # A proxy must not buffer the whole export.
    response["X-Accel-Buffering"] = "no"
    return response
