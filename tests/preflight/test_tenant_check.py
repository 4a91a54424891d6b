"""``manage.py tenant_check`` against the emulator: it passes on the demo tenant, and names the
missing permission or app role, with its fix, when one is removed from the portal's app
registration (POST /_emulator/app), and says what the licence allows in each licence mode.

Every test that changes the emulator gives it back (reset, P2): the emulator is shared by the
test worker. The budget settings are Graph's real ones here (the run's wide test budget would
fail the budget item, rightly)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.test import override_settings

from accounts.capabilities import RETENTION_DAYS
from entra_emulator.seed import APP_ROLE_VALUES, PORTAL_APPLICATION_PERMISSIONS, stable_id
from preflight import permissions
from tests.preflight.preflight_helpers import REAL_BUDGET, control, tenant_check

pytestmark = pytest.mark.django_db


def line_of(output: str, title: str) -> str:
    return next(line for line in output.splitlines() if line.split("] ", 1)[-1].startswith(title))


def test_passes_on_the_demo_tenant(emulator_app: Any) -> None:
    status, output = tenant_check()
    assert status == 0, output
    assert "[FAIL]" not in output
    for title in (
        "Credentials",
        "Application permissions",
        "Portal app roles",
        "Redirect URI",
        "Token version",
        "Application ID URI",
        "Licence capabilities",
        "Temporary Access Pass policy",
        "Beta endpoints",
        "Directory audit log",
        "Protected groups",
        "Graph budget settings",
    ):
        assert line_of(output, title)
    assert "[PASS] Licence capabilities: PIM available; audit log retention 30 days" in output
    assert "[PASS] Temporary Access Pass policy: enabled" in output
    # Who holds the portal's roles is listed.
    assert "Helpdesk.Admin: " in output and "Ana Admin (user)" in output


def test_json_report(emulator_app: Any) -> None:
    status, output = tenant_check("--json")
    report = json.loads(output)
    assert status == 0 and report["status"] in {"pass", "warn"}
    assert [r["key"] for r in report["results"]][:3] == ["credentials", "permissions", "app_roles"]


def _stand_ins(name: str) -> set[str]:
    """Permissions that allow every operation ``name`` is needed for."""
    needing = [a for a in permissions.OPERATION_PERMISSIONS.values() if name in a.accepted]
    return set.intersection(*(set(a.accepted) for a in needing)) - {name} if needing else set()


# The needed permissions the demo app holds with nothing broader beside them (its
# User.ReadWrite.All stands in for User.Read.All and User.RevokeSessions.All).
DEMO_REMOVABLE = [
    p
    for p in permissions.needed_permissions()
    if p in PORTAL_APPLICATION_PERMISSIONS and not _stand_ins(p) & PORTAL_APPLICATION_PERMISSIONS
]


@pytest.mark.parametrize("removed", DEMO_REMOVABLE)
def test_names_a_permission_removed_from_the_demo_app(emulator_app: Any, removed: str) -> None:
    granted = PORTAL_APPLICATION_PERMISSIONS - {removed}
    control(emulator_app, "app", {"application_permissions": sorted(granted)})
    status, output = tenant_check()
    assert status == 1, output
    assert f"MISSING {removed}: needed for " in output


@pytest.mark.parametrize("removed", permissions.needed_permissions())
def test_names_a_removed_permission_and_its_fix(emulator_app: Any, removed: str) -> None:
    # Exactly the needed ones, less one (the demo's broader User.ReadWrite.All would stand in
    # for User.Read.All and User.RevokeSessions.All).
    granted = [p for p in permissions.needed_permissions() if p != removed]
    control(emulator_app, "app", {"application_permissions": granted})
    status, output = tenant_check()
    assert status == 1, output
    assert f"[FAIL] Application permissions: missing {removed}" in output
    assert f"MISSING {removed}: needed for " in output
    assert (
        "API permissions > Add a permission > Microsoft Graph > Application permissions > "
        f"{removed} > Add permissions, then Grant admin consent for the tenant"
    ) in output


def test_least_privilege_warns_about_broader_and_unneeded_permissions(emulator_app: Any) -> None:
    needed = set(permissions.needed_permissions())
    extra = (needed - {"User.RevokeSessions.All"}) | {"User.ReadWrite.All", "Mail.Send"}
    control(emulator_app, "app", {"application_permissions": sorted(extra)})
    status, output = tenant_check()
    assert status == 0, output
    assert "[WARN] Application permissions" in output
    assert (
        "BROADER THAN NEEDED User.ReadWrite.All: the portal needs only User.RevokeSessions.All"
        in output
    )
    assert "NOT NEEDED Mail.Send" in output


def test_exact_permissions_pass(emulator_app: Any) -> None:
    control(
        emulator_app, "app", {"application_permissions": list(permissions.needed_permissions())}
    )
    status, output = tenant_check()
    assert status == 0, output
    assert (
        "[PASS] Application permissions: all 8 needed permissions granted, nothing more" in output
    )


@pytest.mark.parametrize("removed", APP_ROLE_VALUES)
def test_names_a_removed_app_role(emulator_app: Any, removed: str) -> None:
    roles = {v: stable_id("appRoles", v) for v in APP_ROLE_VALUES if v != removed}
    control(emulator_app, "app", {"app_roles": roles})
    status, output = tenant_check()
    assert status == 1, output
    assert f"[FAIL] Portal app roles: missing or disabled: {removed}" in output
    assert f"MISSING app role {removed}" in output
    assert f"App roles > Create app role: Display name {removed.split('.')[1]}" in output
    assert f"Value {removed}" in output


def test_names_an_unregistered_redirect_uri(emulator_app: Any) -> None:
    control(
        emulator_app, "app", {"redirect_uris": ["https://elsewhere.example.com/oauth2/callback"]}
    )
    status, output = tenant_check("--url", "https://helpdesk.example.com")
    assert status == 1
    assert (
        "[FAIL] Redirect URI: not registered: https://helpdesk.example.com/oauth2/callback"
        in output
    )
    assert (
        "Authentication > Web > Redirect URIs > Add URI: https://helpdesk.example.com/oauth2/callback"
        in output
    )


def test_names_v1_tokens_and_a_missing_application_id_uri(emulator_app: Any) -> None:
    control(emulator_app, "app", {"requested_access_token_version": 1, "identifier_uris": []})
    status, output = tenant_check()
    assert status == 1
    assert "[FAIL] Token version: api.requestedAccessTokenVersion is 1" in output
    assert '"requestedAccessTokenVersion": 2' in output
    assert "[FAIL] Application ID URI: api://" in output
    assert "Expose an API > Application ID URI > Add > api://" in output


@pytest.mark.parametrize("licence", ["free", "p1"])
def test_licence_line_without_p2(emulator_app: Any, licence: str) -> None:
    """P1 and Free refuse PIM alike, so the line names both retentions and the one relied on."""
    control(emulator_app, "licence", {"licence": licence})
    status, output = tenant_check()
    assert status == 0, output  # the portal works without PIM: a warning, not a failure
    line = line_of(output, "Licence capabilities")
    assert line.startswith("[WARN] Licence capabilities: PIM unavailable; audit log retention")
    assert f"30 days with P1, {RETENTION_DAYS['free']} with Free" in line
    assert f"the portal counts on {RETENTION_DAYS['free']}" in line


def test_licence_line_in_p1_says_pim_unavailable(emulator_app: Any) -> None:
    control(emulator_app, "licence", {"licence": "p1"})
    status, output = tenant_check()
    assert status == 0, output
    line = line_of(output, "Licence capabilities")
    assert line.startswith("[WARN] Licence capabilities: PIM unavailable; audit log retention")
    assert "P2" in output  # the reason names the licence PIM needs


def test_a_bad_secret_fails_credentials_with_the_fix(emulator_app: Any) -> None:
    with override_settings(ENTRA_CLIENT_SECRET="not-the-secret"):
        status, output = tenant_check()
    assert status == 1
    line = line_of(output, "Credentials")
    assert line.startswith("[FAIL] Credentials: no app token with the client secret")
    assert "AADSTS7000215" in line  # Entra's answer, and the hint for it:
    assert "Fix: The client secret is wrong: Certificates & secrets > Client secrets" in output
    assert "[WARN] Application permissions: not checked" in output


def test_budget_settings_beyond_graphs_limits_fail() -> None:
    from preflight.checks import Context
    from preflight.tenant_checks import check_budget_settings

    ctx = Context(None, "t", "c", ())
    with override_settings(GRAPH_BUDGET_REPORTS="20/10", GRAPH_BUDGET_IDENTITY="3500/10"):
        result = check_budget_settings(ctx)
    assert result.status == "fail" and "GRAPH_BUDGET_REPORTS=5/10" in result.fix
    with override_settings(GRAPH_BUDGET_REPORTS="5/10", GRAPH_BUDGET_IDENTITY="6000/10"):
        result = check_budget_settings(ctx)
    assert result.status == "warn" and "medium (5000) or large (8000)" in result.fix
    with override_settings(**REAL_BUDGET):
        assert check_budget_settings(ctx).status == "pass"


def test_a_disabled_tap_policy_fails_with_the_fix(emulator_app: Any) -> None:
    with emulator_app.tenant.lock:
        emulator_app.tenant.tap_policy["state"] = "disabled"
    status, output = tenant_check()
    assert status == 1
    assert "[FAIL] Temporary Access Pass policy: Temporary Access Pass is disabled" in output
    assert "Authentication methods > Policies > Temporary Access Pass > Enable" in output


def test_a_protected_group_that_does_not_exist_fails(emulator_app: Any) -> None:
    gone = "11111111-2222-3333-4444-555555555555"
    with override_settings(PORTAL_PROTECTED_GROUP_IDS=[gone, "not-a-guid"]):
        status, output = tenant_check()
    assert status == 1
    assert f"[FAIL] Protected groups: 2 of 2 cannot be used: {gone}, not-a-guid" in output
    assert f"No group has the id {gone}: copy the Object ID" in output
    assert "replace 'not-a-guid' by the group's Object ID" in output
