"""The commands around the portal: the devrun supervisor (``make run``), the embedded Redis,
docker-compose.yml and the CI script.

The supervisor tests run real child processes (small Python programs) and check, through /proc,
that none of them or their own children is left after a stop.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from portal.devrun import (
    BASE_DIR,
    DEMO_SIGN_INS,
    Child,
    EmbeddedRedis,
    Supervisor,
    free_port,
    process_group_members,
)
from tests.waiting import wait_for

PY = sys.executable


def _alive(pid: int) -> bool:
    """True when ``pid`` is a live process (a zombie counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return state[state.rfind(")") + 2] != "Z"


def _family_program(pid_file: Path, *, ignore_sigterm: bool = False) -> list[str]:
    """A child that starts a grandchild, writes both pids to ``pid_file``, then sleeps."""
    code = textwrap.dedent(
        f"""
        import os, signal, subprocess, sys, time
        if {ignore_sigterm!r}:
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        grandchild = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
        with open({str(pid_file)!r} + ".tmp", "w") as f:
            f.write(f"{{os.getpid()}} {{grandchild.pid}}")
        os.rename({str(pid_file)!r} + ".tmp", {str(pid_file)!r})
        print("child up", flush=True)
        time.sleep(600)
        """
    )
    return [PY, "-c", code]


def _supervisor_script(tmp_path: Path, *, stop_timeout: float) -> str:
    """A program that supervises two families (one ignores SIGTERM) until signalled."""
    return textwrap.dedent(
        f"""
        import sys
        from pathlib import Path
        from portal.devrun import Child, Supervisor
        tmp = Path({str(tmp_path)!r})
        children = [
            Child("polite", {_family_program(tmp_path / "polite.pids")!r},
                  ready=lambda: (tmp / "polite.pids").exists()),
            Child("stubborn", {_family_program(tmp_path / "stubborn.pids", ignore_sigterm=True)!r},
                  ready=lambda: (tmp / "stubborn.pids").exists()),
        ]
        supervisor = Supervisor(children, stop_timeout={stop_timeout})
        sys.exit(supervisor.run(ready_timeout=30, on_ready=lambda: print("READY", flush=True)))
        """
    )


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_supervisor_stops_every_process_on_a_signal(tmp_path: Path, signum: int) -> None:
    """SIGINT (Ctrl-C) and SIGTERM end every child and grandchild, even one ignoring SIGTERM."""
    proc = subprocess.Popen(
        [PY, "-c", _supervisor_script(tmp_path, stop_timeout=1.5)],
        cwd=BASE_DIR,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert proc.stdout is not None
        lines: list[str] = []
        for line in proc.stdout:
            lines.append(line)
            if line.strip() == "READY":
                break
        else:
            pytest.fail(f"supervisor never got ready: {''.join(lines)}")
        pids = [
            int(pid)
            for name in ("polite", "stubborn")
            for pid in (tmp_path / f"{name}.pids").read_text().split()
        ]
        assert all(_alive(pid) for pid in pids)

        proc.send_signal(signum)
        rest, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    output = "".join(lines) + rest
    assert proc.returncode == 0, output
    assert "[polite  ] child up" in output
    assert "stopping (signal received)" in output
    assert "SIGKILL" in output  # the stubborn group needed it
    assert "all children stopped" in output
    left = [pid for pid in pids if _alive(pid)]
    assert left == [], f"orphans left: {left}\n{output}"


def test_supervisor_names_a_child_that_dies_and_stops_the_rest(tmp_path: Path) -> None:
    out = io.StringIO()
    supervisor = Supervisor(
        [
            Child("steady", _family_program(tmp_path / "steady.pids")),
            Child("crasher", [PY, "-c", "import time, sys; time.sleep(0.5); sys.exit(3)"]),
        ],
        out=out,
        stop_timeout=5,
    )
    status = supervisor.run(ready_timeout=10)
    output = out.getvalue()
    assert status == 1
    assert "crasher exited with status 3; stopping the rest" in output
    pids = [int(p) for p in (tmp_path / "steady.pids").read_text().split()]
    assert not any(_alive(pid) for pid in pids), output
    assert all(process_group_members(r.process.pid) == [] for r in supervisor.running)


def test_supervisor_reports_a_child_that_never_gets_ready() -> None:
    out = io.StringIO()
    supervisor = Supervisor(
        [Child("sleepy", [PY, "-c", "import time; time.sleep(60)"], ready=lambda: False)],
        out=out,
        stop_timeout=5,
    )
    started = time.monotonic()
    assert supervisor.run(ready_timeout=1) == 1
    assert time.monotonic() - started < 15
    assert "not answering after 1 s: sleepy" in out.getvalue()
    assert not _alive(supervisor.running[0].process.pid)


def test_embedded_redis_answers_and_stops(tmp_path: Path) -> None:
    server = EmbeddedRedis(workdir=tmp_path / "redis")
    url = server.start()
    try:
        client = redis.Redis.from_url(url)
        assert client.ping()
        client.set("k", "v")
        assert client.get("k") == b"v"
        # Nothing goes to disk: no RDB snapshot, no append-only file.
        assert client.config_get("save") == {"save": ""}
        assert client.config_get("appendonly") == {"appendonly": "no"}
        client.close()
        pid = server.process.pid if server.process else 0
    finally:
        server.stop()
        server.stop()  # a second stop is harmless
    assert not _alive(pid)
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", server.port), timeout=1):
        pass


@pytest.fixture
def devrun_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    """The environment of a fresh machine's ``make run``, on free ports and a private folder."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("ENTRA_", "GRAPH_", "DJANGO_", "PORTAL_", "EMAIL_"))
        and k not in {"DATABASE_URL", "REDIS_URL", "EMULATOR_PORT"}
    }
    env.update(
        PORTAL_VAR_DIR=str(tmp_path / "var"),
        PORTAL_PORT=str(free_port()),
        EMULATOR_PORT=str(free_port()),
    )
    yield env


def test_make_run_supervisor_starts_the_demo_and_stops_cleanly(devrun_env: dict[str, str]) -> None:
    """``python -m portal.devrun`` for real: embedded Redis, migrate, emulator, portal, worker
    and beat; the banner shows the demo sign-ins; Ctrl-C leaves no process behind."""
    proc = subprocess.Popen(
        [PY, "-m", "portal.devrun"],
        cwd=BASE_DIR,
        env=devrun_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 150
        for line in proc.stdout:
            lines.append(line)
            if "Ctrl-C stops everything" in line or time.monotonic() > deadline:
                break
        output = "".join(lines)
        assert "Ctrl-C stops everything" in output, output
        port = devrun_env["PORTAL_PORT"]
        assert f"MFA helpdesk portal: http://127.0.0.1:{port}/" in output
        for _name, upn, _role in DEMO_SIGN_INS:
            assert upn in output
        url = f"http://127.0.0.1:{port}/healthz"
        with urllib.request.urlopen(url, timeout=10) as response:
            assert response.status == 200
        pids = [int(pid) for pid in re.findall(r"started \w+ \(pid (\d+)\)", output)]
        assert len(pids) == 4, output  # emulator, portal, worker, beat
        redis_pids = [
            int(p.name)
            for p in Path("/proc").iterdir()
            if p.name.isdigit()
            and _cmdline(p).split(" ")[0].endswith("redis-server")
            and devrun_env["PORTAL_VAR_DIR"] in _cwd(p)
        ]
        assert len(redis_pids) == 1, "the embedded Redis should run in the var folder"
        family = [m for pid in pids for m in process_group_members(pid)] + redis_pids

        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    output = "".join(lines) + rest
    assert proc.returncode == 0, output
    assert "all children stopped" in output
    assert "embedded Redis stopped" in output
    wait_for(
        lambda: not any(_alive(pid) for pid in family),
        timeout=5,
        interval=0.05,
        what="the family to end",
    )


def _cmdline(proc_dir: Path) -> str:
    try:
        return (proc_dir / "cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except OSError:
        return ""


def _cwd(proc_dir: Path) -> str:
    try:
        return os.readlink(proc_dir / "cwd")
    except OSError:
        return ""


def test_devrun_refuses_a_port_in_use(devrun_env: dict[str, str]) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        devrun_env["PORTAL_PORT"] = str(busy.getsockname()[1])
        result = subprocess.run(
            [PY, "-m", "portal.devrun"],
            cwd=BASE_DIR,
            env=devrun_env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert result.returncode != 0
    assert f"PORTAL_PORT={devrun_env['PORTAL_PORT']} is in use" in result.stderr


def _compose_command() -> list[str] | None:
    """``docker compose`` (the plugin), else the standalone ``docker-compose``, else None."""
    if shutil.which("docker"):
        plugin = subprocess.run(
            ["docker", "compose", "version"], capture_output=True, check=False, timeout=30
        )
        if plugin.returncode == 0:
            return ["docker", "compose"]
    standalone = shutil.which("docker-compose")
    return [standalone] if standalone else None


@pytest.mark.skipif(shutil.which("docker") is None, reason="no docker client on this machine")
def test_docker_compose_config_is_valid(tmp_path: Path) -> None:
    """docker-compose.yml passes ``config -q`` with .env.example as its .env."""
    command = _compose_command()
    if command is None:
        pytest.skip("docker client without compose (.ci/run installs Debian's docker-compose)")
    for name in ("docker-compose.yml", "Dockerfile"):
        shutil.copy(BASE_DIR / name, tmp_path / name)
    shutil.copy(BASE_DIR / ".env.example", tmp_path / ".env")
    result = subprocess.run(
        [*command, "config", "-q"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    full = subprocess.run(
        [*command, "config"], cwd=tmp_path, capture_output=True, text=True, check=True, timeout=60
    ).stdout
    for service in ("web", "worker", "beat", "redis", "postgres"):
        assert re.search(rf"^  {service}:$", full, re.MULTILINE), f"no service {service}"


def test_ci_script_is_valid_bash() -> None:
    script = BASE_DIR / ".ci" / "run"
    assert script.read_text().splitlines()[0] == "#!/usr/bin/env bash"
    assert "set -euo pipefail" in script.read_text()
    subprocess.run(["bash", "-n", str(script)], check=True, timeout=30)
