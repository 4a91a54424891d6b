"""The preflight's checks about the tenant: licence capabilities and audit retention, the
Temporary Access Pass policy, the beta endpoints, the directory audit log, the protected groups,
and (settings only, no call) the Graph budget. Each returns pass, warn or fail with the fix."""

from __future__ import annotations

import uuid
from collections.abc import Callable

from django.conf import settings

from accounts.capabilities import tenant_capabilities
from graph import GraphClient
from graph import audit_logs as graph_audit
from graph import groups as graph_groups
from graph import methods as graph_methods
from graph import requirements as graph_requirements
from graph.beta import BETA_PATHS
from graph.budget import BudgetRate
from graph.errors import GraphError, GraphNotFound, GraphPermissionDenied
from mfa.policy import tap_lifetime_bounds
from preflight.checks import Context, graph_failure, no_token, permission_fix, worse
from preflight.permissions import needed_for
from preflight.results import CheckResult, Status

# Graph's documented limits (https://learn.microsoft.com/graph/throttling-limits): "identity and
# access reports" 5 requests per 10 s per app and tenant; "identity and access" 3,500 / 5,000 /
# 8,000 resource units per 10 s for small / medium / large tenants (a read costs 1 or more).
REPORTS_LIMIT = (5, 10.0)
IDENTITY_LIMITS = {"small (under 50 users)": 3500, "medium (50-500 users)": 5000, "larger": 8000}
AUTH_METHODS_POLICY = (
    "Entra admin center > Protection > Authentication methods > Policies > Temporary Access Pass"
)


def check_licence(ctx: Context) -> CheckResult:
    key, title = "licence", "Licence capabilities"
    if ctx.client is None:
        return no_token(key, title, ctx)
    caps = tenant_capabilities(ctx.client, refresh=True)
    licence = {"p2": "Entra ID P2", "p1": "Entra ID P1", "free": "Entra ID Free"}.get(
        caps.licence, "P1 or Free (not P2)" if not caps.pim else "unknown"
    )
    retention = f"audit log retention {caps.audit_retention_days} days"
    if caps.licence == "unknown" and not caps.pim:
        # PIM's refusal does not tell P1 from Free, and the portal adds no permission (such as
        # LicenseAssignment.Read.All for subscribedSkus) only to tell them apart.
        retention = (
            f"audit log retention 30 days with P1, 7 with Free (PIM's answer does not tell them "
            f"apart; the portal counts on {caps.audit_retention_days})"
        )
    details = (f"Licence: {licence}", f"Learnt from: {caps.source}")
    if caps.pim:
        return CheckResult(key, title, Status.PASS, f"PIM available; {retention}", details)
    return CheckResult(
        key,
        title,
        Status.WARN,
        f"PIM unavailable; {retention}",
        (*details, caps.pim_unavailable_reason),
        "Nothing to fix for the portal to work: without Privileged Identity Management the roles "
        "page offers active assignments only (no eligible or time-bound ones) and the audit "
        f"history reaches back {caps.audit_retention_days} days. For PIM, the tenant needs "
        "Microsoft Entra ID P2 (or ID Governance) licences.",
    )


def check_tap_policy(ctx: Context) -> CheckResult:
    key, title = "tap_policy", "Temporary Access Pass policy"
    if ctx.client is None:
        return no_token(key, title, ctx)
    try:
        policy = graph_methods.get_tap_policy(ctx.client)
    except GraphError as exc:
        fix = ""
        if isinstance(exc, GraphPermissionDenied):
            name = needed_for("methods.tap_policy")
            fix = f"Grant {name}: " + permission_fix(ctx, name) + "."
        return CheckResult(
            key, title, Status.FAIL, f"cannot read the policy: {graph_failure(exc)}", (), fix
        )
    low, high = tap_lifetime_bounds(policy)
    bounds = (
        f"lifetime {low}-{high} minutes (default {policy.default_lifetime_in_minutes}), "
        f"length {policy.default_length}, "
        + ("one-time use only" if policy.is_usable_once else "one-time or reusable")
    )
    if not policy.enabled:
        return CheckResult(
            key,
            title,
            Status.FAIL,
            f"Temporary Access Pass is {policy.state or 'not enabled'} ({bounds})",
            ("The portal's 'Issue a Temporary Access Pass' action is refused until it is on.",),
            f"{AUTH_METHODS_POLICY} > Enable, Target: All users (or the groups the helpdesk "
            "serves) > Save.",
        )
    if low > high:
        return CheckResult(
            key,
            title,
            Status.FAIL,
            f"enabled, but no lifetime fits both Graph and the policy ({bounds})",
            (),
            f"{AUTH_METHODS_POLICY} > Configure: set a minimum lifetime below the maximum.",
        )
    return CheckResult(key, title, Status.PASS, f"enabled; {bounds}")


# Each beta path the portal uses, with a read that exercises it on one user.
_BETA_READS: dict[str, tuple[str, Callable[[Context, str], str]]] = {
    "/beta/users/{user_id}/authentication/requirements": (
        "per-user MFA state",
        lambda ctx, user: (
            graph_requirements.get_per_user_mfa_state(_client(ctx), user).raw_state or "unset"
        ),
    ),
    "/beta/users/{user_id}/authentication/signInPreferences": (
        "sign-in preferences",
        lambda ctx, user: (
            graph_requirements.get_sign_in_preferences(_client(ctx), user).raw_preferred_method
            or "no default method"
        ),
    ),
}


def _client(ctx: Context) -> GraphClient:
    assert ctx.client is not None
    return ctx.client


def check_beta_endpoints(ctx: Context) -> CheckResult:
    key, title = "beta", "Beta endpoints"
    if ctx.client is None:
        return no_token(key, title, ctx)
    user = ctx.known_user_id
    if not user:
        return CheckResult(
            key,
            title,
            Status.WARN,
            "not checked: no known user to read (nobody holds a portal app role)",
            fix="Assign a portal app role to someone (see Portal app roles), or run "
            "`manage.py tenant_check --user <upn>`.",
        )
    lines: list[str] = []
    fixes: list[str] = []
    status = Status.PASS
    for path, _why in BETA_PATHS:
        read = _BETA_READS.get(path)
        if read is None:
            status = worse(status, Status.WARN)
            lines.append(f"{path}: no preflight read for it (preflight/tenant_checks.py)")
            continue
        label, call = read
        try:
            answer = call(ctx, user)
        except GraphError as exc:
            status = Status.FAIL
            lines.append(f"GET {path}: {graph_failure(exc)}")
            if isinstance(exc, GraphPermissionDenied):
                fixes.append(f"{path} was refused: see Application permissions.")
            elif isinstance(exc, GraphNotFound) and exc.code != "Request_ResourceNotFound":
                fixes.append(
                    f"{path} is gone from Graph beta: the portal's {label} panel cannot work; "
                    "see graph/beta.py for what it is used for."
                )
            else:
                fixes.append(f"{path}: retry later; if it persists, see graph/beta.py.")
            continue
        lines.append(f"GET {path}: answered ({label}: {answer})")
    summary = {
        Status.PASS: f"{len(BETA_PATHS)} beta endpoint(s) answered for user {user}",
        Status.WARN: "some beta endpoints were not checked",
        Status.FAIL: "a beta endpoint the portal uses does not answer",
    }[status]
    return CheckResult(key, title, status, summary, tuple(lines), "\n".join(fixes))


def check_audit_log(ctx: Context) -> CheckResult:
    key, title = "audit_log", "Directory audit log"
    if ctx.client is None:
        return no_token(key, title, ctx)
    try:
        page = graph_audit.directory_audits_page(ctx.client, top=1, newest_first=True)
    except GraphError as exc:
        fix = ""
        if isinstance(exc, GraphPermissionDenied):
            fix = "Grant AuditLog.Read.All: " + permission_fix(ctx, "AuditLog.Read.All") + "."
        return CheckResult(
            key, title, Status.FAIL, f"cannot read it: {graph_failure(exc)}", (), fix
        )
    newest = page.items[0] if page.items else None
    if newest is None:
        return CheckResult(key, title, Status.PASS, "readable ($top=1); it holds no events")
    when = f"{newest.activity_date_time:%Y-%m-%d %H:%M} UTC" if newest.activity_date_time else "?"
    return CheckResult(
        key,
        title,
        Status.PASS,
        "readable ($top=1)",
        (f"Newest event: {newest.activity_display_name} at {when}",),
    )


def check_protected_groups(ctx: Context) -> CheckResult:
    key, title = "protected_groups", "Protected groups"
    ids = [str(g).strip() for g in settings.PORTAL_PROTECTED_GROUP_IDS if str(g).strip()]
    if not ids:
        return CheckResult(
            key,
            title,
            Status.PASS,
            "none configured (PORTAL_PROTECTED_GROUP_IDS): only directory roles make a person "
            "privileged",
        )
    if ctx.client is None:
        return no_token(key, title, ctx)
    lines: list[str] = []
    bad: list[str] = []
    fixes: list[str] = []
    for group_id in ids:
        try:
            uuid.UUID(group_id)
        except ValueError:
            bad.append(group_id)
            lines.append(f"{group_id}: not an object id (a GUID)")
            fixes.append(
                f"PORTAL_PROTECTED_GROUP_IDS: replace {group_id!r} by the group's Object ID."
            )
            continue
        try:
            members = graph_groups.first_members(ctx.client, group_id)
        except GraphError as exc:
            bad.append(group_id)
            lines.append(f"{group_id}: {graph_failure(exc)}")
            if isinstance(exc, GraphNotFound):
                fixes.append(
                    f"No group has the id {group_id}: copy the Object ID from Entra admin "
                    "center > Identity > Groups > All groups > the group > Overview, into "
                    "PORTAL_PROTECTED_GROUP_IDS."
                )
            elif isinstance(exc, GraphPermissionDenied):
                fixes.append(
                    "Grant GroupMember.Read.All: " + permission_fix(ctx, "GroupMember.Read.All")
                )
            continue
        lines.append(f"{group_id}: exists" + ("" if members else " (no members)"))
    if bad:
        return CheckResult(
            key,
            title,
            Status.FAIL,
            f"{len(bad)} of {len(ids)} cannot be used: " + ", ".join(bad),
            tuple(lines),
            "\n".join(fixes),
        )
    return CheckResult(key, title, Status.PASS, f"{len(ids)} configured, each exists", tuple(lines))


def check_budget_settings(ctx: Context) -> CheckResult:
    key, title = "budget", "Graph budget settings"
    lines: list[str] = []
    fixes: list[str] = []
    status = Status.PASS
    try:
        reports = BudgetRate.parse(settings.GRAPH_BUDGET_REPORTS)
        identity = BudgetRate.parse(settings.GRAPH_BUDGET_IDENTITY)
    except ValueError as exc:
        return CheckResult(
            key, title, Status.FAIL, str(exc), (), "Write requests/seconds, e.g. 5/10."
        )
    count, window = REPORTS_LIMIT
    reports_rate = reports.requests / reports.per_seconds
    lines.append(
        f"GRAPH_BUDGET_REPORTS {settings.GRAPH_BUDGET_REPORTS}: Graph allows {count} per "
        f"{window:g} s per app and tenant (identity and access reports)"
    )
    if reports_rate > count / window or reports.requests > count:
        status = Status.FAIL
        fixes.append(
            f"GRAPH_BUDGET_REPORTS={count}/{window:g}: above Graph's limit every burst of "
            "method or audit reads ends in 429s and waits."
        )
    identity_rate = identity.requests / identity.per_seconds * 10
    lines.append(
        f"GRAPH_BUDGET_IDENTITY {settings.GRAPH_BUDGET_IDENTITY}: Graph allows, in resource "
        "units per 10 s, " + ", ".join(f"{v} to a {k} tenant" for k, v in IDENTITY_LIMITS.items())
    )
    if identity_rate > max(IDENTITY_LIMITS.values()):
        status = Status.FAIL
        fixes.append("GRAPH_BUDGET_IDENTITY=3500/10: no tenant gets more than 8000 per 10 s.")
    elif identity_rate > min(IDENTITY_LIMITS.values()):
        status = worse(status, Status.WARN)
        fixes.append(
            "GRAPH_BUDGET_IDENTITY above 3500/10 suits only medium (5000) or large (8000) "
            "tenants; keep 3500/10 unless yours is one."
        )
    reserve = settings.GRAPH_INTERACTIVE_RESERVE
    lines.append(f"GRAPH_INTERACTIVE_RESERVE {reserve}: tokens only people at the portal may take")
    if reserve >= reports.requests:
        status = Status.FAIL
        fixes.append(
            f"GRAPH_INTERACTIVE_RESERVE must be below the reports budget ({reports.requests}): "
            "background work could never read methods or the audit log. Use 1."
        )
    summary = {
        Status.PASS: "within Graph's documented limits",
        Status.WARN: "plausible, see below",
        Status.FAIL: "beyond Graph's documented limits",
    }[status]
    return CheckResult(key, title, status, summary, tuple(lines), "\n".join(fixes))
