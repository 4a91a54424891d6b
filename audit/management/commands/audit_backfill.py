"""``manage.py audit_backfill --since YYYY-MM-DD``: the first load of the Entra audit cache."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from audit.correlation import correlate_period
from audit.models import PortalEvent
from audit.services import portal_event_record
from audit.sync import SyncBusy, entra_audit_sync

BAR_WIDTH = 30


def progress_line(
    *,
    since: datetime,
    now: datetime,
    pages: int,
    seen: int,
    inserted: int,
    at: datetime | None,
    done: bool,
) -> str:
    """One line of the progress bar. Graph returns newest events first, so the share done is
    how far back from ``now`` towards ``since`` the last page reached."""
    span = (now - since).total_seconds()
    reached = (now - at).total_seconds() if at is not None else 0.0
    share = 1.0 if done or span <= 0 else min(max(reached / span, 0.0), 0.99)
    filled = round(share * BAR_WIDTH)
    where = f", at {at:%Y-%m-%d %H:%M}" if at is not None else ""
    return (
        f"[{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {share:4.0%} "
        f"{pages} pages, {seen} events read, {inserted} new{where}"
    )


class Command(BaseCommand):
    help = (
        "Load Entra's directory audit events since a date into the local cache, with a progress "
        "bar on stderr. Resumes an interrupted run unless --restart. Safe to run again: events "
        "already cached are skipped."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--since", required=True, help="first day to load, YYYY-MM-DD (UTC)")
        parser.add_argument(
            "--restart", action="store_true", help="discard an interrupted run instead of resuming"
        )
        parser.add_argument(
            "--recorrelate",
            action="store_true",
            help="afterwards, link every cached event since that day to portal requests again",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            day = date.fromisoformat(options["since"])
        except ValueError as exc:
            raise CommandError(f"--since must be a date (YYYY-MM-DD): {exc}") from exc
        since = datetime(day.year, day.month, day.day, tzinfo=UTC)
        now = timezone.now()
        if since >= now:
            raise CommandError("--since must be in the past")
        interactive = self.stderr.isatty()

        def progress(pages: int, seen: int, inserted: int, at: datetime | None, done: bool) -> None:
            line = progress_line(
                since=since, now=now, pages=pages, seen=seen, inserted=inserted, at=at, done=done
            )
            # On a terminal the bar redraws in place; in a log file each page is one line.
            self.stderr.write(
                f"\r{line}" if interactive else line, ending="" if interactive else "\n"
            )
            self.stderr.flush()

        try:
            result = entra_audit_sync(since=since, restart=options["restart"], progress=progress)
        except SyncBusy as exc:
            raise CommandError(f"{exc}: try again when it has finished") from exc
        if interactive:
            self.stderr.write("")
        portal_event_record(
            kind=PortalEvent.Kind.ENTRA_AUDIT_BACKFILLED,
            detail={
                "since": since.isoformat(),
                "pages": result.pages,
                "read": result.seen,
                "inserted": result.inserted,
                "resumed": result.resumed,
            },
        )
        summary = (
            f"{'resumed an interrupted run: ' if result.resumed else ''}{result.pages} pages, "
            f"{result.seen} events read, {result.kept} kept, {result.inserted} new, "
            f"{result.linked} linked to portal requests, {result.outside} outside the portal"
        )
        if options["recorrelate"]:
            again = correlate_period(since=since)
            summary += f"; re-correlated: {again.linked} linked, {again.outside} outside"
        self.stdout.write(summary)
