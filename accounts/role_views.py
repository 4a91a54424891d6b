"""The pages of /roles/: who holds PAA and its neighbours, adding and removing holders, deciding
and following changes. Admin-only; each view is a role decorator, a lookup, one service call.
"""

from __future__ import annotations

import uuid
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from accounts import role_admin, role_services
from accounts.models import HoldKind, RoleChange, RoleChangeRequest, RoleHolderSnapshot
from accounts.role_forms import AddHolderForm, DecisionForm, RemoveHolderForm
from accounts.roles import Role, role_required
from graph import groups as graph_groups
from graph import users as graph_users
from graph.errors import GraphError
from graph.results import Group, User
from mfa.models import Status
from mfa.policy import PolicyError
from portal.graph_client import get_graph_client

ADMIN = Role.ADMIN
SEARCH_MAX = 120


def _is_htmx(request: HttpRequest) -> bool:
    return (
        request.headers.get("HX-Request") == "true"
        and request.headers.get("HX-History-Restore-Request") != "true"
    )


def _graph_message(exc: GraphError, what: str) -> str:
    return (
        f"Could not {what}: Microsoft Graph answered {exc.code}: {exc.message} "
        f"(request-id {exc.request_id or 'none'})."
    )


def _get_role_change_for_user(user: Any, public_id: str) -> RoleChangeRequest:
    """The change ``public_id``; every Admin may see every change (the decorator has checked the
    role). Http404 for an unknown id."""
    try:
        return RoleChangeRequest.objects.get(public_id=uuid.UUID(str(public_id)))
    except (ValueError, RoleChangeRequest.DoesNotExist) as exc:
        raise Http404("No such role change") from exc


def can_decide(user: Any, row: RoleChangeRequest) -> bool:
    """Whether ``user`` sees Approve/Reject: waiting, and not their own change or own roles."""
    if row.status != Status.AWAITING_APPROVAL:
        return False
    try:
        role_services.role_change_check_may_decide(user, row)
    except PolicyError:
        return False
    return True


def removal_refusal(
    user: Any,
    holdings: tuple[role_admin.Holding, ...],
    holding: role_admin.Holding,
    *,
    also_removing: list[role_admin.Holding],
) -> str:
    """Why ``role_services.role_change_create`` would refuse ``user`` removing ``holding`` (with
    the removals ``also_removing`` under way), as far as the snapshot tells; empty when a Remove
    button is shown. The service decides again on what Graph says when the form is sent: this
    only spares an Admin a button that cannot work.
    """
    if holding.principal_id.lower() == role_admin._oid_of(user).lower():
        return "Your own role: another Admin must remove it."
    refusal = role_admin.removal_guard_message(
        holdings, removing=holding, also_removing=also_removing
    )
    if refusal:
        return (
            "The last active Global Administrator cannot be removed."
            if holding.role_name == role_admin.GLOBAL_ADMIN
            else f"The last active {holding.role_name} holder cannot be removed: add another first."
        )
    return ""


def _holders_context(request: HttpRequest) -> dict[str, Any]:
    snapshot = role_admin.latest_snapshot()
    refresh = role_admin.refresh_in_progress()
    if snapshot is None and refresh is None:
        # First visit ever: read the holders now (interactive priority) and poll for them.
        refresh = role_services.role_holders_refresh_request(trigger="button", by=request.user)
    rows: dict[str, list[role_admin.HolderRow]] = {}
    warnings: list[role_admin.RoleWarning] = []
    holders = role_admin.RoleHolders(taken_at=timezone.now())
    if snapshot is not None:
        holders = role_admin.RoleHolders.from_json(snapshot.holders)
        rows, warnings = role_admin.role_rows(holders)
    open_changes = RoleChangeRequest.objects.open().order_by("created_at")
    pending_by_key = {(c.role_name, c.principal_id.lower()): c for c in open_changes}
    removing = {
        name: role_services.open_removals(name, holders.of(name))
        if name in role_admin.ROLES_NEVER_EMPTY
        else []
        for name in role_admin.ROLES_SHOWN
    }
    roles = [
        {
            "name": name,
            "read_only": role_admin.role_is_read_only(name),
            "needs_approval": role_admin.role_needs_approval(name),
            "rows": [
                {
                    "row": r,
                    "open_change": pending_by_key.get((name, r.holding.principal_id.lower())),
                    "refusal": removal_refusal(
                        request.user,
                        holders.of(name),
                        r.holding,
                        also_removing=removing[name],
                    ),
                }
                for r in rows.get(name, [])
            ],
        }
        for name in role_admin.ROLES_SHOWN
    ]
    failed = None
    newest = RoleHolderSnapshot.objects.first()
    if newest is not None and newest.state == newest.State.FAILED and refresh is None:
        failed = newest
    return {
        "snapshot": snapshot,
        "refresh": refresh,
        "refresh_failed": failed,
        "roles": roles,
        "warnings": warnings,
    }


@require_GET
@role_required(ADMIN)
def directory_roles(request: HttpRequest) -> HttpResponse:
    """Every holder of the roles that govern MFA, with warnings and the changes under way.
    htmx polls the holders fragment while a refresh runs."""
    context = _holders_context(request)
    if _is_htmx(request):
        response = render(request, "accounts/roles/_holders.html", context)
    else:
        open_changes = list(RoleChangeRequest.objects.open().order_by("created_at"))
        context.update(
            {
                "open_changes": [
                    {"c": c, "can_decide": can_decide(request.user, c)} for c in open_changes
                ],
                "recent_changes": RoleChangeRequest.objects.exclude(
                    pk__in=[c.pk for c in open_changes]
                )[:10],
                "decision_form": DecisionForm(),
                "tiering_on": settings.PORTAL_MIRROR_ENTRA_TIERING,
            }
        )
        response = render(request, "accounts/roles/list.html", context)
    response["Vary"] = "HX-Request"
    return response


@require_POST
@role_required(ADMIN)
def roles_refresh(request: HttpRequest) -> HttpResponse:
    """Read every holder again now (interactive priority in the shared Graph budget)."""
    role_services.role_holders_refresh_request(
        trigger="button", by=request.user, http_request=request
    )
    if _is_htmx(request):
        return render(request, "accounts/roles/_holders.html", _holders_context(request))
    messages.info(request, "Reading the holders from Entra…")
    return redirect("accounts:directory_roles")


def _search_people(q: str) -> tuple[list[User], str]:
    text = q.strip()[:SEARCH_MAX]
    if len(text) < 2:
        return [], ""
    try:
        page = graph_users.search_users(get_graph_client(), text, top=15)
    except ValueError:
        return [], "Search for a name or an address."
    except GraphError as exc:
        return [], _graph_message(exc, "search the directory")
    return [u for u in page.items if not u.is_guest], ""


def _assignable_groups() -> tuple[list[Group], str]:
    try:
        return graph_groups.list_role_assignable_groups(get_graph_client()), ""
    except GraphError as exc:
        return [], _graph_message(exc, "list the role-assignable groups")


@require_GET
@role_required(ADMIN)
def role_principals(request: HttpRequest) -> HttpResponse:
    """The people matching ``q``, as radio choices for the add form (htmx fragment)."""
    people, problem = _search_people(request.GET.get("q", ""))
    return render(
        request,
        "accounts/roles/_principal_choices.html",
        {"people": people, "problem": problem, "q": request.GET.get("q", ""), "chosen": ""},
    )


@require_http_methods(["GET", "POST"])
@role_required(ADMIN)
def role_add(request: HttpRequest) -> HttpResponse:
    """Add a holder: person (searched) or role-assignable group, role, kind, end, why."""
    if request.method == "POST":
        form = AddHolderForm(request.POST)
        if form.is_valid():
            principal_type, principal_id = form.cleaned_data["principal"]
            try:
                row = role_services.role_change_create(
                    requester=request.user,
                    change=RoleChange.ADD,
                    role_name=form.cleaned_data["role"],
                    principal_id=principal_id,
                    principal_type=principal_type,
                    hold_kind=form.cleaned_data["kind"],
                    ends_at=form.ends_at(),
                    justification=form.cleaned_data["justification"],
                    ticket=form.cleaned_data["ticket"],
                    idempotency_key=form.cleaned_data["idempotency_key"],
                    http_request=request,
                )
            except PolicyError as exc:
                form.add_error(None, exc.message)
            except GraphError as exc:
                form.add_error(None, _graph_message(exc, "read the directory"))
            else:
                return redirect("accounts:role_change_detail", row.public_id)
        q = request.POST.get("q", "")
    else:
        role = request.GET.get("role", "")
        form = AddHolderForm(initial={"role": role} if role in role_admin.managed_roles() else {})
        q = request.GET.get("q", "")
    people, problem = _search_people(q)
    groups, group_problem = _assignable_groups()
    return render(
        request,
        "accounts/roles/add.html",
        {
            "form": form,
            "q": q,
            "people": people,
            "problem": problem,
            "groups": groups,
            "group_problem": group_problem,
            "chosen": request.POST.get("principal", ""),
            "approval_roles": settings.ROLES_REQUIRING_APPROVAL,
        },
    )


@require_http_methods(["GET", "POST"])
@role_required(ADMIN)
def role_remove(request: HttpRequest) -> HttpResponse:
    """Remove one holding (``role``, ``principal``, ``how`` in the query string) with a
    justification. The guards answer here, before anything is queued."""
    role_name = request.GET.get("role", "")
    principal_id = request.GET.get("principal", "").lower()
    how = request.GET.get("how", "")
    if role_name not in role_admin.ROLES_SHOWN or how not in (HoldKind.ACTIVE, HoldKind.ELIGIBLE):
        raise Http404("No such holding")
    snapshot = role_admin.latest_snapshot()
    holding = None
    if snapshot is not None:
        holders = role_admin.RoleHolders.from_json(snapshot.holders)
        holding = next(
            (
                h
                for h in holders.of(role_name)
                if h.principal_id.lower() == principal_id and h.how == how
            ),
            None,
        )
    if holding is None:
        raise Http404("No such holding")
    form = RemoveHolderForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            row = role_services.role_change_create(
                requester=request.user,
                change=RoleChange.REMOVE,
                role_name=role_name,
                principal_id=holding.principal_id,
                principal_type=holding.principal_type,
                hold_kind=how,
                justification=form.cleaned_data["justification"],
                ticket=form.cleaned_data["ticket"],
                idempotency_key=form.cleaned_data["idempotency_key"],
                http_request=request,
            )
        except PolicyError as exc:
            form.add_error(None, exc.message)
        except GraphError as exc:
            form.add_error(None, _graph_message(exc, "read the role's holders"))
        else:
            return redirect("accounts:role_change_detail", row.public_id)
    return render(
        request,
        "accounts/roles/remove.html",
        {"form": form, "holding": holding, "role_name": role_name, "how": how},
    )


@require_GET
@role_required(ADMIN)
def role_change_detail(request: HttpRequest, public_id: str) -> HttpResponse:
    """One change; htmx polls its status fragment until it is final."""
    row = _get_role_change_for_user(request.user, public_id)
    context = {"rc": row, "can_decide": can_decide(request.user, row)}
    if _is_htmx(request):
        response = render(request, "accounts/roles/_change_status.html", context)
    else:
        context["decision_form"] = DecisionForm()
        context["can_cancel"] = row.status in (Status.AWAITING_APPROVAL, Status.PENDING)
        response = render(request, "accounts/roles/change_detail.html", context)
    response["Vary"] = "HX-Request"
    return response


@require_POST
@role_required(ADMIN)
def role_change_decide(request: HttpRequest, public_id: str) -> HttpResponse:
    """Approve or reject (``decision``) a change waiting for a second Admin."""
    row = _get_role_change_for_user(request.user, public_id)
    form = DecisionForm(request.POST)
    decision = request.POST.get("decision")
    if decision not in ("approve", "reject") or not form.is_valid():
        messages.error(request, "Choose Approve or Reject.")
        return redirect("accounts:role_change_detail", row.public_id)
    decide = (
        role_services.role_change_approve
        if decision == "approve"
        else role_services.role_change_reject
    )
    try:
        decide(
            role_change=row,
            approver=request.user,
            comment=form.cleaned_data["comment"],
            http_request=request,
        )
    except PolicyError as exc:
        messages.error(request, exc.message)
    else:
        verb = "Approved" if decision == "approve" else "Rejected"
        messages.success(
            request,
            f"{verb}: {row.get_change_display().lower()} ({row.role_name}, {row.principal_name}).",
        )
    return redirect("accounts:role_change_detail", row.public_id)


@require_POST
@role_required(ADMIN)
def role_change_cancel(request: HttpRequest, public_id: str) -> HttpResponse:
    row = _get_role_change_for_user(request.user, public_id)
    try:
        role_services.role_change_cancel(role_change=row, by=request.user, http_request=request)
    except PolicyError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, "Change cancelled.")
    return redirect("accounts:role_change_detail", row.public_id)
