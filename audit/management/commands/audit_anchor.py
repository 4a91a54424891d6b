"""``manage.py audit_anchor``: record the event chain's head outside the database now."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from audit.anchors import AnchorError, AnchorRefused, anchor_write


class Command(BaseCommand):
    help = (
        "Append the portal event chain's head (seq, hash, time) to AUDIT_ANCHOR_FILE and log it "
        "on the audit.anchor logger, as the beat task does every AUDIT_ANCHOR_INTERVAL_SECONDS. "
        "Run it once after deploying or upgrading. Exits 1 when the chain no longer extends the "
        "latest anchor (nothing is anchored then)."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            written = anchor_write()
        except AnchorRefused as refused:
            raise CommandError(f"not anchored: {refused.report}", returncode=1) from refused
        except (AnchorError, OSError) as exc:
            raise CommandError(f"not anchored: {exc}", returncode=1) from exc
        where = [f"file {written.file}"] if written.file else []
        if written.logged:
            where.append("the audit.anchor log")
        self.stdout.write(
            f"anchored seq {written.anchor.seq}, hash {written.anchor.hash} ({' and '.join(where)})"
        )
