"""Benchmark: CSV export rate and peak memory over 1,200,000 history rows.

Loads 1,000,000 Entra records and 200,000 portal events into a fresh PostgreSQL database
(bench/audit_bench_db.py), then exports everything a Lead sees through the real view path
(``audit.exports.export_response``: the export is logged, rows are read in keyset batches and
written as CSV chunks), consuming the streamed body as a WSGI server would. The export runs in a
child process so its peak RSS is the export's own, not the loader's.

Prints rows/s and the child's peak RSS, against the targets (>= 50,000 rows/s, < 150 MB).
Bounded: about 3-4 minutes on a 2-core machine.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import audit_bench_db as bench_db

TARGET_ROWS_PER_S = 50_000
TARGET_RSS_MB = 150


def _peak_rss_mb() -> float:
    """This process's peak resident memory (VmHWM). Unlike ru_maxrss, which Linux carries over
    from the parent across fork and exec, VmHWM starts afresh with the new program."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def export_child(database_url: str, lead_user_id: int) -> None:
    """In the child: export everything as the lead, print one JSON line of figures."""
    bench_db.prepare_environment(database_url)
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.test import RequestFactory

    from audit.exports import export_response
    from audit.selectors import HistoryFilters

    request = RequestFactory().get("/audit/export.csv")
    request.user = get_user_model().objects.get(pk=lead_user_id)
    baseline_mb = _peak_rss_mb()
    started = time.perf_counter()
    response = export_response(request=request, filters=HistoryFilters(), fmt="csv")
    size = 0
    lines = 0
    for chunk in response.streaming_content:  # type: ignore[union-attr]  # a sync iterator here
        size += len(chunk)
        lines += chunk.count(b"\n")
    seconds = time.perf_counter() - started
    peak_mb = _peak_rss_mb()
    print(
        json.dumps(
            {
                "rows": lines - 1,
                "bytes": size,
                "seconds": seconds,
                "peak_rss_mb": peak_mb,
                "rss_before_mb": baseline_mb,
            }
        )
    )


def child_figures(script: str, url: str, lead_user_id: int) -> dict[str, Any]:
    """Run ``script --child url lead_user_id`` (an export child, as this module's) and return
    the JSON figures of its last line. Raises RuntimeError with its stderr's end if it fails."""
    child = subprocess.run(
        [sys.executable, script, "--child", url, str(lead_user_id)],
        capture_output=True,
        text=True,
        check=False,
        env=dict(os.environ),
    )
    if child.returncode != 0:
        raise RuntimeError(child.stderr[-3000:])
    return dict(json.loads(child.stdout.strip().splitlines()[-1]))


def main() -> int:
    with bench_db.created_database() as url:
        bench_db.prepare_environment(url)
        print(
            f"loading {bench_db.ENTRA_RECORDS:,} Entra records and "
            f"{bench_db.PORTAL_EVENTS:,} portal events into PostgreSQL ...",
            flush=True,
        )
        data = bench_db.load()
        print(f"  loaded and analysed in {data.load_seconds:.0f} s", flush=True)
        from django.db import connections

        connections.close_all()
        try:
            figures = child_figures(__file__, url, data.lead_user_id)
        except RuntimeError as exc:
            print(exc, file=sys.stderr)
            return 1
    rate = figures["rows"] / figures["seconds"]
    expected = bench_db.ENTRA_RECORDS + bench_db.PORTAL_EVENTS
    print(
        f"\nCSV export: {figures['rows']:,} rows (expected {expected:,} + the export's own event), "
        f"{figures['bytes'] / 1e6:.0f} MB in {figures['seconds']:.1f} s"
    )
    print(
        f"  rate      {rate:10,.0f} rows/s   target >= {TARGET_ROWS_PER_S:,}: "
        f"{'ok' if rate >= TARGET_ROWS_PER_S else 'SLOW'}"
    )
    print(
        f"  peak RSS  {figures['peak_rss_mb']:10.0f} MB       target < {TARGET_RSS_MB}: "
        f"{'ok' if figures['peak_rss_mb'] < TARGET_RSS_MB else 'TOO MUCH'}"
        f"  (process before the export: {figures['rss_before_mb']:.0f} MB)"
    )
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--child":
        export_child(sys.argv[2], int(sys.argv[3]))
        sys.exit(0)
    sys.exit(main())
