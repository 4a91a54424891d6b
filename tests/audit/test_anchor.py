"""Anchoring the event chain's head outside the database, and audit_verify against the anchors:
removing the newest events, or rewriting the chain, is reported (issue 10, point 7)."""

from __future__ import annotations

import json
import logging
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection

from audit.models import PortalEvent
from audit.services import portal_event_record
from tests.audit.test_chain import _tamper

pytestmark = pytest.mark.django_db


@pytest.fixture
def anchor_file(settings: Any, tmp_path: Path) -> Path:
    """This test's own anchor file (the run's var folder is shared by every test)."""
    path = tmp_path / "audit-anchors.jsonl"
    settings.AUDIT_ANCHOR_FILE = str(path)
    settings.AUDIT_ANCHOR_LOG = True
    return path


def _record(n: int) -> list[PortalEvent]:
    return [
        portal_event_record(
            kind=PortalEvent.Kind.ACTION_STEP, ticket=f"INC{i:07d}", detail={"i": i}
        )
        for i in range(n)
    ]


def _anchor() -> str:
    out = StringIO()
    call_command("audit_anchor", stdout=out)
    return out.getvalue()


def _verify() -> str:
    out = StringIO()
    call_command("audit_verify", stdout=out, stderr=StringIO())
    return out.getvalue()


def _verify_fails() -> str:
    with pytest.raises(CommandError) as failure:
        call_command("audit_verify", stdout=StringIO(), stderr=StringIO())
    assert failure.value.returncode == 1
    return str(failure.value)


def _delete_newest(n: int) -> None:
    newest = list(PortalEvent.objects.order_by("-seq").values_list("pk", flat=True)[:n])
    for pk in newest:
        _tamper("DELETE FROM audit_portalevent WHERE id = %s", [pk])


def test_the_beat_task_appends_the_head_to_the_file_and_the_log(
    anchor_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from audit.tasks import audit_chain_anchor

    events = _record(3)
    with caplog.at_level(logging.INFO, logger="audit.anchor"):
        result = audit_chain_anchor()
    assert result == {"seq": 3, "hash": events[-1].hash}
    (line,) = anchor_file.read_text().splitlines()
    anchor = json.loads(line)
    assert anchor["seq"] == 3 and anchor["hash"] == events[-1].hash
    assert anchor["keyed_from"] == 1 and len(anchor["mac"]) == 64
    assert anchor["head_at"].startswith(str(events[-1].created_at.date()))
    (logged,) = [r for r in caplog.records if r.name == "audit.anchor"]
    assert line in logged.getMessage()
    # The next anchor appends; the file is never rewritten.
    _record(1)
    assert _anchor().startswith("anchored seq 4")
    lines = anchor_file.read_text().splitlines()
    assert lines[0] == line and json.loads(lines[1])["seq"] == 4
    assert _verify().splitlines()[1].startswith("anchors: 2 checked; the latest, seq 4")


def test_removing_the_newest_events_is_reported_as_truncation(anchor_file: Path) -> None:
    _record(25)
    _anchor()
    _delete_newest(20)
    message = _verify_fails()
    assert message.startswith("TRUNCATED: the chain ends at seq 5, but the anchor of ")
    assert "recorded seq 25" in message and "at least 20 of the newest events" in message


def test_a_rewrite_by_someone_holding_the_key_is_reported(anchor_file: Path) -> None:
    from audit.chain import event_content, event_hash

    events = _record(4)
    _anchor()
    # Forge event 2 and recompute every later hash with the real key: every link holds.
    _tamper("UPDATE audit_portalevent SET ticket = 'INC0000666' WHERE id = %s", [events[1].pk])
    prev = events[0].hash
    for row in PortalEvent.objects.filter(seq__gte=2).order_by("seq"):
        row.prev_hash = prev
        digest = event_hash(prev, event_content(row))
        _tamper(
            "UPDATE audit_portalevent SET prev_hash = %s, hash = %s WHERE id = %s",
            [prev, digest, row.pk],
        )
        prev = digest
    message = _verify_fails()
    assert message.startswith("REWRITTEN at seq 4 (event id ")
    assert "differs from the anchor of " in message


def test_downgrading_the_whole_chain_to_unkeyed_hashes_is_reported(anchor_file: Path) -> None:
    from tests.audit.test_chain import _sha256_chain_from

    _record(3)
    _anchor()
    _tamper("UPDATE audit_portalevent SET chain_version = 1", [])
    _sha256_chain_from(1)
    message = _verify_fails()
    assert message.startswith("BROKEN at seq 1") and "keyed from seq 1" in message


def test_a_forged_anchor_line_is_refused(anchor_file: Path) -> None:
    _record(2)
    _anchor()
    _delete_newest(1)
    # Someone who can append to the file but has no key adds a head that fits the shorter chain.
    head = PortalEvent.objects.order_by("-seq").first()
    assert head is not None
    forged = {
        "seq": head.seq,
        "hash": head.hash,
        "head_at": None,
        "anchored_at": "2030-01-01T00:00:00+00:00",
        "keyed_from": 1,
        "mac": "0" * 64,
    }
    with anchor_file.open("a") as handle:
        handle.write(json.dumps(forged) + "\n")
    message = _verify_fails()
    assert message.startswith("BAD ANCHOR in ") and ":2: its mac does not match" in message


def test_the_task_refuses_to_anchor_a_chain_that_lost_its_anchored_head(
    anchor_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _record(5)
    _anchor()
    _delete_newest(2)
    with caplog.at_level(logging.ERROR, logger="audit.anchor"), pytest.raises(CommandError) as no:
        _anchor()
    assert str(no.value).startswith("not anchored: TRUNCATED: the chain ends at seq 3")
    assert len(anchor_file.read_text().splitlines()) == 1
    assert any("NOT anchored" in r.getMessage() for r in caplog.records)


def test_verify_without_an_anchor_says_so(anchor_file: Path) -> None:
    _record(1)
    err = StringIO()
    call_command("audit_verify", stdout=StringIO(), stderr=err)
    assert "no anchor in" in err.getvalue() and "manage.py audit_anchor" in err.getvalue()


def test_an_empty_chain_can_be_anchored_and_its_later_removal_seen(anchor_file: Path) -> None:
    assert _anchor().startswith("anchored seq 0")
    _record(2)
    _anchor()
    assert _verify().startswith("intact (2 events checked")
    if connection.vendor == "postgresql":
        _tamper("DELETE FROM audit_portalevent", [])
    else:
        _delete_newest(2)
    assert _verify_fails().startswith("TRUNCATED: the chain ends at seq 0")


@pytest.mark.parametrize(
    ("name", "changes"),
    [
        ("AUDIT_CHAIN_KEY", {"AUDIT_CHAIN_KEY": None}),
        ("AUDIT_CHAIN_KEY", {"AUDIT_CHAIN_KEY": "short"}),
        ("AUDIT_ANCHOR_FILE", {"AUDIT_ANCHOR_FILE": "var/anchors.jsonl"}),
    ],
)
def test_production_needs_a_chain_key_and_an_absolute_anchor_file(
    name: str, changes: dict[str, str | None]
) -> None:
    from tests.test_settings import PRODUCTION, last_line, start

    result = start({**PRODUCTION, **changes})
    assert result.returncode != 0, f"started with a bad {name}"
    assert last_line(result).startswith(f"portal.config.ConfigError: {name} "), result.stderr
