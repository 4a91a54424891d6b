"""The bulk operations' pages (issue 14): the list, start, the dry run, the live watch page,
the decisions on an operation and the results' export.

Every state change is one call of ``bulk.services``; a refusal (``PolicyError``: wrong state,
not allowed, size above the maximum) comes back as a message, and nothing changed.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator
from typing import Any

from django.contrib import messages
from django.db.models import Count, Max, Q
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from accounts.roles import BULK_ROLES, RESPONDER_ROLES, Role, has_role, role_required
from bulk import permissions, services
from bulk.errors import BulkError
from bulk.forms import BulkDecisionForm, BulkStartForm, PersonConfirmForm
from bulk.models import DRAFT, BulkItem, BulkOperation, ItemState, Refusal
from graph import groups as graph_groups
from graph.errors import GraphError
from graph.results import Group
from mfa.views.pages import is_htmx
from outbox.errors import PolicyError
from outbox.live import live_stamp
from outbox.states import FINAL_STATUSES, Status
from portal.graph_client import get_graph_client

GROUP_SEARCH_MIN = 2
GROUP_SEARCH_MAX = 120


@require_GET
@role_required(*BULK_ROLES)
def operation_list(request: HttpRequest) -> HttpResponse:
    """``/bulk/``: the operations waiting for this person's approval, then every confirmed
    operation and this person's own dry runs, newest first."""
    rows = (
        BulkOperation.objects.filter(~Q(status=DRAFT) | Q(requester=request.user))
        .select_related("requester")
        .order_by("-created_at", "-id")[:200]
    )
    operations = list(rows)
    waiting = [op for op in operations if permissions.can_decide(request.user, op)]
    return render(
        request,
        "bulk/list.html",
        {
            "operations": operations,
            "waiting": waiting,
            "can_start": permissions.can_start(request.user),
        },
    )


def _group_choices(q: str) -> tuple[list[Group], str]:
    text = q.strip()[:GROUP_SEARCH_MAX]
    if len(text) < GROUP_SEARCH_MIN:
        return [], ""
    try:
        return graph_groups.list_groups_startswith(get_graph_client(), text, top=10), ""
    except GraphError as exc:
        return [], (
            f"Could not search the groups: Microsoft Graph answered {exc.code}: {exc.message} "
            f"(request-id {exc.request_id or 'none'})."
        )


@require_GET
@role_required(*RESPONDER_ROLES)
def group_choices(request: HttpRequest) -> HttpResponse:
    """The groups whose name starts with ``q``, as radio choices of the start form (htmx)."""
    q = request.GET.get("q", "")
    groups, problem = _group_choices(q)
    return render(
        request,
        "bulk/_group_choices.html",
        {"groups": groups, "problem": problem, "q": q, "chosen": request.GET.get("group", "")},
    )


@require_http_methods(["GET", "POST"])
@role_required(*RESPONDER_ROLES)
def operation_new(request: HttpRequest) -> HttpResponse:
    """Start: who, what, why. A valid form runs the dry run (stored, nothing done yet) and
    opens it; a refusal (too many people, an unknown group) is shown above the form (400)."""
    status = 200
    problem = ""
    if request.method == "POST":
        form = BulkStartForm(request.POST, request.FILES)
        if form.is_valid():
            data = form.cleaned_data
            # The name the chosen radio came with (a label only: the people come from the id).
            name = request.POST.get(f"group_name_{data['group_id']}", "").strip()
            label = name[:256] or data["source_label"]
            try:
                operation = services.plan(
                    starter=request.user,
                    people=data["people_list"] if not data["group_id"] else None,
                    group_id=data["group_id"] or None,
                    actions=data["actions"],
                    reason=data["reason"],
                    ticket=data["ticket"],
                    notify=data["notify"],
                    source=data["source"],
                    source_label=label,
                    http_request=request,
                )
            except (BulkError, PolicyError) as exc:
                problem = str(exc)
            except GraphError as exc:
                problem = (
                    f"The dry run could not read the directory: Microsoft Graph answered "
                    f"{exc.code}: {exc.message} (request-id {exc.request_id or 'none'})."
                )
            else:
                return redirect("bulk:operation_detail", public_id=operation.public_id)
        status = 400
    else:
        form = BulkStartForm()
    q = request.POST.get("q", "") if request.method == "POST" else request.GET.get("q", "")
    groups, group_problem = _group_choices(q)
    chosen = str(form["group"].value() or "")
    chosen_name = request.POST.get(f"group_name_{chosen}", "").strip()
    if chosen and chosen_name and chosen not in {group.id for group in groups}:
        # The form comes back with an error: the group chosen stays on offer, chosen.
        groups.insert(
            0, Group(id=chosen, odata_type="microsoft.graph.group", display_name=chosen_name)
        )
    return render(
        request,
        "bulk/new.html",
        {
            "form": form,
            "problem": problem,
            "q": q,
            "groups": groups,
            "group_problem": group_problem,
            "chosen": chosen,
        },
        status=status,
    )


def _duration_text(seconds: float | None) -> str:
    if seconds is None:
        return ""
    if seconds < 1.5:
        return "about a second"
    if seconds < 90:
        return f"about {round(seconds)} seconds"
    if seconds < 90 * 60:
        return f"about {round(seconds / 60)} minutes"
    return f"about {seconds / 3600:.1f} hours"


def _live_context(request: HttpRequest, operation: BulkOperation) -> dict[str, Any]:
    """The whole state of the operation as its page shows it, and this person's buttons."""
    user = request.user
    items = list(operation.items.all())
    included = [item for item in items if item.included]
    refused = [item for item in items if not item.included]
    states = {
        row["state"]: row["n"]
        for row in BulkItem.objects.filter(operation=operation, included=True)
        .values("state")
        .annotate(n=Count("id"))
    }
    done = states.get(ItemState.SUCCEEDED, 0)
    failed = states.get(ItemState.FAILED, 0)
    cancelled = states.get(ItemState.CANCELLED, 0)
    left = states.get(ItemState.QUEUED, 0) + states.get(ItemState.RUNNING, 0)
    total = max(1, len(included))
    last_finish = BulkItem.objects.filter(operation=operation).aggregate(m=Max("finished_at"))
    is_final = operation.status in FINAL_STATUSES
    steer = permissions.can_steer(user, operation) and not operation.is_draft
    buttons = {
        "confirm": permissions.can_confirm(user, operation),
        "decide": permissions.can_decide(user, operation),
        "pause": steer and not is_final and not operation.is_paused,
        "resume": steer and not is_final and operation.is_paused,
        "cancel": steer and not is_final and operation.status != Status.REJECTED,
        "retry": steer and is_final and failed > 0,
    }
    confirmable = [
        item
        for item in refused
        if item.refusal == Refusal.STAFF_OR_BREAK_GLASS and not item.admin_confirmed_by_name
    ]
    people_form = None
    if permissions.can_confirm_people(user, operation) and confirmable:
        people_form = PersonConfirmForm(choices=[(item.pk, item.label) for item in confirmable])
    eta = services.eta_seconds(operation)
    return {
        "op": operation,
        "is_final": is_final,
        "live": not operation.is_draft and not is_final,
        "included": included,
        "refused": refused,
        "confirmable": confirmable if people_form else [],
        "people_form": people_form,
        "progress": {
            "done": done,
            "failed": failed,
            "cancelled": cancelled,
            "left": left,
            "total": len(included),
            "done_pct": round(100 * done / total),
            "failed_pct": round(100 * failed / total),
        },
        "eta_text": _duration_text(eta) if left and not operation.is_paused else "",
        "buttons": buttons,
        "decision_form": BulkDecisionForm() if buttons["decide"] else None,
        "is_admin": has_role(user, Role.ADMIN),
        "live_stamp": live_stamp(
            operation,
            operation.paused_at,
            operation.cancel_requested_at,
            sorted(states.items()),
            last_finish["m"],
            buttons,
        ),
    }


@require_GET
@role_required(*BULK_ROLES)
def operation_detail(request: HttpRequest, public_id: str) -> HttpResponse:
    """The dry run before confirmation; after it, the live watch page (htmx polls its
    fragment every second until the operation is final; 204 when nothing moved)."""
    operation = permissions.get_operation_for_user(request.user, public_id)
    context = _live_context(request, operation)
    if is_htmx(request) and request.GET.get("seen") == context["live_stamp"]:
        response = HttpResponse(status=204)
    else:
        template = "bulk/_live.html" if is_htmx(request) else "bulk/detail.html"
        response = render(request, template, context)
    response["Vary"] = "HX-Request"
    response["Cache-Control"] = "no-store"
    return response


def _act(request: HttpRequest, public_id: str, allowed: str, call: Any, done: str) -> HttpResponse:
    """One decision on an operation: the permission rule ``allowed`` (a name in
    ``bulk.permissions``), one service call, a message, back to the operation's page."""
    operation = permissions.get_operation_for_user(request.user, public_id)
    permissions.require(
        getattr(permissions, allowed)(request.user, operation),
        "You cannot do that to this bulk operation.",
    )
    try:
        call(operation, request.user)
    except (BulkError, PolicyError) as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, done)
    return redirect("bulk:operation_detail", public_id=operation.public_id)


@require_POST
@role_required(*RESPONDER_ROLES)
def operation_confirm(request: HttpRequest, public_id: str) -> HttpResponse:
    operation = permissions.get_operation_for_user(request.user, public_id)
    permissions.require(
        permissions.can_confirm(request.user, operation),
        "Only the person who ran the dry run confirms it, once.",
    )
    try:
        confirmed = services.confirm(operation, by=request.user, http_request=request)
    except (BulkError, PolicyError) as exc:
        messages.error(request, str(exc))
    else:
        if confirmed.status == Status.AWAITING_APPROVAL:
            messages.success(request, "Confirmed: it waits for a second person's approval.")
        else:
            messages.success(request, "Confirmed: the operation is on its way.")
    return redirect("bulk:operation_detail", public_id=operation.public_id)


@require_POST
@role_required(Role.ADMIN)
def operation_people(request: HttpRequest, public_id: str) -> HttpResponse:
    """An Admin includes the staff and break-glass people ticked on the dry run."""
    operation = permissions.get_operation_for_user(request.user, public_id)
    permissions.require(
        permissions.can_confirm_people(request.user, operation),
        "Only an Admin includes staff or break-glass people, before the dry run is confirmed.",
    )
    choices = [
        (item.pk, item.label)
        for item in operation.items.filter(included=False, refusal=Refusal.STAFF_OR_BREAK_GLASS)
    ]
    form = PersonConfirmForm(request.POST, choices=choices)
    if not form.is_valid():
        messages.error(request, "Tick the people to include.")
        return redirect("bulk:operation_detail", public_id=operation.public_id)
    try:
        for pk in form.cleaned_data["items"]:
            item = get_object_or_404(BulkItem, pk=pk, operation=operation)
            services.confirm_person(operation, item, by=request.user, http_request=request)
    except (BulkError, PolicyError) as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, "Included on your confirmation, recorded with your name.")
    return redirect("bulk:operation_detail", public_id=operation.public_id)


@require_POST
@role_required(*BULK_ROLES)
def operation_decide(request: HttpRequest, public_id: str) -> HttpResponse:
    """An approver (not the starter) approves or rejects an operation awaiting approval."""
    operation = permissions.get_operation_for_user(request.user, public_id)
    permissions.require(
        permissions.can_decide(request.user, operation),
        "Only a Lead, a Responder or an Admin other than the starter decides, while it waits.",
    )
    form = BulkDecisionForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Choose Approve or Reject.")
        return redirect("bulk:operation_detail", public_id=operation.public_id)
    comment = form.cleaned_data["comment"]
    try:
        if form.cleaned_data["decision"] == "approve":
            services.approve(operation, by=request.user, comment=comment, http_request=request)
            messages.success(request, "Approved: the operation is on its way.")
        else:
            services.reject(operation, by=request.user, comment=comment, http_request=request)
            messages.success(request, "Rejected: nothing was done to anyone.")
    except (BulkError, PolicyError) as exc:
        messages.error(request, str(exc))
    return redirect("bulk:operation_detail", public_id=operation.public_id)


def _steer(name: str, done: str) -> Any:
    @require_POST
    @role_required(*BULK_ROLES)
    def view(request: HttpRequest, public_id: str) -> HttpResponse:
        service = getattr(services, name)
        return _act(
            request,
            public_id,
            "can_steer",
            lambda op, by: service(op, by=by, http_request=request),
            done,
        )

    view.__name__ = f"operation_{name}"
    view.__doc__ = f"``services.{name}`` on the operation (the starter, a Lead or an Admin)."
    return view


operation_pause = _steer("pause", "Paused: the person being worked on finishes, then it stops.")
operation_resume = _steer("resume", "Resumed.")
operation_cancel = _steer("cancel", "Cancelled: nobody left in the queue will be acted on.")
operation_retry = _steer("retry_failed", "The failed people are queued again.")


def _csv_lines(rows: Iterable[Iterable[Any]]) -> Iterator[bytes]:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    for row in rows:
        writer.writerow(row)
        yield buffer.getvalue().encode()
        buffer.seek(0)
        buffer.truncate()


# role_required is typed for HttpResponse views; it passes any response through unchanged.
@require_GET  # type: ignore[type-var]
@role_required(*BULK_ROLES)
def operation_export(request: HttpRequest, public_id: str) -> StreamingHttpResponse:
    """The operation's people and results as CSV (``services.export_rows``: cells that look
    like formulas are neutralised there)."""
    operation = permissions.get_operation_for_user(request.user, public_id)
    response = StreamingHttpResponse(
        _csv_lines(services.export_rows(operation)), content_type="text/csv; charset=utf-8"
    )
    filename = f"bulk-{operation.public_id}.csv"
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    response["Cache-Control"] = "no-store"
    return response
