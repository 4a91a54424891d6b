"""Settings fail at start, naming the variable; the test environment is what the plugin promises;
.env.example and README document every variable the settings read; personas match the seed.

Each start is a real ``django.setup()`` in a subprocess, as the web, worker and beat processes do.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import redis
from celery import shared_task
from django.conf import settings
from django.contrib.auth.models import Group
from django.db import transaction

from portal.devrun import BASE_DIR
from tests import plugin
from tests.personas import PERSONAS, check_against
from tests.waiting import wait_for

SETUP = "import django; django.setup(); print('started')"

# A complete production configuration (no demo), valid as it stands.
PRODUCTION = {
    "PORTAL_DEMO": "0",
    "DJANGO_SECRET_KEY": "p" * 64,
    "PORTAL_TAP_VAULT_KEY": "t" * 48,
    "PORTAL_VERIFICATION_HMAC_KEY": "h" * 48,
    "AUDIT_CHAIN_KEY": "a" * 48,
    "ALLOWED_HOSTS": "portal.example.com",
    "DATABASE_URL": "",
    "ENTRA_TENANT_ID": "11111111-2222-3333-4444-555555555555",
    "ENTRA_CLIENT_ID": "66666666-7777-8888-9999-000000000000",
    "ENTRA_CLIENT_SECRET": "secret",
    "ENTRA_LOGIN_HOST": "login.microsoftonline.com",
    "GRAPH_URL": "https://graph.microsoft.com",
    "ENTRA_CA_BUNDLE": "",
    "EMAIL_URL": "smtp://mail.example.com:25",
}


def start(changes: dict[str, str | None]) -> subprocess.CompletedProcess[str]:
    """Start Django in a subprocess with this run's environment plus ``changes``
    (None removes a variable)."""
    env = dict(os.environ)
    env.pop("DJANGO_SETTINGS_MODULE", None)
    env["DJANGO_SETTINGS_MODULE"] = "portal.settings"
    for name, value in changes.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return subprocess.run(
        [sys.executable, "-c", SETUP],
        cwd=BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def last_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = result.stderr.strip().splitlines()
    return lines[-1] if lines else ""


@pytest.mark.parametrize("changes", [{}, PRODUCTION], ids=["demo", "production"])
def test_a_valid_configuration_starts(changes: dict[str, str | None]) -> None:
    result = start(changes)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "started"


@pytest.mark.parametrize(
    ("name", "changes"),
    [
        ("DATABASE_URL", {"DATABASE_URL": "nonsense://x"}),
        ("GRAPH_URL", {"GRAPH_URL": "http://x"}),
        ("PORTAL_DEMO", {"PORTAL_DEMO": "maybe"}),
        ("DJANGO_DEBUG", {"DJANGO_DEBUG": "perhaps"}),
        ("DJANGO_SECRET_KEY", {**PRODUCTION, "DJANGO_SECRET_KEY": None}),
        ("DJANGO_SECRET_KEY", {**PRODUCTION, "DJANGO_SECRET_KEY": "too-short"}),
        ("DJANGO_SECRET_KEY_FILE", {**PRODUCTION, "DJANGO_SECRET_KEY_FILE": "/nonexistent/key"}),
        ("ALLOWED_HOSTS", {**PRODUCTION, "ALLOWED_HOSTS": None}),
        ("REDIS_URL", {"REDIS_URL": None}),
        ("ENTRA_TENANT_ID", {"ENTRA_TENANT_ID": None}),
        ("ENTRA_CLIENT_ID", {"ENTRA_CLIENT_ID": ""}),
        ("ENTRA_CLIENT_SECRET", {"ENTRA_CLIENT_SECRET": None, "ENTRA_CLIENT_CERT_PATH": None}),
        ("ENTRA_CLIENT_CERT_PATH", {"ENTRA_CLIENT_CERT_PATH": "/nonexistent/cert.pem"}),
        ("GRAPH_TIMEOUT_SECONDS", {"GRAPH_TIMEOUT_SECONDS": "soon"}),
        ("GRAPH_MAX_RETRIES", {"GRAPH_MAX_RETRIES": "many"}),
        # The portal's own keys: required outside the demo, long, never DJANGO_SECRET_KEY.
        ("PORTAL_TAP_VAULT_KEY", {**PRODUCTION, "PORTAL_TAP_VAULT_KEY": None}),
        ("PORTAL_TAP_VAULT_KEY", {**PRODUCTION, "PORTAL_TAP_VAULT_KEY": "short"}),
        ("PORTAL_TAP_VAULT_KEY", {**PRODUCTION, "PORTAL_TAP_VAULT_KEY": "p" * 64}),
        ("PORTAL_TAP_VAULT_KEY_FILE", {**PRODUCTION, "PORTAL_TAP_VAULT_KEY_FILE": "/nonexistent"}),
        ("PORTAL_VERIFICATION_HMAC_KEY", {**PRODUCTION, "PORTAL_VERIFICATION_HMAC_KEY": None}),
        ("PORTAL_VERIFICATION_HMAC_KEY", {**PRODUCTION, "PORTAL_VERIFICATION_HMAC_KEY": "t" * 48}),
        # (The demo's refusals of a real tenant: tests/security/test_demo_guard.py.)
        ("PORTAL_TRUSTED_PROXIES", {"PORTAL_TRUSTED_PROXIES": "*"}),
        ("PORTAL_TRUSTED_PROXIES", {"PORTAL_TRUSTED_PROXIES": "10.0.0.0/8,proxy.local"}),
    ],
)
def test_a_bad_value_stops_the_start_naming_the_variable(
    name: str, changes: dict[str, str | None]
) -> None:
    result = start(changes)
    assert result.returncode != 0, f"started with a bad {name}"
    assert re.match(rf"^portal\.config\.ConfigError: {name} ", last_line(result)), result.stderr


def test_the_plugin_set_up_a_private_demo_environment() -> None:
    """Django's settings point at this run's emulator port, folder and Redis, with a wide Graph
    budget."""
    assert settings.DEMO is True
    assert Path(settings.VAR_DIR) == plugin.VAR_DIR
    assert plugin.VAR_DIR.is_dir()
    assert settings.ENTRA_LOGIN_HOST == f"127.0.0.1:{plugin.EMULATOR_PORT}"
    assert settings.GRAPH_URL == f"https://127.0.0.1:{plugin.EMULATOR_PORT}"
    assert settings.ENTRA_CA_BUNDLE == str(plugin.VAR_DIR / "emulator" / "ca.pem")
    assert settings.REDIS_URL == plugin.REDIS_URL
    assert settings.CELERY_BROKER_URL == plugin.REDIS_URL
    # The run's wide Graph budget; tests about the budget ask for the real one.
    assert settings.GRAPH_BUDGET_REPORTS == "{}/{:g}".format(*plugin.WIDE_REPORTS_BUDGET)
    if not os.environ.get("DATABASE_URL"):
        assert settings.DATABASES["default"]["TEST"]["NAME"] == str(plugin.VAR_DIR / "test.sqlite3")


@pytest.fixture(scope="module")
def _redis_written_before_the_test() -> str:
    """A key written to the run's Redis before the test's own fixtures run: a wider-scoped
    fixture is set up before the per-test ``FLUSHDB`` (tests/plugin.py), as a previous test's
    leftovers would be."""
    client = redis.Redis.from_url(plugin.REDIS_URL)
    try:
        client.set("left-behind", "1")
        assert client.get("left-behind") == b"1"
    finally:
        client.close()
    return "left-behind"


def test_redis_starts_empty_for_each_test(
    _redis_written_before_the_test: str, redis_client: redis.Redis
) -> None:
    """What was in Redis before the test started is gone, whatever ran before this test."""
    assert redis_client.get(_redis_written_before_the_test) is None
    assert redis_client.dbsize() == 0


@shared_task(name="tests.create_group")
def create_group(name: str) -> None:
    """A task that leaves a trace in the database, for the worker test below."""
    Group.objects.create(name=name)


@pytest.mark.parametrize("queue", ["interactive", "bulk", "sync"])
def test_celery_worker_runs_tasks_from_every_queue(celery_worker: object, queue: str) -> None:
    """The ``celery_worker`` fixture consumes each portal queue on the real Redis broker, and
    its thread sees rows committed by the test (``transaction.on_commit``, as services enqueue).
    """
    with transaction.atomic():
        name = f"from-{queue}"
        transaction.on_commit(lambda: create_group.apply_async(args=(name,), queue=queue))
    wait_for(
        Group.objects.filter(name=name).exists,
        timeout=20,
        interval=0.05,
        what=f"the worker to run a task from {queue}",
    )


def _registered_tasks() -> set[str]:
    """The names of every task the portal's Celery app registers, as a worker loads them (the
    apps' ``tasks`` modules and CELERY_IMPORTS); Celery's own and this file's test task aside."""
    from portal.celery import app

    app.loader.import_default_modules()
    return {n for n in app.tasks if not n.startswith(("celery.", "tests."))}


def _queue_for(name: str, options: dict[str, Any] | None = None) -> str:
    from portal.celery import app

    return str(app.amqp.router.route(dict(options or {}), name)["queue"].name)


def test_task_routes_send_background_work_off_the_interactive_queue() -> None:
    """Routes are checked on the tasks that really exist, as the app registers them (so a
    renamed task or a route pattern that stopped matching fails here)."""
    from portal.celery import QUEUE_NAMES

    tasks = _registered_tasks()
    # The apps' tasks are all there (role tasks may carry old and new names: read, not listed).
    assert {"mfa.tasks.action_request_run", "audit.tasks.entra_audit_sync"} <= tasks
    assert any(name.endswith(".role_change_run") for name in tasks), sorted(tasks)
    for name in tasks:
        assert _queue_for(name) in QUEUE_NAMES, name

    # A run that an agent or an admin watches goes to the interactive queue; a bulk operation
    # (many people, nobody waits on the line) to the bulk queue.
    runs = {name for name in tasks if name.endswith("_run") and not name.startswith("bulk.")}
    assert len(runs) >= 2, sorted(tasks)
    assert {name: _queue_for(name) for name in runs} == dict.fromkeys(runs, "interactive")
    assert _queue_for("bulk.tasks.bulk_operation_run") == "bulk"

    # The audit trail and the mfa outbox reaper read in the background.
    background = {n for n in tasks if n.startswith(("audit.tasks.", "mfa.tasks.requests_"))}
    assert len(background) >= 4, sorted(tasks)
    assert {name: _queue_for(name) for name in background} == dict.fromkeys(background, "sync")

    # Every periodic task exists and reaches the sync queue, by its entry or by the routes.
    for key, entry in settings.CELERY_BEAT_SCHEDULE.items():
        assert entry["task"] in tasks, f"beat entry {key} names no registered task"
        assert _queue_for(entry["task"], entry.get("options")) == "sync", key

    # An explicit queue wins over the routes.
    assert _queue_for("audit.tasks.entra_audit_sync", {"queue": "interactive"}) == "interactive"


def _variables_read_by(path: Path) -> set[str]:
    source = path.read_text()
    names = set(re.findall(r"\benv\.\w+\(\s*\"([A-Z][A-Z0-9_]+)\"", source))
    names |= set(re.findall(r"os\.environ\.get\(\s*\"([A-Z][A-Z0-9_]+)\"", source))
    names |= set(re.findall(r"_env_port\(\s*env,\s*\"([A-Z][A-Z0-9_]+)\"", source))
    return names - {"DJANGO_SETTINGS_MODULE"}


def test_every_variable_is_documented() -> None:
    """.env.example and README.md list every variable that settings and ``make run`` read."""
    names = _variables_read_by(BASE_DIR / "portal" / "settings.py")
    names |= _variables_read_by(BASE_DIR / "portal" / "settings_apps.py")
    names |= _variables_read_by(BASE_DIR / "portal" / "devrun.py")
    assert {"DATABASE_URL", "REDIS_URL", "PORTAL_PORT", "EMULATOR_PORT"} <= names
    assert {"AUDIT_KEEP_ACTIVITIES", "ROLES_READ_ONLY"} <= names
    example = (BASE_DIR / ".env.example").read_text()
    readme = (BASE_DIR / "README.md").read_text()
    in_example = set(re.findall(r"^#?\s?([A-Z][A-Z0-9_]+)=", example, re.MULTILINE))
    in_readme = set(re.findall(r"^\| `([A-Z][A-Z0-9_]+)` \|", readme, re.MULTILINE))
    assert names - in_example == set(), "missing from .env.example"
    assert names - in_readme == set(), "missing from the README's configuration table"


def test_personas_match_the_emulator_seed() -> None:
    """The personas' ids, names and roles are those of the seeded demo tenant."""
    from entra_emulator.seed import build_tenant

    assert check_against(build_tenant(users=20, with_security=False)) == []
    assert len({p.oid for p in PERSONAS.all()}) == len(PERSONAS.all())
    assert PERSONAS.by_upn("ADA.AGENT@contoso-demo.onmicrosoft.com") is PERSONAS.agent
    assert PERSONAS.privileged_target.privileged and not PERSONAS.standard_target.privileged
