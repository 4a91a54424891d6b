"""``manage.py audit_prune``: remove cached Entra events past retention (audit.retention)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from audit.retention import entra_audit_prune


class Command(BaseCommand):
    help = (
        "Delete cached Entra audit events older than AUDIT_RETENTION_DAYS (or --days). The prune "
        "is recorded in the portal's event log. The portal's own log is never pruned."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--days", type=int, default=None, help="retention in days")
        parser.add_argument(
            "--dry-run", action="store_true", help="only count what would be deleted"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        days = options["days"]
        if days is not None and days < 1:
            raise CommandError("--days must be at least 1")
        result = entra_audit_prune(days=days, dry_run=options["dry_run"])
        verb = "would delete" if options["dry_run"] else "deleted"
        self.stdout.write(
            f"{verb} {result.deleted} Entra audit events from before {result.cutoff.isoformat()} "
            f"(retention {days or settings.AUDIT_RETENTION_DAYS} days)"
        )
