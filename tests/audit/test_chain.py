"""The portal event log: append-only guards, the hash chain, audit_verify, concurrency."""

from __future__ import annotations

import itertools
import threading
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import DatabaseError, connection, connections, transaction
from django.test import RequestFactory

from audit.chain import GENESIS_HASH, chain_verify, event_content, event_hash
from audit.models import AppendOnlyError, PortalEvent
from audit.services import portal_event_record
from tests.personas import PERSONAS, portal_user

SAM = PERSONAS.standard_target


def _record(n: int, **fields: Any) -> list[PortalEvent]:
    return [
        portal_event_record(
            kind=PortalEvent.Kind.ACTION_REQUESTED,
            target_id=SAM.oid,
            target_name=SAM.display_name,
            ticket=f"INC00{i:05d}",
            old_value={"state": "enabled"},
            new_value={"state": "disabled", "n": i},
            detail={"step": i, "naïve": "ünïcode"},
            **fields,
        )
        for i in range(n)
    ]


def _verify() -> str:
    out = StringIO()
    call_command("audit_verify", stdout=out)
    return out.getvalue()


def _tamper(sql: str, params: list[Any]) -> None:
    """Change the table behind the model's back, as someone with database access could. On
    PostgreSQL the append-only trigger would refuse, so it is switched off inside the test's
    transaction (rolled back with it)."""
    postgresql = connection.vendor == "postgresql"
    with connection.cursor() as cursor:
        if postgresql:
            # ALTER TABLE refuses while deferred foreign-key checks are queued: run them first.
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
            cursor.execute("ALTER TABLE audit_portalevent DISABLE TRIGGER USER")
        cursor.execute(sql, params)
        if postgresql:
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
            cursor.execute("ALTER TABLE audit_portalevent ENABLE TRIGGER USER")


@pytest.mark.django_db
def test_events_form_a_gapless_chain_that_verifies() -> None:
    agent = portal_user(PERSONAS.agent)
    events = _record(4, actor=agent)
    assert [e.seq for e in events] == [1, 2, 3, 4]
    assert events[0].prev_hash == GENESIS_HASH
    for before, after in itertools.pairwise(events):
        assert after.prev_hash == before.hash
    # The stored row (as the database returns it) hashes to what was stored.
    for stored in PortalEvent.objects.order_by("seq"):
        assert event_hash(stored.prev_hash, event_content(stored)) == stored.hash
    report = chain_verify()
    assert report.intact and report.checked == 4 and report.head_hash == events[-1].hash
    assert _verify().startswith("intact (4 events checked")


@pytest.mark.django_db
def test_empty_log_is_intact() -> None:
    assert _verify().startswith("intact (0 events checked")


@pytest.mark.django_db
def test_model_refuses_update_and_delete() -> None:
    (event,) = _record(1)
    event.ticket = "INC9999999"
    with pytest.raises(AppendOnlyError):
        event.save()
    with pytest.raises(AppendOnlyError):
        event.delete()
    with pytest.raises(AppendOnlyError):
        PortalEvent.objects.filter(pk=event.pk).update(ticket="x")
    with pytest.raises(AppendOnlyError):
        PortalEvent.objects.all().delete()
    assert PortalEvent.objects.get(pk=event.pk).ticket == "INC0000000"


@pytest.mark.django_db
def test_changed_row_is_reported_as_the_first_broken_link() -> None:
    events = _record(5)
    _tamper("UPDATE audit_portalevent SET ticket = %s WHERE id = %s", ["INC0000666", events[2].pk])
    report = chain_verify()
    assert not report.intact
    assert (report.broken_seq, report.broken_id, report.checked) == (3, events[2].pk, 2)
    assert "content does not match its hash" in report.problem
    with pytest.raises(CommandError) as failure:
        _verify()
    assert failure.value.returncode == 1
    assert str(failure.value).startswith("BROKEN at seq 3 (event id")


@pytest.mark.django_db
def test_rehashed_row_still_breaks_the_next_link() -> None:
    # A tamperer who also recomputes the row's own hash is caught at the next event.
    events = _record(3)
    row = PortalEvent.objects.get(pk=events[1].pk)
    row.detail = {"step": 1, "changed": True}
    forged = event_hash(row.prev_hash, event_content(row))
    _tamper(
        "UPDATE audit_portalevent SET detail = %s, hash = %s WHERE id = %s",
        ['{"step": 1, "changed": true}', forged, row.pk],
    )
    report = chain_verify()
    assert report.broken_seq == 3 and "prev_hash" in report.problem


@pytest.mark.django_db
def test_removed_row_is_reported() -> None:
    events = _record(4)
    _tamper("DELETE FROM audit_portalevent WHERE id = %s", [events[1].pk])
    report = chain_verify()
    assert report.broken_seq == 3 and "expected seq 2, found 3" in report.problem


@pytest.mark.django_db
def test_anchor_detects_removed_newest_events() -> None:
    events = _record(3)
    anchor = f"{events[2].seq}:{events[2].hash}"
    assert _verify().startswith("intact (3 events checked")
    out = StringIO()
    call_command("audit_verify", anchor=anchor, stdout=out)
    assert out.getvalue().startswith("intact")
    _tamper("DELETE FROM audit_portalevent WHERE id = %s", [events[2].pk])
    assert chain_verify().intact  # the chain alone cannot see a shortened tail
    with pytest.raises(CommandError, match="anchor seq 3 is missing"):
        call_command("audit_verify", anchor=anchor, stdout=StringIO())


@pytest.mark.django_db
def test_postgresql_trigger_refuses_update_and_delete() -> None:
    if connection.vendor != "postgresql":
        pytest.skip("SQLite has no trigger: the model guard is its only protection")
    (event,) = _record(1)
    for sql in (
        "UPDATE audit_portalevent SET ticket = 'x' WHERE id = %s",
        "DELETE FROM audit_portalevent WHERE id = %s",
    ):
        with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute(sql, [event.pk])


@pytest.mark.django_db
def test_event_records_who_where_and_the_http_request_id() -> None:
    agent = portal_user(PERSONAS.agent)
    http = RequestFactory().post(
        "/x", REMOTE_ADDR="2001:0db8:0000:0000:0000:0000:0000:0001", HTTP_USER_AGENT="Firefox/1"
    )
    http_with_id = RequestFactory().post("/y", HTTP_X_REQUEST_ID="req-12345678")
    first = portal_event_record(kind=PortalEvent.Kind.SIGN_IN, actor=agent, request=http)
    second = portal_event_record(
        kind=PortalEvent.Kind.ACTION_REQUESTED,
        actor=agent,
        request=http,
        action_request_id=42,
        target_id=SAM.oid,
        ticket="INC0001234",
        old_value=("a", 1),
        new_value={"b": 2},
    )
    third = portal_event_record(kind=PortalEvent.Kind.SIGN_OUT, request=http_with_id)
    stored = PortalEvent.objects.get(pk=second.pk)
    assert stored.actor_oid == PERSONAS.agent.oid and stored.actor_name == "Ada Agent"
    assert str(stored.source_ip) == "2001:db8::1" and stored.user_agent == "Firefox/1"
    assert stored.request == 42 and stored.ticket == "INC0001234"
    assert stored.old_value == ["a", 1] and stored.new_value == {"b": 2}
    # One HTTP request, one id; a well-formed X-Request-ID is kept as given.
    assert first.http_request_id == stored.http_request_id != ""
    assert third.http_request_id == "req-12345678"
    assert chain_verify().intact


def test_concurrent_writers_keep_the_chain_linear(transactional_db: None) -> None:
    errors: list[BaseException] = []
    per_thread, threads = 15, 6

    def write() -> None:
        try:
            for _ in range(per_thread):
                # Inside a longer transaction, as the services call it.
                with transaction.atomic():
                    portal_event_record(kind=PortalEvent.Kind.ACTION_STEP, detail={"t": 1})
        except BaseException as exc:
            errors.append(exc)
        finally:
            connections.close_all()

    workers = [threading.Thread(target=write) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert errors == []
    seqs = list(PortalEvent.objects.order_by("seq").values_list("seq", flat=True))
    assert seqs == list(range(1, per_thread * threads + 1))
    report = chain_verify()
    assert report.intact and report.checked == per_thread * threads
