"""``manage.py audit_verify``: walk the portal log's keyed hash chain (audit.chain) and compare it
with the anchors kept outside the database (audit.anchors)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connection

from audit.anchors import AnchorError, anchor_file_path, read_anchors
from audit.chain import AnchorPoint, chain_verify

_TABLE = "audit_portalevent"
_REFUSED = ("UPDATE", "DELETE", "TRUNCATE", "TRIGGER")


class Command(BaseCommand):
    help = (
        "Check the portal event log's keyed hash chain and its anchors (AUDIT_ANCHOR_FILE). "
        "Prints 'intact (N events checked ...)', or what is wrong: BROKEN (a changed, removed "
        "or downgraded event), REWRITTEN (an anchored event's hash changed) or TRUNCATED (the "
        "chain ends before an anchored seq), and then exits 1."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--anchor",
            metavar="SEQ:HASH",
            help="also check that event SEQ still has HASH (a head kept elsewhere, e.g. read "
            "from the SIEM's copy of the audit.anchor log)",
        )
        parser.add_argument(
            "--anchor-file",
            metavar="PATH",
            help="read the anchors from PATH instead of AUDIT_ANCHOR_FILE",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        path = Path(options["anchor_file"]) if options["anchor_file"] else anchor_file_path()
        anchors: list[AnchorPoint] = []
        if path is not None:
            if options["anchor_file"] and not path.exists():
                raise CommandError(f"--anchor-file {path} does not exist", returncode=1)
            try:
                anchors = read_anchors(path)
            except AnchorError as exc:
                raise CommandError(f"BAD ANCHOR in {exc}", returncode=1) from exc
        if options["anchor"]:
            seq_text, _, expected = str(options["anchor"]).partition(":")
            if not seq_text.isdigit() or len(expected) != 64:
                raise CommandError("--anchor must be SEQ:HASH (a number and 64 hex digits)")
            anchors.append(
                AnchorPoint(seq=int(seq_text), hash=expected, anchored_at="?", source="--anchor")
            )
        report = chain_verify(anchors=anchors)
        if not report.intact:
            raise CommandError(str(report), returncode=1)
        self.stdout.write(str(report))
        if anchors:
            latest = anchors[-1]
            self.stdout.write(
                f"anchors: {len(anchors)} checked; the latest, seq {latest.seq} of "
                f"{latest.anchored_at}, holds"
            )
        elif path is None:
            self.stderr.write(
                "warning: AUDIT_ANCHOR_FILE is empty: removal of the newest events can only be "
                "seen against the audit.anchor log (pass its last head with --anchor SEQ:HASH)"
            )
        else:
            self.stderr.write(
                f"warning: no anchor in {path} yet: run manage.py audit_anchor (beat does, every "
                "AUDIT_ANCHOR_INTERVAL_SECONDS); until then removal of the newest events cannot "
                "be seen"
            )
        self._warn_about_database_rights()

    def _warn_about_database_rights(self) -> None:
        """On PostgreSQL, say so when this process's role may change or empty the events table
        (it should be the application role of README's "Production", not the owner)."""
        if connection.vendor != "postgresql":
            return
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT current_user, "
                + ", ".join(f"has_table_privilege(%s, '{right}')" for right in _REFUSED),
                [_TABLE] * len(_REFUSED),
            )
            row = cursor.fetchone()
        assert row is not None
        held = [right for right, has in zip(_REFUSED, row[1:], strict=True) if has]
        if held:
            self.stderr.write(
                f"warning: the database role {row[0]} may {', '.join(held)} {_TABLE}: the web "
                "and worker processes should connect as a role without these rights (README, "
                "Production)"
            )
