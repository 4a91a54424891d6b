"""History exports: CSV and JSON Lines that follow the history filters, streamed.

``export_response`` records the export (a ``PortalEvent`` of kind ``audit_export`` with the
filters and the format) and returns a ``StreamingHttpResponse`` whose body is produced row by row
from ``audit.selectors.history_flat_rows``: the rows are read in keyset batches of plain tuples
(no object per row) and written ``ROWS_PER_CHUNK`` at a time, so memory stays flat whatever the
size of the export (on PostgreSQL the CSV is written by the database instead, the same bytes:
``audit.export_sql``). The viewer's scope applies as on the page, and in an Agent's scope the
evidence, reasons and comments other agents wrote are left out of the ``detail`` column
(``audit.selectors.flat.PRIVATE_DETAIL_KEYS``).

Cells that a spreadsheet would run as a formula (starting with ``=``, ``+``, ``-``, ``@``, tab or
carriage return) are prefixed with ``'`` in the CSV: names and reasons come from Entra and from
agents, and an export is opened by people with privileges.
"""

from __future__ import annotations

import csv
import io
import json
import operator
import re
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC
from typing import Any, Literal

from django.db import connection
from django.http import HttpRequest, StreamingHttpResponse
from django.utils import timezone

from audit.export_sql import copy_csv_chunks
from audit.models import PortalEvent
from audit.selectors import FLAT_FIELDS, FlatRow, HistoryFilters, history_flat_rows
from audit.services import portal_event_record

ExportFormat = Literal["csv", "jsonl"]
FORMATS: dict[str, tuple[str, str]] = {
    "csv": ("text/csv; charset=utf-8", "csv"),
    "jsonl": ("application/x-ndjson; charset=utf-8", "jsonl"),
}
# Rows joined into one chunk of the response: fewer, larger writes to the socket.
ROWS_PER_CHUNK = 1000

# The columns of an export: the flat row's fields, in their order.
COLUMNS: tuple[str, ...] = FLAT_FIELDS
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


_FORMULA_CHARS = frozenset(_FORMULA_START)
# A text field starting like a formula, in the text fields joined with NUL and led by one.
_FORMULA_AFTER_NUL = re.compile("\0[" + re.escape("".join(_FORMULA_START)) + "]")
_TIME = FLAT_FIELDS.index("time")
_REQUEST_ID = FLAT_FIELDS.index("request_id")
_OUTSIDE = FLAT_FIELDS.index("outside_portal")
_DETAIL = FLAT_FIELDS.index("detail")
# The fields that are always text (every field but the four above).
_TEXT_FIELDS: tuple[int, ...] = tuple(
    i for i in range(len(FLAT_FIELDS)) if i not in (_TIME, _REQUEST_ID, _OUTSIDE, _DETAIL)
)


_texts_of = operator.itemgetter(*_TEXT_FIELDS)


def export_record(row: FlatRow) -> dict[str, Any]:
    """One row (``audit.selectors.FLAT_FIELDS``) as the exports write it (``COLUMNS``, in that
    order). Times are ISO 8601 in UTC; ``request_id`` is the request's public id."""
    record = dict(zip(COLUMNS, row, strict=True))
    record["time"] = row[_TIME].astimezone(UTC).isoformat()
    record["request_id"] = str(row[_REQUEST_ID]) if row[_REQUEST_ID] else ""
    record["detail"] = row[_DETAIL] if row[_DETAIL] is not None else {}
    return record


def _csv_row(row: FlatRow) -> list[Any]:
    """One flat row as CSV cells: formulas neutralised, booleans as yes/no, JSON as text."""
    cells = list(row)
    # One C-level test for the whole row (formulas are rare), then the fields one by one.
    if _FORMULA_AFTER_NUL.search("\0" + "\0".join(_texts_of(row))):
        for index in _TEXT_FIELDS:
            value = cells[index]
            if value[:1] in _FORMULA_CHARS:
                cells[index] = "'" + value
    detail = cells[_DETAIL]
    at = cells[_TIME]
    cells[_TIME] = (at if at.tzinfo is UTC else at.astimezone(UTC)).isoformat()
    cells[_REQUEST_ID] = str(cells[_REQUEST_ID]) if cells[_REQUEST_ID] else ""
    cells[_OUTSIDE] = "yes" if cells[_OUTSIDE] else "no"
    cells[_DETAIL] = (
        json.dumps(detail, ensure_ascii=False, sort_keys=True, default=str) if detail else ""
    )
    return cells


def csv_chunks(rows: Iterable[FlatRow]) -> Iterator[bytes]:
    """The CSV export of ``rows``: a header line, then one line per row, ``ROWS_PER_CHUNK``
    rows to a chunk (each chunk written by one ``writerows`` call)."""
    # A StringIO, whose write() is C: csv.writer calls it once per row.
    buffer = io.StringIO()
    writer = csv.writer(buffer)

    def take() -> bytes:
        data = buffer.getvalue().encode()
        buffer.seek(0)
        buffer.truncate()
        return data

    writer.writerow(COLUMNS)
    yield take()
    pending: list[list[Any]] = []
    for row in rows:
        pending.append(_csv_row(row))
        if len(pending) >= ROWS_PER_CHUNK:
            writer.writerows(pending)
            pending.clear()
            yield take()
    if pending:
        writer.writerows(pending)
        yield take()


def _csv_line(row: FlatRow) -> bytes:
    """One flat row as its CSV line, as ``csv_chunks`` writes it."""
    buffer = io.StringIO()
    csv.writer(buffer).writerow(_csv_row(row))
    return buffer.getvalue().encode()


def postgresql_csv_chunks(filters: HistoryFilters, viewer: Any) -> Iterator[bytes]:
    """The CSV export of what ``viewer`` sees under ``filters``, written by PostgreSQL
    (``audit.export_sql``): the same bytes as ``csv_chunks`` over ``history_flat_rows``."""
    buffer = io.StringIO()
    csv.writer(buffer).writerow(COLUMNS)
    yield buffer.getvalue().encode()
    yield from copy_csv_chunks(filters, viewer, _csv_line, using=connection.alias)


def jsonl_chunks(rows: Iterable[FlatRow]) -> Iterator[bytes]:
    """The JSON Lines export of ``rows``: one JSON object per line, in chunks."""
    lines: list[str] = []
    for row in rows:
        lines.append(json.dumps(export_record(row), ensure_ascii=False, default=str))
        if len(lines) >= ROWS_PER_CHUNK:
            yield ("\n".join(lines) + "\n").encode()
            lines.clear()
    if lines:
        yield ("\n".join(lines) + "\n").encode()


CHUNKERS: dict[str, Callable[[Iterable[FlatRow]], Iterator[bytes]]] = {
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
    body: Iterator[bytes]
    if fmt == "csv" and connection.vendor == "postgresql":
        body = postgresql_csv_chunks(filters, request.user)
    else:
        body = CHUNKERS[fmt](history_flat_rows(filters, request.user))
    response = StreamingHttpResponse(body, content_type=content_type)
    stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
    response["Content-Disposition"] = f'attachment; filename="audit-history-{stamp}.{extension}"'
    response["Cache-Control"] = "no-store"
    # A proxy must not buffer the whole export.
    response["X-Accel-Buffering"] = "no"
    return response
