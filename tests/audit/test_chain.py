"""The portal event log: append-only guards, the hash chain, audit_verify, concurrency."""

from __future__ import annotations

import hashlib
import importlib
import itertools
import stat
import threading
import uuid
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import DatabaseError, connection, connections, transaction
from django.test import RequestFactory

from audit.chain import (
    CHAIN_HMAC,
    CHAIN_SHA256,
    GENESIS_HASH,
    canonical_json,
    chain_head,
    chain_verify,
    event_content,
    event_hash,
)
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
    with pytest.raises(CommandError, match="TRUNCATED: the chain ends at seq 2") as failure:
        call_command("audit_verify", anchor=anchor, stdout=StringIO())
    assert failure.value.returncode == 1


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


# --- the keyed chain (issue 10, point 7) ---------------------------------------------------------


def _sha256_chain_from(seq: int) -> None:
    """Recompute ``prev_hash``/``hash`` of every event from ``seq`` on with plain SHA-256, as
    someone who can write the table but holds no key can (the forgery of the security review)."""
    rows = list(PortalEvent.objects.filter(seq__gte=seq).order_by("seq"))
    prev = PortalEvent.objects.get(seq=seq - 1).hash if seq > 1 else GENESIS_HASH
    for row in rows:
        row.prev_hash = prev
        digest = hashlib.sha256((prev + canonical_json(event_content(row))).encode()).hexdigest()
        _tamper(
            "UPDATE audit_portalevent SET prev_hash = %s, hash = %s WHERE id = %s",
            [prev, digest, row.pk],
        )
        prev = digest


@pytest.mark.django_db
def test_forged_edit_with_every_hash_recomputed_is_reported() -> None:
    events = _record(6)
    _tamper("UPDATE audit_portalevent SET ticket = %s WHERE id = %s", ["INC0000666", events[1].pk])
    _sha256_chain_from(2)
    report = chain_verify()
    assert not report.intact
    assert report.broken_seq == 2 and "content does not match its hash" in report.problem
    with pytest.raises(CommandError, match=r"^BROKEN at seq 2") as failure:
        _verify()
    assert failure.value.returncode == 1


@pytest.mark.django_db
def test_the_hash_is_keyed_with_a_key_outside_the_database(
    settings: Any,
) -> None:
    (event,) = _record(1)
    stored = PortalEvent.objects.get(pk=event.pk)
    unkeyed = hashlib.sha256(
        (stored.prev_hash + canonical_json(event_content(stored))).encode()
    ).hexdigest()
    assert stored.hash != unkeyed
    assert stored.chain_version == CHAIN_HMAC
    assert chain_verify().intact
    # Another key (or none of the database's content) cannot reproduce the chain.
    settings.AUDIT_CHAIN_KEY = "another-key-" + "x" * 40
    report = chain_verify()
    assert report.broken_seq == 1 and "content does not match its hash" in report.problem


@pytest.mark.django_db
def test_demo_keeps_one_generated_key_in_its_var_folder(settings: Any) -> None:
    key_file = Path(settings.DEMO_SECRETS_DIR) / "audit-chain-key"
    assert key_file.read_text().strip() == settings.AUDIT_CHAIN_KEY
    assert len(settings.AUDIT_CHAIN_KEY) >= 32
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600


def _legacy_events(n: int) -> list[PortalEvent]:
    """Events as an installation before the keyed chain wrote them (chain_version 1, SHA-256)."""
    written = []
    seq, prev = chain_head()
    for i in range(n):
        event = PortalEvent(kind=PortalEvent.Kind.SIGN_IN, seq=seq + 1, prev_hash=prev)
        event.ticket = f"OLD{i}"
        event.chain_version = CHAIN_SHA256
        event.hash = event_hash(prev, event_content(event), version=CHAIN_SHA256)
        event.save()
        written.append(event)
        seq, prev = event.seq, event.hash
    return written


@pytest.mark.django_db
def test_upgraded_log_verifies_old_events_unkeyed_and_new_ones_keyed() -> None:
    _legacy_events(3)
    new = _record(2)
    assert [e.chain_version for e in PortalEvent.objects.order_by("seq")] == [1, 1, 1, 2, 2]
    assert new[0].prev_hash == PortalEvent.objects.get(seq=3).hash
    assert _verify().startswith("intact (5 events checked")


@pytest.mark.django_db
def test_an_unkeyed_event_after_keyed_ones_is_a_downgrade() -> None:
    events = _record(3)
    _tamper("UPDATE audit_portalevent SET chain_version = 1 WHERE id = %s", [events[2].pk])
    _sha256_chain_from(3)
    report = chain_verify()
    assert report.broken_seq == 3 and "downgraded" in report.problem


def test_app_role_cannot_change_or_empty_the_events_table(transactional_db: None) -> None:
    """PostgreSQL: the application role (README, Production) may read and add events but not
    UPDATE, DELETE, TRUNCATE or add a trigger; migration 0012 takes those rights away."""
    if connection.vendor != "postgresql":
        pytest.skip("SQLite has no roles: on SQLite the model guard and the keyed chain remain")
    import psycopg

    privileges = importlib.import_module("audit.migrations.0012_portalevent_app_role_privileges")
    (event,) = _record(1)
    role = f"portal_app_test_{uuid.uuid4().hex[:12]}"
    with connection.cursor() as cursor:
        cursor.execute(f"CREATE ROLE {role} LOGIN PASSWORD 'test-only'")
        try:
            # What docker/postgres/initdb/10-app-role.sh gives the role on every table (here
            # more: all rights), then what migration 0012 does as the owner.
            cursor.execute(f"GRANT USAGE ON SCHEMA public TO {role}")
            cursor.execute(f"GRANT ALL ON ALL TABLES IN SCHEMA public TO {role}")
            cursor.execute(f"GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO {role}")
            assert role in privileges.revoke_refused_privileges(connection)
            assert privileges.refused_privilege_holders(connection) == []
            params = connection.get_connection_params()
            app = psycopg.connect(
                dbname=params["dbname"],
                host=params.get("host") or "127.0.0.1",
                port=params.get("port") or 5432,
                user=role,
                password="test-only",
                autocommit=True,
            )
            try:
                refused = {
                    "UPDATE": f"UPDATE audit_portalevent SET ticket = 'x' WHERE id = {event.pk}",
                    "DELETE": f"DELETE FROM audit_portalevent WHERE id = {event.pk}",
                    "TRUNCATE": "TRUNCATE audit_portalevent CASCADE",
                    "TRIGGER": (
                        "CREATE TRIGGER t_test BEFORE INSERT ON audit_portalevent "
                        "FOR EACH ROW EXECUTE FUNCTION suppress_redundant_updates_trigger()"
                    ),
                    "DISABLE TRIGGER": "ALTER TABLE audit_portalevent DISABLE TRIGGER USER",
                }
                for what, sql in refused.items():
                    with pytest.raises(psycopg.errors.InsufficientPrivilege) as denied:
                        app.execute(sql)
                    # The role's rights refuse it, not (only) the append-only trigger.
                    message = str(denied.value)
                    assert "permission denied" in message or "must be owner" in message, what
                # Reading and appending still work (a row the chain check then rejects: the
                # role can add, never hide).
                app.execute("SELECT count(*) FROM audit_portalevent").fetchone()
                app.execute(
                    "INSERT INTO audit_portalevent (created_at, seq, prev_hash, hash, "
                    "chain_version, actor_name, actor_oid, kind, target_id, target_name, ticket, "
                    "user_agent, http_request_id, detail) VALUES (now(), 2, %s, %s, 2, '', '', "
                    "'sign_in', '', '', '', '', '', '{}')",
                    [event.hash, "0" * 64],
                )
            finally:
                app.close()
            assert PortalEvent.objects.count() == 2
            assert PortalEvent.objects.get(pk=event.pk).ticket == event.ticket
        finally:
            cursor.execute(f"DROP OWNED BY {role}")
            cursor.execute(f"DROP ROLE {role}")
