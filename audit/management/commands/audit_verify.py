"""``manage.py audit_verify``: walk the portal log's hash chain (audit.chain)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from audit.chain import chain_verify
from audit.models import PortalEvent


class Command(BaseCommand):
    help = (
        "Check the portal event log's hash chain. Prints 'intact (N events checked ...)' or the "
        "first broken link, and exits 1 when the chain is broken."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--anchor",
            metavar="SEQ:HASH",
            help="also check that event SEQ still has HASH (a head printed by an earlier run and "
            "kept elsewhere): this detects removal of the newest events",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        report = chain_verify()
        if not report.intact:
            raise CommandError(str(report), returncode=1)
        if options["anchor"]:
            seq_text, _, expected = str(options["anchor"]).partition(":")
            if not seq_text.isdigit() or len(expected) != 64:
                raise CommandError("--anchor must be SEQ:HASH (a number and 64 hex digits)")
            found = (
                PortalEvent.objects.filter(seq=int(seq_text)).values_list("hash", flat=True).first()
            )
            if found != expected:
                raise CommandError(
                    f"BROKEN: anchor seq {seq_text} "
                    + ("is missing" if found is None else "has a different hash")
                    + f" ({report.checked} events checked)",
                    returncode=1,
                )
        self.stdout.write(str(report))
