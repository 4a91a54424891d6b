"""The audit benchmarks' PostgreSQL database: created, migrated, loaded, dropped.

Used by bench/audit_history.py and bench/audit_export.py (run alone it only says so: ``make
bench`` runs every bench/*.py). ``bench_database()`` creates a fresh database named
``portal_bench_<pid>`` on the server of ``DATABASE_URL`` (default: the local PostgreSQL with
trust authentication, as .ci/run uses), points Django at it, applies the real migrations (so
the real indexes are measured), loads the data with COPY, runs ANALYZE, and drops the database
on exit.

The data: ``ENTRA_RECORDS`` Entra records (1,000,000) over two years, for ``TARGETS`` people,
a fifth of them from the portal's app and linked to one of ``REQUESTS`` requests, 1% outside the
portal, 3% failures; and ``PORTAL_EVENTS`` portal events (200,000), five per request
(requested, started, step, outcome) plus sign-ins, with ``seq``/``prev_hash``/``hash`` filled by
``audit.chain.event_hash`` over the same content ``audit.chain.event_content`` hashes.
"""

from __future__ import annotations

import contextlib
import os
import random
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

ENTRA_RECORDS = int(os.environ.get("BENCH_ENTRA_RECORDS", "1000000"))
PORTAL_EVENTS = int(os.environ.get("BENCH_PORTAL_EVENTS", "200000"))
REQUESTS = PORTAL_EVENTS // 5
TARGETS = 20_000
AGENTS = 40
DEFAULT_SERVER_URL = "postgres://postgres@127.0.0.1:5432/postgres"
START = datetime(2024, 6, 1, tzinfo=UTC)
SPAN = timedelta(days=730)
ACTIVITIES = (
    ("Admin deleted security info", "UserManagement", 40),
    ("Admin registered security info", "UserManagement", 10),
    ("User registered security info", "UserManagement", 20),
    ("User deleted security info", "UserManagement", 5),
    ("Update StsRefreshTokenValidFrom Timestamp", "UserManagement", 15),
    ("Update user", "UserManagement", 7),
    ("Add member to role", "RoleManagement", 2),
    ("Remove member from role", "RoleManagement", 1),
)
PORTAL_APP = ("3c1e9f2a-7d4b-4e6a-8f1c-0a9b8c7d6e5f", "MFA helpdesk portal")
FIRST = ("Ann", "Bob", "Chen", "Dana", "Eve", "Farid", "Gita", "Hugo", "Ines", "Jon", "Kaya")
LAST = ("Smith", "Okafor", "Novak", "Larsen", "Silva", "Tanaka", "Meyer", "Haddad", "Kowalski")


@dataclass(frozen=True)
class BenchData:
    """What was loaded, for the benchmarks to pick filter values from."""

    agents: list[tuple[int, str, str]]  # (user pk, oid, name)
    targets: list[tuple[str, str, str]]  # (oid, name, upn)
    request_public_ids: list[str]
    lead_user_id: int
    load_seconds: float


def server_url() -> str:
    """The PostgreSQL server to use (DATABASE_URL, else the local default)."""
    url = os.environ.get("DATABASE_URL") or DEFAULT_SERVER_URL
    if urlsplit(url).scheme not in ("postgres", "postgresql", "pgsql"):
        raise SystemExit(f"the audit benchmarks need PostgreSQL; DATABASE_URL is {url!r}")
    return url


def _with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, parts.fragment))


def _conninfo(url: str) -> str:
    return url.replace("postgres://", "postgresql://", 1)


def prepare_environment(database_url: str) -> Path:
    """The environment Django's settings need (the demo tenant's values: nothing here calls
    Entra), pointing at ``database_url``. Returns the var folder it made."""
    from portal.devrun import demo_environment

    var_dir = Path(tempfile.mkdtemp(prefix="portal-bench-"))
    os.environ.update(demo_environment(emulator_port=8443, var_dir=var_dir))
    os.environ["PORTAL_VAR_DIR"] = str(var_dir)
    os.environ["DATABASE_URL"] = database_url
    # The history and the exports never touch Redis; settings only insist that it is named.
    os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/15")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
    os.environ["LOG_LEVEL"] = "WARNING"
    return var_dir


@contextlib.contextmanager
def created_database() -> Iterator[str]:
    """A new, empty database on the server; dropped on exit. Yields its URL."""
    import psycopg

    server = server_url()
    name = f"portal_bench_{os.getpid()}"
    with psycopg.connect(_conninfo(server), autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield _with_database(server, name)
    finally:
        from django.db import connections

        connections.close_all()
        with psycopg.connect(_conninfo(server), autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _weighted_activities(rng: random.Random) -> list[tuple[str, str]]:
    pool: list[tuple[str, str]] = []
    for activity, category, weight in ACTIVITIES:
        pool += [(activity, category)] * weight
    rng.shuffle(pool)
    return pool


def _sequence_set(name: str, value: int) -> None:
    """Move a table's id sequence past the ids COPY wrote (after the COPY has ended)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT setval(%s, %s)", [name, max(value, 1)])


def load(*, quiet: bool = False) -> BenchData:
    """Migrate the (empty) database Django points at and load the benchmark data."""
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.db import connection
    from django.utils import timezone

    from accounts.services import portal_profile_sync
    from audit.chain import GENESIS_HASH, canonical_json, event_hash

    started = time.perf_counter()
    call_command("migrate", verbosity=0)
    rng = random.Random(20260301)
    user_model = get_user_model()

    def person(claims_role: str | None, n: int) -> tuple[Any, str, str]:
        oid = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        name = f"{FIRST[n % len(FIRST)]} {LAST[(n // len(FIRST)) % len(LAST)]} {n}"
        user = user_model.objects.create(username=oid)
        portal_profile_sync(
            user=user,
            claims={
                "oid": oid,
                "name": name,
                "preferred_username": f"agent{n}@contoso-demo.onmicrosoft.com",
                "roles": [claims_role] if claims_role else [],
            },
        )
        return user, oid, name

    agents = [person("Helpdesk.Agent", n) for n in range(AGENTS)]
    lead, _lead_oid, _lead_name = person("Helpdesk.Lead", AGENTS)
    targets = []
    for n in range(TARGETS):
        oid = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        name = f"{FIRST[n % len(FIRST)]} {LAST[(n * 7) % len(LAST)]} {n}"
        targets.append((oid, name, f"user{n}@contoso-demo.onmicrosoft.com"))

    kinds = ("reregister", "reregister", "reregister", "revoke_sessions", "issue_tap")
    outcomes = ("succeeded",) * 17 + ("partially_succeeded", "failed", "failed")
    requests: list[tuple[int, datetime, int, tuple[str, str, str], str, str]] = []
    public_ids: list[str] = []
    with (
        connection.cursor() as cursor,
        cursor.copy(
            "COPY mfa_actionrequest (id, public_id, kind, status, requester_id,"
            " requester_name, target_id, target_upn, target_name, target_tier, target_roles,"
            " reason, ticket, params, idempotency_key, decided_by_name, decision_comment,"
            " created_at, updated_at, attempts,"
            " steps, result, error_code, error_message, error_request_id, completed_writes,"
            " pending_writes, notify_to, finished_at, decided_by_id,"
            " escalated_to, take_comment, taken_by_name) FROM STDIN"
        ) as copy,
    ):
        for n in range(1, REQUESTS + 1):
            at = START + SPAN * rng.random()
            user, _oid, name = agents[int(rng.paretovariate(1.3)) % AGENTS]
            target = targets[rng.randrange(TARGETS)]
            tier = "privileged" if rng.random() < 0.05 else "standard"
            status = rng.choice(outcomes)
            public_id = str(uuid.uuid4())
            public_ids.append(public_id)
            ticket = f"INC{1000000 + n}"
            copy.write_row(
                (
                    n, public_id, rng.choice(kinds), status, user.pk, name,
                    target[0], target[2], target[1], tier, "[]",
                    "Caller lost their phone", ticket, "{}", public_id,
                    "Leo Lead" if tier == "privileged" else "", "",
                    at, at, 1, "[]", "{}", "", "", "", "[]", "{}", "[]",
                    at + timedelta(seconds=rng.randint(20, 900)),
                    lead.pk if tier == "privileged" else None,
                    "[]", "", "",
                )
            )  # fmt: skip
            requests.append((n, at, user.pk, target, name, ticket))
    _sequence_set("mfa_actionrequest_id_seq", REQUESTS)
    if not quiet:
        print(f"  loaded {REQUESTS:,} action requests", flush=True)

    # Portal events, hash-chained in time order, as audit.services writes them.
    events: list[tuple[datetime, str, int | None, Any]] = []
    for n, at, user_pk, target, name, ticket in requests:
        events.append((at, "action_requested", n, (user_pk, target, name, ticket)))
        events.append(
            (at + timedelta(seconds=3), "action_started", n, (None, target, name, ticket))
        )
        events.append((at + timedelta(seconds=9), "action_step", n, (None, target, name, ticket)))
        events.append(
            (at + timedelta(seconds=30), "action_succeeded", n, (None, target, name, ticket))
        )
    while len(events) < PORTAL_EVENTS:
        user, oid, name = agents[rng.randrange(AGENTS)]
        events.append((START + SPAN * rng.random(), "sign_in", None, (user.pk, None, name, "")))
    events = events[:PORTAL_EVENTS]
    events.sort(key=lambda e: e[0])
    prev = GENESIS_HASH
    agent_oids = {user.pk: (oid, name) for user, oid, name in agents}
    with (
        connection.cursor() as cursor,
        cursor.copy(
            "COPY audit_portalevent (id, seq, prev_hash, hash, created_at, actor_id, actor_name,"
            " actor_oid, kind, target_id, target_name, request_id, ticket, old_value, new_value,"
            " source_ip, user_agent, http_request_id, detail) FROM STDIN"
        ) as copy,
    ):
        for seq, (at, kind, request_id, (actor_pk, target, _agent_name, ticket)) in enumerate(
            events, start=1
        ):
            actor_oid, actor_name = agent_oids.get(actor_pk, ("", ""))
            content = {
                "seq": seq,
                "created_at": at.astimezone(UTC).isoformat(timespec="microseconds"),
                "actor_id": actor_pk,
                "actor_name": actor_name,
                "actor_oid": actor_oid,
                "kind": kind,
                "target_id": target[0] if target else "",
                "target_name": target[1] if target else "",
                "request": request_id,
                "ticket": ticket,
                "old_value": None,
                "new_value": None,
                "source_ip": None,
                "user_agent": "",
                "http_request_id": "",
                "detail": {},
            }
            digest = event_hash(prev, content)
            copy.write_row(
                (
                    seq, seq, prev, digest, at, actor_pk, actor_name, actor_oid, kind,
                    content["target_id"], content["target_name"], request_id, ticket,
                    None, None, None, "", "", canonical_json({}),
                )
            )  # fmt: skip
            prev = digest
    _sequence_set("audit_portalevent_id_seq", len(events))
    del events
    if not quiet:
        print(f"  loaded {PORTAL_EVENTS:,} portal events", flush=True)

    pool = _weighted_activities(rng)
    synced = timezone.now()
    with (
        connection.cursor() as cursor,
        cursor.copy(
            "COPY audit_directoryauditrecord (id, entra_id, activity_at, category, activity,"
            " result, result_reason, logged_by_service, operation_type, initiated_by_kind,"
            " initiated_by_id,"
            " initiated_by_name, initiated_by_app_id, target_id, target_name, target_upn,"
            " target_ids, correlation_id, raw, synced_at, action_request_id, outside_portal,"
            " agent_oid)"
            " FROM STDIN"
        ) as copy,
    ):
        for n in range(1, ENTRA_RECORDS + 1):
            activity, category = pool[n % len(pool)]
            linked = requests[rng.randrange(REQUESTS)] if rng.random() < 0.2 else None
            if linked is not None:
                at = linked[1] + timedelta(seconds=rng.randint(5, 60))
                target = linked[3]
                initiator = ("app", "", PORTAL_APP[1], PORTAL_APP[0])
                # What audit.correlation stores when it links a record: the requester.
                agent_oid = agent_oids[linked[2]][0]
            else:
                at = START + SPAN * rng.random()
                target = targets[rng.randrange(TARGETS)]
                self_service = activity.startswith("User ")
                who = target if self_service else targets[rng.randrange(TARGETS)]
                initiator = ("user", who[0], who[2], "")
                agent_oid = who[0]
            result = "failure" if rng.random() < 0.03 else "success"
            outside = linked is None and not activity.startswith("User ") and rng.random() < 0.05
            entra_id = f"Directory_{uuid.UUID(int=rng.getrandbits(128), version=4)}"
            copy.write_row(
                (
                    n, entra_id, at, category, activity, result,
                    "" if result == "success" else "Request was throttled", "Core Directory",
                    "Update", initiator[0], initiator[1], initiator[2], initiator[3],
                    target[0], target[1], target[2], f'["{target[0]}"]', str(uuid.uuid4()),
                    f'{{"id": "{entra_id}"}}', synced, linked[0] if linked else None, outside,
                    agent_oid,
                )
            )  # fmt: skip
    _sequence_set("audit_directoryauditrecord_id_seq", ENTRA_RECORDS)
    if not quiet:
        print(f"  loaded {ENTRA_RECORDS:,} Entra records", flush=True)
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")
    return BenchData(
        agents=[(user.pk, oid, name) for user, oid, name in agents],
        targets=targets,
        request_public_ids=public_ids,
        lead_user_id=lead.pk,
        load_seconds=time.perf_counter() - started,
    )


if __name__ == "__main__":
    print("helper of bench/audit_history.py and bench/audit_export.py: nothing to measure alone")
