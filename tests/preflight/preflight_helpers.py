"""Helpers of the preflight tests: the control API, and the command run with Graph's real budget
settings."""

from __future__ import annotations

import io
from typing import Any

import requests
from django.core.management import call_command
from django.test import override_settings

REAL_BUDGET = {"GRAPH_BUDGET_REPORTS": "5/10", "GRAPH_BUDGET_IDENTITY": "3500/10"}


def control(server: Any, name: str, body: dict[str, Any]) -> dict[str, Any]:
    """POST /_emulator/<name> (the control API), as a test would from outside."""
    session = requests.Session()
    session.trust_env = False
    answer = session.post(
        f"{server.base_url}/_emulator/{name}", json=body, verify=str(server.ca_path), timeout=10
    )
    assert answer.status_code == 200, answer.text
    result: dict[str, Any] = answer.json()
    return result


def tenant_check(*args: str) -> tuple[int, str]:
    """Run the command; (exit status, stdout)."""
    out = io.StringIO()
    with override_settings(**REAL_BUDGET):
        try:
            call_command("tenant_check", *args, stdout=out)
        except SystemExit as exc:
            return int(exc.code or 0), out.getvalue()
    return 0, out.getvalue()
