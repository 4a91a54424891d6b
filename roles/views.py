"""The pages of /roles/: who holds PAA and its neighbours, adding and removing holders, deciding
and following changes. Admin-only; each view is a role decorator, a lookup, one service call.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from accounts.capabilities import tenant_capabilities
from accounts.roles import role_required
from graph import groups as graph_groups
from graph import users as graph_users
from graph.errors import GraphError
from graph.results import Group, User
from outbox.errors import PolicyError, QueueUnavailable
from outbox.live import live_stamp
from outbox.states import CANCELLABLE_STATUSES
from portal.graph_client import get_graph_client
from roles import catalog, page, services
from roles.forms import AddHolderForm, DecisionForm, RemoveHolderForm
from roles.guards import removal_guard_message
from roles.holders import Holding, RoleHolders, latest_snapshot, refresh_in_progress
from roles.models import HoldKind, RoleChange, RoleChangeRequest, RoleHolderSnapshot
from roles.permissions import ROLES_PAGE_ROLES, can_decide, get_role_change_for_user
from roles.tiering import oid_of

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


def removal_refusal(
    user: Any,
    holdings: tuple[Holding, ...],
    holding: Holding,
    *,
    also_removing: list[Holding],
) -> str:
    """Why ``services.role_change_create`` would refuse ``user`` removing ``holding`` (with
    the removals ``also_removing`` under way), as far as the snapshot tells; empty when a Remove
    button is shown. The service decides again on what Graph says when the form is sent: this
    only spares an Admin a button that cannot work.
    """
    if holding.principal_id.lower() == oid_of(user).lower():
        return "Your own role: another Admin must remove it."
    refusal = removal_guard_message(holdings, removing=holding, also_removing=also_removing)
    if refusal:
        return (
            "The last active Global Administrator cannot be removed."
            if holding.role_name == catalog.GLOBAL_ADMIN
            else f"The last active {holding.role_name} holder cannot be removed: add another first."
        )
    return ""


def pim_unavailable() -> str:
    """Why the tenant has no PIM (its licence and Graph's answer), or empty when it has
    (``accounts.capabilities``: learnt once and cached)."""
    capabilities = tenant_capabilities()
    return "" if capabilities.pim else capabilities.pim_unavailable_reason


def _holders_context(request: HttpRequest) -> dict[str, Any]:
    snapshot = latest_snapshot()
    refresh = refresh_in_progress()
    if snapshot is None and refresh is None:
        # First visit ever: read the holders now (interactive priority) and poll for them.
        refresh = services.role_holders_refresh_request(trigger="button", by=request.user)
    rows: dict[str, list[page.HolderRow]] = {}
    warnings: list[page.RoleWarning] = []
    holders = RoleHolders(taken_at=timezone.now())
    if snapshot is not None:
        holders = RoleHolders.from_json(snapshot.holders)
        rows, warnings = page.role_rows(holders)
    open_changes = RoleChangeRequest.objects.open().order_by("created_at")
    pending_by_key = {(c.role_name, c.principal_id.lower()): c for c in open_changes}
    removing = {
        name: services.open_removals(name, holders.of(name))
        if name in catalog.ROLES_NEVER_EMPTY
        else []
        for name in catalog.ROLES_SHOWN
    }
    roles = [
        {
            "name": name,
            "read_only": catalog.role_is_read_only(name),
            "needs_approval": catalog.role_needs_approval(name),
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
        for name in catalog.ROLES_SHOWN
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
        "warnings": [*page.configuration_warnings(), *warnings],
        "pim_unavailable": pim_unavailable(),
    }


@require_GET
@role_required(*ROLES_PAGE_ROLES)
def directory_roles(request: HttpRequest) -> HttpResponse:
    """Every holder of the roles that govern MFA, with warnings and the changes under way.
    htmx polls the holders fragment while a refresh runs."""
    context = _holders_context(request)
    if _is_htmx(request):
        response = render(request, "roles/_holders.html", context)
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
        response = render(request, "roles/list.html", context)
    response["Vary"] = "HX-Request"
    return response


@require_POST
@role_required(*ROLES_PAGE_ROLES)
def roles_refresh(request: HttpRequest) -> HttpResponse:
    """Read every holder again now (interactive priority in the shared Graph budget)."""
    services.role_holders_refresh_request(trigger="button", by=request.user, http_request=request)
    if _is_htmx(request):
        return render(request, "roles/_holders.html", _holders_context(request))
    messages.info(request, "Reading the holders from Entra…")
    return redirect("roles:directory_roles")


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
@role_required(*ROLES_PAGE_ROLES)
def role_principals(request: HttpRequest) -> HttpResponse:
    """The people matching ``q``, as radio choices for the add form (htmx fragment)."""
    people, problem = _search_people(request.GET.get("q", ""))
    return render(
        request,
        "roles/_principal_choices.html",
        {"people": people, "problem": problem, "q": request.GET.get("q", ""), "chosen": ""},
    )


@require_http_methods(["GET", "POST"])
@role_required(*ROLES_PAGE_ROLES)
def role_add(request: HttpRequest) -> HttpResponse:
    """Add a holder: person (searched) or role-assignable group, role, kind, end, why. A refusal
    is shown above the form; 503 when Redis is down (nothing was recorded)."""
    status = 200
    no_pim = pim_unavailable()
    if request.method == "POST":
        form = AddHolderForm(request.POST, pim_unavailable=no_pim)
        if form.is_valid():
            principal_type, principal_id = form.cleaned_data["principal"]
            try:
                row = services.role_change_create(
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
            except QueueUnavailable as exc:
                form.add_error(None, exc.message)
                status = 503
            except PolicyError as exc:
                form.add_error(None, exc.message)
            except GraphError as exc:
                form.add_error(None, _graph_message(exc, "read the directory"))
            else:
                return redirect("roles:role_change_detail", row.public_id)
        q = request.POST.get("q", "")
    else:
        role = request.GET.get("role", "")
        form = AddHolderForm(
            initial={"role": role} if role in catalog.managed_roles() else {},
            pim_unavailable=no_pim,
        )
        q = request.GET.get("q", "")
    people, problem = _search_people(q)
    groups, group_problem = _assignable_groups()
    return render(
        request,
        "roles/add.html",
        {
            "form": form,
            "q": q,
            "people": people,
            "problem": problem,
            "groups": groups,
            "group_problem": group_problem,
            "chosen": request.POST.get("principal", ""),
            "approval_roles": settings.ROLES_REQUIRING_APPROVAL,
            "pim_unavailable": no_pim,
        },
        status=status,
    )


@require_http_methods(["GET", "POST"])
@role_required(*ROLES_PAGE_ROLES)
def role_remove(request: HttpRequest) -> HttpResponse:
    """Remove one holding (``role``, ``principal``, ``how`` in the query string) with a
    justification. The guards answer here, before anything is queued."""
    role_name = request.GET.get("role", "")
    principal_id = request.GET.get("principal", "").lower()
    how = request.GET.get("how", "")
    if role_name not in catalog.ROLES_SHOWN or how not in (HoldKind.ACTIVE, HoldKind.ELIGIBLE):
        raise Http404("No such holding")
    snapshot = latest_snapshot()
    holding = None
    if snapshot is not None:
        holders = RoleHolders.from_json(snapshot.holders)
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
    status = 200
    if request.method == "POST" and form.is_valid():
        try:
            row = services.role_change_create(
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
        except QueueUnavailable as exc:
            form.add_error(None, exc.message)
            status = 503
        except PolicyError as exc:
            form.add_error(None, exc.message)
        except GraphError as exc:
            form.add_error(None, _graph_message(exc, "read the role's holders"))
        else:
            return redirect("roles:role_change_detail", row.public_id)
    return render(
        request,
        "roles/remove.html",
        {"form": form, "holding": holding, "role_name": role_name, "how": how},
        status=status,
    )


@require_GET
@role_required(*ROLES_PAGE_ROLES)
def role_change_detail(request: HttpRequest, public_id: str) -> HttpResponse:
    """One change; htmx polls its status fragment until it is final."""
    row = get_role_change_for_user(request.user, public_id)
    deciding = can_decide(request.user, row)
    # Both in the live fragment: they go as soon as the change moves on.
    cancellable = row.status in CANCELLABLE_STATUSES
    context = {
        "rc": row,
        "can_decide": deciding,
        "can_cancel": cancellable,
        "decision_form": DecisionForm(),
        "live_stamp": live_stamp(row, row.entra_event_ids, deciding, cancellable),
    }
    if _is_htmx(request) and request.GET.get("seen") == context["live_stamp"]:
        # Nothing new: htmx swaps nothing on a 204, so a comment being typed stays.
        response = HttpResponse(status=204)
    else:
        template = "roles/_change_status.html" if _is_htmx(request) else "roles/change_detail.html"
        response = render(request, template, context)
    response["Vary"] = "HX-Request"
    return response


@require_POST
@role_required(*ROLES_PAGE_ROLES)
def role_change_decide(request: HttpRequest, public_id: str) -> HttpResponse:
    """Approve or reject (``decision``) a change waiting for a second Admin."""
    row = get_role_change_for_user(request.user, public_id)
    form = DecisionForm(request.POST)
    decision = request.POST.get("decision")
    if decision not in ("approve", "reject") or not form.is_valid():
        messages.error(request, "Choose Approve or Reject.")
        return redirect("roles:role_change_detail", row.public_id)
    decide = services.role_change_approve if decision == "approve" else services.role_change_reject
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
    return redirect("roles:role_change_detail", row.public_id)


@require_POST
@role_required(*ROLES_PAGE_ROLES)
def role_change_cancel(request: HttpRequest, public_id: str) -> HttpResponse:
    row = get_role_change_for_user(request.user, public_id)
    try:
        services.role_change_cancel(role_change=row, by=request.user, http_request=request)
    except PolicyError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, "Change cancelled.")
    return redirect("roles:role_change_detail", row.public_id)
