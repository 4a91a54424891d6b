"""``manage.py tenant_check``: the read-only preflight against the configured tenant.

Prints one line per item (``[PASS]``, ``[WARN]``, ``[FAIL]``), each with its details and the
exact fix, and exits 0 when nothing fails, 1 when something does (warnings do not fail).
``--json`` prints the report as JSON instead. The result is also kept for the Admin page
(/preflight/), which shows the last run.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from graph import users as graph_users
from graph.errors import GraphError
from preflight.checks import callback_path, preflight_client, run_checks
from preflight.results import Status, store_last_report, text_lines


class Command(BaseCommand):
    help = "Check the tenant's setup for the portal (read-only) and print each fix."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--json", action="store_true", help="print the report as JSON")
        parser.add_argument(
            "--url",
            default="",
            help="the portal's address (https://helpdesk.example.com), for the redirect URI "
            "check; default: CSRF_TRUSTED_ORIGINS, else the first ALLOWED_HOSTS name",
        )
        parser.add_argument(
            "--user",
            default="",
            help="a user (UPN or object id) for the beta endpoint reads; default: a holder "
            "of a portal app role",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        callback_urls = None
        if options["url"]:
            callback_urls = [options["url"].rstrip("/") + callback_path()]
        known_user = ""
        if options["user"]:
            try:
                known_user = graph_users.get_user(preflight_client(), options["user"]).id
            except GraphError as exc:
                self.stderr.write(f"--user {options['user']}: {exc}; a role holder is used")
        report = run_checks(
            callback_urls=callback_urls, known_user_id=known_user, by="manage.py tenant_check"
        )
        store_last_report(report)
        if options["json"]:
            self.stdout.write(json.dumps(report.as_dict(), indent=2))
        else:
            self.stdout.write(
                f"Tenant {report.tenant_id}, app {report.client_id}, "
                f"{report.started_at:%Y-%m-%d %H:%M:%S} UTC"
            )
            for line in text_lines(report.results):
                self.stdout.write(line)
            self.stdout.write(
                f"{report.count(Status.PASS)} passed, {report.count(Status.WARN)} warned, "
                f"{report.count(Status.FAIL)} failed."
            )
        if report.failed:
            sys.exit(1)
