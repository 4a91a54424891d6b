"""The CSV export PostgreSQL writes (audit.export_sql) is byte for byte the Python writer's
(audit.exports.csv_chunks over audit.selectors.history_flat_rows), on rows with every column
filled: requests with and without verification, linked Entra records, role changes (their
events and Entra's record, linked or found by the rule), other agents' free text withheld in an
Agent's scope, formula cells, quotes, commas, line breaks, non-ASCII text, nested details.

PostgreSQL only: run with ``DATABASE_URL=postgres://...`` (skipped on SQLite, where the export
is Python's alone).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from unittest import mock

import pytest
from django.db import connection

from audit import export_sql
from audit.exports import csv_chunks, export_response, postgresql_csv_chunks
from audit.models import DirectoryAuditRecord, PortalEvent
from audit.selectors import HistoryFilters, history_flat_rows
from audit.selectors.flat import flat_rows_by_key
from audit.services import portal_event_record
from mfa.models import ActionRequest, Status
from roles.events import event_detail, event_fields
from roles.models import HoldKind, PrincipalType, RoleChange, RoleChangeRequest
from tests.audit.history_fixtures import action_request, at, entra_record, event, request_event
from tests.personas import PERSONAS, portal_user

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(connection.vendor != "postgresql", reason="the SQL export is PostgreSQL's"),
]

K = PortalEvent.Kind
ADA, AARON, LEO, ANA = PERSONAS.agent, PERSONAS.privileged_agent, PERSONAS.lead, PERSONAS.admin
SAM, PRIYA = PERSONAS.standard_target, PERSONAS.privileged_target
T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
AUTH_ADMIN_TEMPLATE = "c4e39bd9-1100-46d3-8c65-fb160da0071f"


def _role_change(started: datetime, *, linked: bool) -> RoleChangeRequest:
    """Ana gives Sam a role: three portal events, Entra's record (linked by the flow or not)."""
    record = entra_record(started + timedelta(seconds=5), SAM, activity="Add member to role")
    row = RoleChangeRequest.objects.create(
        change=RoleChange.ADD,
        role_template_id=AUTH_ADMIN_TEMPLATE,
        role_name="Authentication Administrator",
        principal_id=SAM.oid,
        principal_type=PrincipalType.USER,
        principal_name=SAM.display_name,
        principal_upn=SAM.upn,
        hold_kind=HoldKind.ACTIVE_PERMANENT,
        justification="Joins the identity operations rota.",
        ticket="=CHG0042",
        requester=portal_user(ANA),
        requester_name=ANA.display_name,
        idempotency_key=uuid.uuid4().hex,
        status=Status.SUCCEEDED,
        created_at=started,
        started_at=started,
        finished_at=started + timedelta(seconds=10),
        entra_event_ids=[record.entra_id] if linked else [],
    )
    for kind, moment, actor in (
        (K.ROLE_CHANGE_REQUESTED, started, ANA),
        (K.ROLE_CHANGE_STARTED, started + timedelta(seconds=1), None),
        (K.ROLE_CHANGE_SUCCEEDED, started + timedelta(seconds=10), None),
    ):
        with at(moment):
            portal_event_record(
                kind=kind,
                actor=portal_user(actor) if actor else None,
                detail={**event_detail(row), "comment": "ANA-COMMENT"},
                **event_fields(row),
            )
    return row


@pytest.fixture
def history() -> dict[str, Any]:
    """A history with every column filled and the cells that need care."""
    r1 = action_request(ADA, SAM, created_at=T0, ticket="INC0001111")
    r2 = action_request(
        AARON, PRIYA, created_at=T0 + timedelta(hours=1), ticket='+REQ "2222", urgent',
        decided_by=LEO, status=Status.REJECTED,
    )  # fmt: skip
    r3 = action_request(ADA, PRIYA, created_at=T0 + timedelta(hours=2), verified=False)
    ActionRequest.objects.filter(pk=r3.pk).update(requester_name="@Ada\nsecond line")
    about_priya = {"target_id": PRIYA.oid, "target_name": '=HYPERLINK("x"),\tPriya'}
    # Requests, their events (some at the same instant as Entra's), and linked Entra records.
    request_event(r1, K.ACTION_REQUESTED, T0, actor=ADA)
    entra_record(T0, SAM, request=r1)
    entra_record(T0 + timedelta(seconds=1, microseconds=250), SAM, request=r1, result="failure")
    entra_record(T0 + timedelta(seconds=2), SAM, request=r1, initiated_by=ADA)
    request_event(r1, K.ACTION_SUCCEEDED, T0 + timedelta(minutes=2))
    request_event(r2, K.ACTION_REQUESTED, T0 + timedelta(hours=1), actor=AARON)
    entra_record(T0 + timedelta(hours=1, minutes=1), PRIYA, request=r2)
    request_event(r3, K.ACTION_REQUESTED, T0 + timedelta(hours=2, microseconds=1), actor=ADA)
    # Details: withheld keys at any depth, key order, escapes, non-ASCII, falsy ones.
    moment = T0 + timedelta(hours=3)
    details: list[Any] = [
        {"check": "Video call", "evidence": "AARON-EVIDENCE said so"},
        {"b": 1, "ab": [1, "two", None, True, {"reason": "NESTED-REASON", "z": -3}], "é": "ü"},
        {"kind": "tap", "reason": "AARON-REASON", "note": 'say "hi", then\nleave\t\\ \u0001'},
        {"reason": "only a reason"},
        {"list": [[1, 2], []], "empty": {}, "n": 12345678901234567890},
        {"deep": {"deeper": {"deepest": {"x": 1}}}},
        {"ratio": 0.5, "also": 1.0},
        {"text": "version 1.2"},
        {},
        [],
        "a string",
    ]
    for n, detail in enumerate(details):
        event(
            K.VERIFICATION_MANUAL, moment + timedelta(seconds=n), actor=AARON,
            detail=detail, **about_priya,
        )  # fmt: skip
    event(
        K.ACTION_APPROVED, moment + timedelta(minutes=1), actor=LEO, action_request_id=r2.pk,
        detail={"comment": "LEO-COMMENT"}, **about_priya,
    )  # fmt: skip
    event(
        K.VERIFICATION_MANUAL, moment + timedelta(minutes=2), actor=ADA, detail={"evidence": "ADA"},
        **about_priya,
    )  # fmt: skip
    # An event naming a request that does not exist, and a sign-in without a target.
    event(K.ACTION_STEP, moment + timedelta(minutes=3), action_request_id=987654)
    event(K.SIGN_IN, moment + timedelta(minutes=4), actor=ADA, detail={"ip": "-1"})
    # Entra records outside the portal, by a person, with a formula in a name.
    outside = entra_record(
        moment + timedelta(minutes=5), PRIYA, outside_portal=True, initiated_by=AARON,
        activity="Update user",
    )  # fmt: skip
    DirectoryAuditRecord.objects.filter(pk=outside.pk).update(
        target_name='-Priya, "the" privileged', result_reason="\rCR first"
    )
    entra_record(moment + timedelta(minutes=6), None, activity="Remove member from role")
    # Role changes: one linked by the flow, one found by the rule.
    _role_change(T0 + timedelta(hours=5), linked=True)
    _role_change(T0 + timedelta(hours=6), linked=False)
    return {"r1": r1, "r2": r2, "r3": r3}


def _both(params: dict[str, str], viewer: Any) -> tuple[bytes, bytes]:
    filters = HistoryFilters.from_params(params)
    python = b"".join(csv_chunks(history_flat_rows(filters, viewer)))
    sql = b"".join(postgresql_csv_chunks(filters, viewer))
    return python, sql


@pytest.mark.parametrize(
    ("who", "params"),
    [
        (LEO, {}),
        (LEO, {"order": "asc"}),
        (LEO, {"source": "entra"}),
        (LEO, {"source": "portal", "target": PRIYA.oid}),
        (LEO, {"q": "priya"}),
        (LEO, {"agent": ADA.oid}),
        (LEO, {"outcome": "failure"}),
        (ADA, {}),
        (ADA, {"target": PRIYA.oid}),
        (AARON, {"order": "asc"}),
        (ANA, {"target": SAM.oid}),
    ],
)
def test_sql_export_writes_the_python_bytes(
    history: dict[str, Any], who: Any, params: dict[str, str]
) -> None:
    python, sql = _both(params, portal_user(who))
    assert python.count(b"\r\n") > 1
    assert sql == python


def test_sql_export_of_one_request(history: dict[str, Any]) -> None:
    python, sql = _both({"request": str(history["r1"].public_id)}, portal_user(LEO))
    assert python.count(b"\r\n") == 6
    assert sql == python


def test_an_agent_does_not_read_colleagues_free_text_in_the_sql_export(
    history: dict[str, Any],
) -> None:
    _python, sql = _both({"target": PRIYA.oid}, portal_user(ADA))
    for secret in (b"AARON-EVIDENCE", b"AARON-REASON", b"LEO-COMMENT", b"NESTED-REASON"):
        assert secret not in sql
    assert b"Video call" in sql


def test_sql_leaves_to_python_only_what_it_cannot_write(history: dict[str, Any]) -> None:
    # The role changes' rows (6 events, 2 records), the deep detail and the decimal ones (3).
    seen: list[tuple[int, int]] = []
    real = flat_rows_by_key

    def spy(keys: list[tuple[int, int]], *args: Any, **kwargs: Any) -> Any:
        seen.extend(keys)
        return real(keys, *args, **kwargs)

    with mock.patch("audit.export_sql.flat_rows_by_key", spy):
        python, sql = _both({}, portal_user(LEO))
    assert sql == python
    assert len(seen) == 6 + 3 + 3


def test_export_response_on_postgresql_is_the_sql_export(history: dict[str, Any]) -> None:
    from django.test import RequestFactory

    request = RequestFactory().get("/audit/export.csv")
    request.user = portal_user(LEO)
    with mock.patch("audit.exports.copy_csv_chunks", wraps=export_sql.copy_csv_chunks) as c:
        response = export_response(request=request, filters=HistoryFilters(), fmt="csv")
        body = b"".join(response.streaming_content)  # type: ignore[arg-type]
    assert c.called
    # The export's own event is recorded first, and is in the export.
    assert body.count(b"audit_export") == 1
    python = b"".join(csv_chunks(history_flat_rows(HistoryFilters(), request.user)))
    assert body == python


@pytest.mark.parametrize("batch", [1, 2, 3, 7])
def test_sql_export_in_small_batches_writes_the_python_bytes(
    history: dict[str, Any], batch: int
) -> None:
    # Batch boundaries fall between rows at the same instant (T0: a portal event and an Entra
    # record), inside the role changes' rows and on the rows left to Python.
    for who, params in ((LEO, {}), (LEO, {"order": "asc"}), (ADA, {"target": PRIYA.oid})):
        with mock.patch.object(export_sql, "COPY_BATCH", batch):
            python, sql = _both(params, portal_user(who))
        assert sql == python


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(("chunk", "group", "waiting"), [(1000, 25, 2), (2, 1, 0), (3, 2, 1)])
def test_streamed_sql_export_writes_the_python_bytes(
    history: dict[str, Any], chunk: int, group: int, waiting: int
) -> None:
    # Outside a transaction (a request): one COPY, the rows left to Python read on a worker
    # thread's own connection while it goes on; chunks and groups small enough that rows left
    # to Python fall in several groups and at their edges.
    assert not connection.in_atomic_block
    seen: list[tuple[int, int]] = []
    real = flat_rows_by_key

    def spy(keys: list[tuple[int, int]], *args: Any, **kwargs: Any) -> Any:
        seen.extend(keys)
        return real(keys, *args, **kwargs)

    with (
        mock.patch.object(export_sql, "ROWS_PER_CHUNK", chunk),
        mock.patch.object(export_sql, "GROUP_CHUNKS", group),
        mock.patch.object(export_sql, "GROUPS_WAITING", waiting),
        mock.patch("audit.export_sql.flat_rows_by_key", spy),
    ):
        for who, params in ((LEO, {}), (LEO, {"order": "asc"}), (ADA, {"target": PRIYA.oid})):
            python, sql = _both(params, portal_user(who))
            assert sql == python
    assert len(seen) >= 12


@pytest.mark.parametrize(
    "rows",
    [
        [b"2026,a\n", b"#0:7,x\n", b"2026,b\n"],
        [b"#1:3,x\n", b"2026,a\n", b"2026,b\n", b"#0:12,y\n"],
        [b"#1:3,x\n", b"#0:4,y\n"],
        [b"2026,a\n", b"#0:5,x\n", b"#1:6,y\n", b"2026,b\n"],
        [b"2026,a\n", b'2026,"two\nlines"\n', b"#0:8,x\n"],
        [b"2026,a\n", b"2026,b\n"],
    ],
)
def test_a_chunk_is_cut_at_its_markers_into_the_python_lines(rows: list[bytes]) -> None:
    # Runs of real rows are converted at once, each marker left as b"" with its key in order;
    # joined with the markers' own lines, the chunk is the lines row by row.
    wanted: list[tuple[int, int]] = []
    piece = export_sql._piece([memoryview(r) for r in rows], wanted)
    markers = [r for r in rows if r.startswith(b"#")]
    assert wanted == [export_sql._marker_key(m) for m in markers]
    parts = [piece] if isinstance(piece, bytes) else piece
    assert parts.count(b"") == len(markers)
    lines = iter(m[:-1] + b"\r\n" for m in markers)
    written = b"".join(p or next(lines) for p in parts)
    assert written == b"".join(r[:-1] + b"\r\n" for r in rows)
