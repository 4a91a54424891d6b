"""History exports: CSV and JSON Lines follow the filters and the viewer's scope, stream in
keyset batches, and are themselves logged."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest
from django.db import connection
from django.http import StreamingHttpResponse
from django.test.utils import CaptureQueriesContext

from audit.exports import COLUMNS
from audit.models import DirectoryAuditRecord, PortalEvent
from audit.selectors import flat as export_stream
from tests.audit.history_fixtures import action_request, entra_record, event, request_event
from tests.personas import PERSONAS, signed_in

pytestmark = pytest.mark.django_db

ADA = PERSONAS.agent
AARON = PERSONAS.privileged_agent
LEO = PERSONAS.lead
SAM = PERSONAS.standard_target
PRIYA = PERSONAS.privileged_target
T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
K = PortalEvent.Kind


@pytest.fixture
def rows() -> dict[str, Any]:
    r1 = action_request(ADA, SAM, created_at=T0, ticket="INC0001111")
    r2 = action_request(AARON, PRIYA, created_at=T0 + timedelta(hours=1), ticket="REQ-2222")
    return {
        "r1": r1,
        "r2": r2,
        "r1_requested": request_event(r1, K.ACTION_REQUESTED, T0, actor=ADA),
        "r1_entra": entra_record(T0 + timedelta(minutes=1), SAM, request=r1),
        "r1_done": request_event(r1, K.ACTION_SUCCEEDED, T0 + timedelta(minutes=2)),
        "r2_requested": request_event(r2, K.ACTION_REQUESTED, T0 + timedelta(hours=1), actor=AARON),
        "r2_entra": entra_record(T0 + timedelta(hours=1, minutes=1), PRIYA, request=r2),
    }


def _body(response: Any) -> str:
    assert isinstance(response, StreamingHttpResponse)
    assert response.streaming
    return b"".join(cast(Iterator[bytes], response.streaming_content)).decode()


def _csv(response: Any) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(_body(response))))


def test_csv_follows_the_filters_and_is_streamed(rows: dict[str, Any]) -> None:
    response = signed_in(LEO).get("/audit/export.csv", {"target": SAM.oid, "order": "asc"})
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    assert response["Content-Disposition"].startswith('attachment; filename="audit-history-')
    text = _body(response)
    header = next(csv.reader(io.StringIO(text)))
    assert tuple(header) == COLUMNS
    records = list(csv.DictReader(io.StringIO(text)))
    assert [(r["source"], r["kind"]) for r in records] == [
        ("portal", K.ACTION_REQUESTED),
        ("entra", "Admin deleted security info"),
        ("portal", K.ACTION_SUCCEEDED),
    ]
    entra = records[1]
    # Entra names the app; the export names the agent, ticket and verification behind it.
    assert entra["agent_name"] == ADA.display_name
    assert entra["ticket"] == "INC0001111"
    assert entra["request_id"] == str(rows["r1"].public_id)
    assert entra["verification"].startswith("Video call")
    assert entra["entra_id"] == rows["r1_entra"].entra_id
    assert entra["time"] == (T0 + timedelta(minutes=1)).isoformat()


def test_jsonl_follows_the_filters(rows: dict[str, Any]) -> None:
    response = signed_in(LEO).get("/audit/export.jsonl", {"source": "entra"})
    assert response["Content-Type"].startswith("application/x-ndjson")
    lines = [json.loads(line) for line in _body(response).splitlines()]
    assert [line["entra_id"] for line in lines] == [
        rows["r2_entra"].entra_id,
        rows["r1_entra"].entra_id,
    ]
    assert set(lines[0]) == set(COLUMNS)
    assert lines[0]["outside_portal"] is False
    assert lines[0]["agent_name"] == AARON.display_name


def test_export_is_logged_with_its_filters(rows: dict[str, Any]) -> None:
    before = PortalEvent.objects.filter(kind=K.AUDIT_EXPORT).count()
    _body(signed_in(LEO).get("/audit/export.csv", {"q": "REQ-2222", "source": "portal"}))
    logged = PortalEvent.objects.filter(kind=K.AUDIT_EXPORT).order_by("-seq").first()
    assert PortalEvent.objects.filter(kind=K.AUDIT_EXPORT).count() == before + 1
    assert logged is not None
    assert logged.actor_oid == LEO.oid
    assert logged.detail == {"format": "csv", "filters": {"q": "REQ-2222", "source": "portal"}}
    # ...and the log of exports is itself in the history.
    assert "Audit history exported" in signed_in(LEO).get("/audit/").content.decode()


def test_agent_exports_only_their_scope(rows: dict[str, Any]) -> None:
    records = _csv(signed_in(ADA).get("/audit/export.csv"))
    tickets = {r["ticket"] for r in records if r["ticket"]}
    assert tickets == {"INC0001111"}
    # A person the agent opens: the whole history of that person.
    records = _csv(signed_in(ADA).get("/audit/export.csv", {"target": PRIYA.oid}))
    assert {r["ticket"] for r in records} == {"REQ-2222"}


def test_agent_export_leaves_out_other_agents_evidence_and_reasons(rows: dict[str, Any]) -> None:
    r2 = rows["r2"]
    about_priya = {"target_id": PRIYA.oid, "target_name": PRIYA.display_name}
    at = T0 + timedelta(hours=2)
    event(
        K.VERIFICATION_MANUAL, at, actor=AARON, **about_priya,
        detail={"check": "Video call", "evidence": "AARON-EVIDENCE said so, trust me"},
    )  # fmt: skip
    event(
        K.ACTION_REQUESTED, at + timedelta(minutes=1), actor=AARON, action_request_id=r2.pk,
        **about_priya, detail={"kind": "tap", "reason": "AARON-REASON caller in a hurry"},
    )  # fmt: skip
    event(
        K.ACTION_APPROVED, at + timedelta(minutes=2), actor=LEO, action_request_id=r2.pk,
        **about_priya, detail={"comment": "LEO-COMMENT fine by me"},
    )  # fmt: skip
    event(
        K.VERIFICATION_MANUAL, at + timedelta(minutes=3), actor=ADA, **about_priya,
        detail={"check": "Call-back", "evidence": "ADA-EVIDENCE called back on the HR number"},
    )  # fmt: skip
    ada = _body(signed_in(ADA).get("/audit/export.jsonl", {"target": PRIYA.oid}))
    # Ada opened Priya: she reads Priya's whole history, but not what her colleagues wrote.
    for secret in ("AARON-EVIDENCE", "AARON-REASON", "LEO-COMMENT"):
        assert secret not in ada
    assert "ADA-EVIDENCE" in ada
    aarons = [
        (line["kind"], line["detail"])
        for line in map(json.loads, ada.splitlines())
        if line["agent_name"] == AARON.display_name and line["source"] == "portal"
    ]
    # The rest of the events stays: only the free text is left out.
    assert (K.VERIFICATION_MANUAL, {"check": "Video call"}) in aarons
    assert (K.ACTION_REQUESTED, {"kind": "tap"}) in aarons
    csv_text = _body(signed_in(ADA).get("/audit/export.csv", {"target": PRIYA.oid}))
    assert "AARON-EVIDENCE" not in csv_text and "ADA-EVIDENCE" in csv_text
    # A Lead reads everything.
    leo = _body(signed_in(LEO).get("/audit/export.jsonl", {"target": PRIYA.oid}))
    assert all(s in leo for s in ("AARON-EVIDENCE", "AARON-REASON", "LEO-COMMENT"))


def test_agent_export_keeps_the_comments_on_their_own_requests(rows: dict[str, Any]) -> None:
    r1 = rows["r1"]
    event(
        K.ACTION_APPROVED, T0 + timedelta(minutes=1), actor=LEO, action_request_id=r1.pk,
        target_id=SAM.oid, target_name=SAM.display_name, detail={"comment": "LEO-ON-ADA ok"},
    )  # fmt: skip
    assert "LEO-ON-ADA" in _body(signed_in(ADA).get("/audit/export.jsonl"))


def test_export_reads_in_keyset_batches_without_offset(
    rows: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(export_stream, "EXPORT_BATCH", 2)
    with CaptureQueriesContext(connection) as queries:
        # JSON Lines: the Python stream on every database (CSV on PostgreSQL is COPY's).
        records = _body(signed_in(LEO).get("/audit/export.jsonl")).splitlines()
    # Every row once, newest first, and the export event written before the stream began.
    assert len(records) == 6
    sql = [q["sql"] for q in queries.captured_queries]
    reads = [s for s in sql if 'FROM "audit_portalevent"' in s and 'AS "created_at"' in s]
    assert len(reads) >= 3, reads  # 4 portal events in batches of 2, plus the final short batch
    assert all("LIMIT 2" in s for s in reads)
    assert not [s for s in sql if "OFFSET" in s.upper()]


def test_spreadsheet_formulas_are_neutralised() -> None:
    r = action_request(ADA, SAM, created_at=T0, ticket="INC0009999")
    request_event(r, K.ACTION_REQUESTED, T0, actor=ADA)
    entra = entra_record(T0, SAM)
    DirectoryAuditRecord.objects.filter(pk=entra.pk).update(target_name='=HYPERLINK("x")')
    records = _csv(signed_in(LEO).get("/audit/export.csv", {"source": "entra"}))
    assert records[0]["target_name"] == '\'=HYPERLINK("x")'


def test_malformed_filters_give_400_and_log_nothing() -> None:
    response = signed_in(LEO).get("/audit/export.csv", {"since": "soon"})
    assert response.status_code == 400
    assert not PortalEvent.objects.filter(kind=K.AUDIT_EXPORT).exists()


def test_unknown_format_is_404() -> None:
    assert signed_in(LEO).get("/audit/export.xlsx").status_code == 404
