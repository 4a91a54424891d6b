"""The Admin page of the preflight: the last run's results, and a button (POST) that runs the
checks again. A GET never calls Graph (the reports budget is 5 requests per 10 s for the whole
portal); only the button does, once per press."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from accounts.roles import ADMIN_ROLES, role_required
from preflight.checks import callback_path, run_checks
from preflight.results import Status, last_report, store_last_report
from roles.tiering import oid_of

# The portal roles that reach /preflight/.
PREFLIGHT_ROLES: tuple[str, ...] = ADMIN_ROLES

_BADGES = {Status.PASS: "badge--ok", Status.WARN: "badge--priv", Status.FAIL: "badge--off"}
_NOTICES = {Status.PASS: "success", Status.WARN: "warning", Status.FAIL: "error"}


@role_required(*PREFLIGHT_ROLES)
@require_http_methods(["GET", "POST"])
def tenant_check(request: HttpRequest) -> HttpResponse:
    if request.method == "POST":
        # The callback URL as this request reaches the portal: what the sign-in sends Entra.
        ran = run_checks(
            callback_urls=[request.build_absolute_uri(callback_path())],
            known_user_id=oid_of(request.user),
            by=getattr(getattr(request.user, "portal_profile", None), "upn", "")
            or request.user.get_username(),
        )
        store_last_report(ran)
        return redirect("preflight:tenant_check")
    report = last_report()
    rows = [
        {"result": r, "badge": _BADGES[r.status], "fix_lines": r.fix.splitlines()}
        for r in (report.results if report else ())
    ]
    return render(
        request,
        "preflight/tenant_check.html",
        {
            "report": report,
            "rows": rows,
            "notice": _NOTICES[report.status] if report else "",
            "counts": {s.value: report.count(s) for s in Status} if report else {},
        },
    )
