"""What a preflight run found: one :class:`CheckResult` per item, and the :class:`Report` of a run,
kept (as JSON, in the shared cache) so that the Admin page can show the last run without spending
Graph calls on every page load."""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.core.cache import cache

LAST_REPORT_KEY = "preflight:last-report"
# How long the last run is shown on the Admin page before it says "no recent run".
LAST_REPORT_SECONDS = 7 * 24 * 3600


class Status(enum.StrEnum):
    PASS = "pass"
    WARN = "warn"
    FAIL = "fail"

    @property
    def rank(self) -> int:
        return {Status.PASS: 0, Status.WARN: 1, Status.FAIL: 2}[self]


@dataclass(frozen=True)
class CheckResult:
    """One item: ``status``, one line ``summary``, ``details`` (more lines, e.g. who holds a
    role) and ``fix``: what to do, exactly, when the item does not pass (empty when it does)."""

    key: str
    title: str
    status: Status
    summary: str
    details: tuple[str, ...] = ()
    fix: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "title": self.title,
            "status": self.status.value,
            "summary": self.summary,
            "details": list(self.details),
            "fix": self.fix,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CheckResult:
        return cls(
            key=str(data["key"]),
            title=str(data["title"]),
            status=Status(data["status"]),
            summary=str(data["summary"]),
            details=tuple(str(d) for d in data.get("details") or ()),
            fix=str(data.get("fix") or ""),
        )


@dataclass(frozen=True)
class Report:
    """A whole run: its results in order, when it ran and who ran it (``by``: a UPN, or
    ``manage.py tenant_check``)."""

    results: tuple[CheckResult, ...]
    started_at: datetime
    finished_at: datetime
    by: str = ""
    tenant_id: str = ""
    client_id: str = ""
    counts: Mapping[str, int] = field(default_factory=dict)

    @property
    def status(self) -> Status:
        """The worst status of any item (pass for an empty run)."""
        worst = Status.PASS
        for result in self.results:
            if result.status.rank > worst.rank:
                worst = result.status
        return worst

    @property
    def failed(self) -> bool:
        return self.status is Status.FAIL

    def count(self, status: Status) -> int:
        return sum(r.status is status for r in self.results)

    def as_dict(self) -> dict[str, Any]:
        return {
            "status": self.status.value,
            "started_at": self.started_at.isoformat(),
            "finished_at": self.finished_at.isoformat(),
            "by": self.by,
            "tenant_id": self.tenant_id,
            "client_id": self.client_id,
            "counts": {s.value: self.count(s) for s in Status},
            "results": [r.as_dict() for r in self.results],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Report:
        return cls(
            results=tuple(CheckResult.from_dict(r) for r in data.get("results") or ()),
            started_at=datetime.fromisoformat(str(data["started_at"])),
            finished_at=datetime.fromisoformat(str(data["finished_at"])),
            by=str(data.get("by") or ""),
            tenant_id=str(data.get("tenant_id") or ""),
            client_id=str(data.get("client_id") or ""),
        )


def store_last_report(report: Report) -> None:
    """Keep ``report`` as the last run (shared cache, JSON), for the Admin page."""
    cache.set(LAST_REPORT_KEY, report.as_dict(), timeout=LAST_REPORT_SECONDS)


def last_report() -> Report | None:
    """The last run kept by :func:`store_last_report`, or None."""
    data = cache.get(LAST_REPORT_KEY)
    if not isinstance(data, Mapping):
        return None
    try:
        return Report.from_dict(data)
    except (KeyError, ValueError, TypeError):
        return None


def text_lines(results: Sequence[CheckResult]) -> list[str]:
    """The plain-text form the command prints: one ``[PASS]`` line per item, then its details and
    its fix, indented."""
    lines: list[str] = []
    for result in results:
        lines.append(f"[{result.status.value.upper()}] {result.title}: {result.summary}")
        lines.extend(f"       {detail}" for detail in result.details)
        if result.fix:
            fix_lines = result.fix.splitlines()
            lines.append(f"       Fix: {fix_lines[0]}")
            lines.extend(f"            {line}" for line in fix_lines[1:])
    return lines
