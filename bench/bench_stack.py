"""The portal served as bench/load_agents.py serves it, for bench/load_real_budget.py and
bench/portal_cpu.py (run alone it only says so: ``make bench`` runs every bench/*.py).

``portal_stack()`` starts, in a fresh temporary folder: an embedded Redis, the Entra emulator
(through this file's ``emulator`` entry point: the real emulator, plus a counter of every
throttling-class token it takes, read at ``GET /_emulator/bench-counts``), a fresh PostgreSQL
database (``portal_bench_stack_<pid>`` on ``DATABASE_URL``'s server; SQLite when that is not
PostgreSQL), migrated, ``agents`` Helpdesk.Agent accounts with a session each, ``gunicorn
portal.wsgi`` with two sync workers (the Dockerfile's server), and optionally one Celery worker
(the action runners). Everything is stopped and removed on exit.

Graph calls are counted from the emulator's side: each request Graph would throttle takes one
token of its class (``reports`` or ``identity``; a ``$batch`` one per inner request), allowed or
answered 429. CPU time of the gunicorn workers comes from ``/proc/<pid>/stat`` (utime + stime).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import secrets
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CLK_TCK = os.sysconf("SC_CLK_TCK")
REQUEST_TIMEOUT_SECONDS = 130.0


def percentile(values: list[float], fraction: float) -> float:
    """The nearest-rank percentile of ``values`` (``fraction`` in 0..1); nan when empty."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


# --- the counting emulator (a child process) ---


def agent_oid(n: int) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_DNS, agent_upn(n)))


def agent_upn(n: int) -> str:
    return f"bench.agent{n}@contoso-demo.onmicrosoft.com"


def agent_role(n: int) -> str:
    """The app role of bench agent ``n``: ``Helpdesk.Agent`` unless ``BENCH_AGENT_ROLES``
    (``0=Helpdesk.Responder,1=Helpdesk.Lead``) names another, in the emulator and the session
    alike."""
    for pair in os.environ.get("BENCH_AGENT_ROLES", "").split(","):
        index, _, role = pair.partition("=")
        if index.strip() == str(n) and role.strip():
            return role.strip()
    return "Helpdesk.Agent"


def emulator_main(argv: list[str]) -> int:
    """The real emulator, with every throttle token it takes recorded (time, class, allowed)."""
    from werkzeug.wrappers import Response

    import entra_emulator.server as server_module
    from entra_emulator import __main__ as emulator_cli
    from entra_emulator.throttle import Throttle

    events: list[tuple[float, str, bool, str, str]] = []
    lock = threading.Lock()
    current = threading.local()
    original_take = Throttle.take
    original_graph = server_module.handle_graph_request  # type: ignore[attr-defined]

    def take(self: Throttle, app_id: str, throttle_class: str) -> int | None:
        result = original_take(self, app_id, throttle_class)
        call = getattr(current, "call", ("", ""))
        with lock:
            events.append((time.time(), throttle_class, result is None, call[0], call[1]))
        return result

    def handle_graph_request(server: Any, request: Any) -> Any:
        current.call = (request.method.upper(), request.path)
        try:
            return original_graph(server, request)
        finally:
            current.call = ("", "")

    Throttle.take = take  # type: ignore[method-assign]
    original_build = server_module.EmulatorServer._build_tenant

    def build_tenant(self: Any) -> Any:
        """The seeded tenant plus the bench's agents: real users holding Helpdesk.Agent, as
        the runners re-read the requester's role from Entra before they write."""
        from datetime import timedelta

        from entra_emulator.seed import _make_user

        tenant = original_build(self)
        for n in range(int(os.environ.get("BENCH_EMULATOR_AGENTS", "0"))):
            oid = agent_oid(n)
            tenant.add_user(
                _make_user(
                    user_id=oid,
                    given="Bench",
                    surname=f"Agent {n}",
                    upn=agent_upn(n),
                    mail=agent_upn(n),
                    department="IT",
                    job_title="Service Desk Analyst",
                    created=self.now() - timedelta(days=100),
                    employee_id=f"B{n:06d}",
                )
            )
            tenant.app_role_assignments[oid] = {agent_role(n)}
        return tenant

    server_module.EmulatorServer._build_tenant = build_tenant  # type: ignore[method-assign]
    server_module.handle_graph_request = handle_graph_request  # type: ignore[attr-defined,assignment]
    original_control = server_module.handle_control  # type: ignore[attr-defined]

    def handle_control(server: Any, request: Any) -> Any:
        if request.path.rstrip("/") == "/_emulator/bench-counts":
            since = int(request.args.get("since", "0") or 0)
            with lock:
                body = {"next": len(events), "events": events[since:]}
            return Response(json.dumps(body), content_type="application/json")
        return original_control(server, request)

    server_module.handle_control = handle_control  # type: ignore[attr-defined]
    return emulator_cli.main(argv)


# --- helpers ---


def stop_child(process: subprocess.Popen[bytes]) -> None:
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


def start_child(argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
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


def wait_until(check: Any, *, what: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{what} exited at start:\n{log.read_text(errors='replace')[-3000:]}")
        if check():
            return
        time.sleep(0.2)
    raise SystemExit(
        f"{what} did not answer within 90 s:\n{log.read_text(errors='replace')[-3000:]}"
    )


def _with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, parts.fragment))


@contextlib.contextmanager
def stack_database() -> Iterator[tuple[str, str]]:
    """(DATABASE_URL for the children, label): a new PostgreSQL database on DATABASE_URL's
    server, dropped at the end; else SQLite in the run's folder."""
    server = os.environ.get("DATABASE_URL", "")
    if urlsplit(server).scheme not in ("postgres", "postgresql", "pgsql"):
        yield "", "SQLite"
        return
    import psycopg

    name = f"portal_bench_stack_{os.getpid()}"
    conninfo = server.replace("postgres://", "postgresql://", 1)
    with psycopg.connect(conninfo, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield _with_database(server, name), "PostgreSQL"
    finally:
        with contextlib.suppress(Exception):
            from django.db import connections

            connections.close_all()
        with psycopg.connect(conninfo, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def create_agent_sessions(count: int) -> tuple[str, list[tuple[str, str]]]:
    """``count`` Helpdesk.Agent accounts with a session each (as bench/load_agents.py makes
    them). Returns (session cookie name, [(agent oid, session key)])."""
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

    out = []
    for n in range(count):
        oid = agent_oid(n)
        user, _ = get_user_model().objects.get_or_create(username=oid)
        portal_profile_sync(
            user=user,
            claims={
                "oid": oid,
                "name": f"Bench Agent {n}",
                "preferred_username": agent_upn(n),
                "roles": [agent_role(n)],
            },
        )
        session = SessionStore()
        session[SESSION_KEY] = str(user.pk)
        session[BACKEND_SESSION_KEY] = settings.AUTHENTICATION_BACKENDS[0]
        session[HASH_SESSION_KEY] = user.get_session_auth_hash()
        session.create()
        assert session.session_key is not None
        out.append((oid, session.session_key))
    connections.close_all()
    return settings.SESSION_COOKIE_NAME, out


@dataclass(frozen=True)
class GraphCall:
    """One request Graph would throttle, as the emulator saw it."""

    at: float  # time.time()
    cls: str  # reports | identity
    allowed: bool  # False: answered 429
    method: str
    path: str


# --- the stack ---


@dataclass
class Stack:
    """The running system: ports, the gunicorn master, the emulator's counters."""

    portal_port: int
    emulator_port: int
    gunicorn: subprocess.Popen[bytes]
    ca_file: Path
    cookie_name: str
    agents: list[tuple[str, str]]  # (oid, session key)
    database: str
    var_dir: Path
    worker: subprocess.Popen[bytes] | None = None
    _since: int = 0
    events: list[GraphCall] = field(default_factory=list)

    # Graph calls, from the emulator --------------------------------------------------------------
    def _control(self, path: str, body: dict[str, Any] | None = None) -> Any:
        context = ssl.create_default_context(cafile=str(self.ca_file))
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(  # loopback, the emulator's own CA
            f"https://127.0.0.1:{self.emulator_port}{path}",
            data=data,
            method="POST" if data is not None else "GET",
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, context=context, timeout=30) as response:
            return json.loads(response.read())

    def pull_events(self) -> list[GraphCall]:
        """New throttle events since the last pull (also appended to ``events``)."""
        answer = self._control(f"/_emulator/bench-counts?{urlencode({'since': self._since})}")
        new = [GraphCall(float(t), str(c), bool(a), m, p) for t, c, a, m, p in answer["events"]]
        self._since = int(answer["next"])
        self.events.extend(new)
        return new

    def counts(self) -> dict[str, int]:
        """Totals so far: ``reports``, ``identity`` (allowed) and ``429`` (refused)."""
        self.pull_events()
        out = {"reports": 0, "identity": 0, "429": 0}
        for call in self.events:
            if call.allowed:
                out[call.cls] = out.get(call.cls, 0) + 1
            else:
                out["429"] += 1
        return out

    def pause_worker(self, paused: bool) -> None:
        """SIGSTOP / SIGCONT the Celery worker's process group (so that its runners spend
        nothing while requests are counted one by one)."""
        if self.worker is not None and self.worker.poll() is None:
            os.killpg(self.worker.pid, signal.SIGSTOP if paused else signal.SIGCONT)

    def throttle(self, body: dict[str, Any]) -> Any:
        return self._control("/_emulator/throttle", body)

    # CPU of the gunicorn workers -----------------------------------------------------------------
    def worker_pids(self) -> list[int]:
        pids = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            fields = stat.rsplit(")", 1)[1].split()
            if int(fields[1]) == self.gunicorn.pid:
                pids.append(int(entry.name))
        return sorted(pids)

    def worker_cpu_seconds(self) -> tuple[float, tuple[int, ...]]:
        """(utime + stime of every gunicorn worker, in seconds; the worker pids)."""
        total = 0.0
        pids = self.worker_pids()
        for pid in pids:
            with contextlib.suppress(OSError):
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                total += (int(fields[11]) + int(fields[12])) / CLK_TCK
        return total, tuple(pids)

    def cookie(self, n: int) -> str:
        return f"{self.cookie_name}={self.agents[n][1]}"


# The key every stack of this process signs with. The bench process reads Django's settings
# once, at its first stack, and signs the agents' sessions with that key: a second stack with a
# key of its own (bench/bulk_ops.py's part 2) would find every session invalid and answer 302.
_SECRET_KEY = secrets.token_urlsafe(48)


@contextlib.contextmanager
def portal_stack(
    *,
    agents: int,
    reports_budget: str,
    celery_worker: bool,
    extra_env: dict[str, str] | None = None,
    emulator_args: tuple[str, ...] = (),
) -> Iterator[Stack]:
    """Start everything (module docstring); ``reports_budget`` is both the emulator's and the
    portal's reports class (``5/10`` is Graph's real one)."""
    from portal.devrun import EmbeddedRedis, demo_environment, free_port, http_answers

    var_dir = Path(tempfile.mkdtemp(prefix="portal-bench-stack-")).resolve()
    emulator_port, portal_port = free_port(), free_port()
    redis_server = EmbeddedRedis(workdir=var_dir / "redis")
    children: list[subprocess.Popen[bytes]] = []
    # This process takes the stack's environment (its own Django use); a later stack of the
    # same process must start from what was there before (DATABASE_URL names the server).
    saved_environ = dict(os.environ)
    try:
        with stack_database() as (database_url, database_label):
            env = {
                **os.environ,
                **demo_environment(emulator_port=emulator_port, var_dir=var_dir),
                "PORTAL_VAR_DIR": str(var_dir),
                "DJANGO_SETTINGS_MODULE": "portal.settings",
                "DJANGO_SECRET_KEY": _SECRET_KEY,
                "DATABASE_URL": database_url,
                "REDIS_URL": redis_server.start(),
                "GRAPH_BUDGET_REPORTS": reports_budget,
                "LOG_LEVEL": "WARNING",
                "PYTHONUNBUFFERED": "1",
                "BENCH_EMULATOR_AGENTS": str(agents),
                **(extra_env or {}),
            }
            for name in ("EMAIL_URL", "ENTRA_CLIENT_CERT_PATH", "ENTRA_CLIENT_SECRET_FILE"):
                env.pop(name, None)
            python = sys.executable
            log = var_dir / "emulator.log"
            emulator = start_child(
                [
                    python, str(Path(__file__).resolve()), "emulator", "--host", "127.0.0.1",
                    "--port", str(emulator_port), "--state-dir", str(var_dir / "emulator"),
                    "--reports-limit", reports_budget, *emulator_args,
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
            wait_until(
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
            cookie_name, sessions = create_agent_sessions(agents)

            log = var_dir / "gunicorn.log"
            gunicorn = start_child(
                [
                    python, "-m", "gunicorn", "portal.wsgi",
                    "--bind", f"127.0.0.1:{portal_port}", "--workers", "2",
                    "--timeout", "120", "--log-level", "warning",
                ],
                env,
                log,
            )  # fmt: skip
            children.append(gunicorn)
            wait_until(
                lambda: http_answers(f"http://127.0.0.1:{portal_port}/healthz"),
                what="gunicorn",
                process=gunicorn,
                log=log,
            )
            worker = None
            if celery_worker:
                log = var_dir / "worker.log"
                worker = start_child(
                    [
                        python, "-m", "celery", "-A", "portal", "worker",
                        "-Q", "interactive,bulk,sync", "--concurrency", "2",
                        "--loglevel", "WARNING", "--hostname", f"bench-{os.getpid()}@%h",
                    ],
                    env,
                    log,
                )  # fmt: skip
                children.append(worker)
            stack = Stack(
                worker=worker,
                portal_port=portal_port,
                emulator_port=emulator_port,
                gunicorn=gunicorn,
                ca_file=ca,
                cookie_name=cookie_name,
                agents=sessions,
                database=database_label,
                var_dir=var_dir,
            )
            stack.pull_events()
            yield stack
    finally:
        for child in reversed(children):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.pid, signal.SIGCONT)
            stop_child(child)
        redis_server.stop()
        os.environ.clear()
        os.environ.update(saved_environ)
        if not os.environ.get("PORTAL_KEEP_VAR"):
            shutil.rmtree(var_dir, ignore_errors=True)


# --- an agent's HTTP client ---

CSRF_INPUT = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')
IDEMPOTENCY_INPUT = re.compile(
    r'name="idempotency_key"[^>]*value="([^"]+)"|value="([^"]+)"[^>]*name="idempotency_key"'
)
PERSON_LINK = re.compile(
    r'href="/users/([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})/"'
)


class Client:
    """One agent's browser: a cookie jar over one keep-alive-less HTTP connection."""

    def __init__(self, port: int, cookie: str) -> None:
        self.port = port
        self.cookies = dict([cookie.split("=", 1)])
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=REQUEST_TIMEOUT_SECONDS)

    def close(self) -> None:
        self.conn.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        form: dict[str, Any] | None = None,
        htmx: bool = False,
    ) -> tuple[int, str, dict[str, str]]:
        headers = {"Cookie": "; ".join(f"{k}={v}" for k, v in self.cookies.items())}
        if htmx:
            headers["HX-Request"] = "true"
        body = None
        if form is not None:
            body = urlencode(form, doseq=True)
            headers["Content-Type"] = "application/x-www-form-urlencoded"
            headers["Referer"] = f"http://127.0.0.1:{self.port}{path}"
        try:
            self.conn.request(method, path, body=body, headers=headers)
            response = self.conn.getresponse()
            text = response.read().decode("utf-8", errors="replace")
        except (OSError, http.client.HTTPException):
            self.conn.close()
            raise
        for name, value in response.getheaders():
            if name.lower() == "set-cookie":
                pair = value.split(";", 1)[0]
                if "=" in pair:
                    key, val = pair.split("=", 1)
                    self.cookies[key.strip()] = val.strip()
        out_headers = {k.lower(): v for k, v in response.getheaders()}
        if response.will_close:
            self.conn.close()
        return response.status, text, out_headers


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "emulator":
        sys.exit(emulator_main(sys.argv[2:]))
    print("helper of bench/load_real_budget.py and bench/portal_cpu.py: nothing to measure alone")
