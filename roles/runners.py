"""The Graph steps of a directory role change: the runner the engine calls (``roles.flow``).

A change reads who holds the role now, checks the guards again on what Graph says (a removal),
writes once through the engine's journal, and reads back; a change Graph accepted that Entra does
not show yet (PIM provisioning, directory lag) is read again after a backoff, never re-sent, up
to ``ROLES_PROPAGATION_TIMEOUT_SECONDS`` (``roles.propagation``). A write in flight when a
worker died is never repeated blindly: the re-run reads Graph first and finds the assignment
already there (or gone). After a success, :data:`roles.signals.directory_roles_changed` tells
other apps whose roles changed.
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.utils import timezone

from graph import groups as graph_groups
from graph import roles as graph_roles
from graph.errors import GraphBadRequest, GraphError, GraphNotFound, GraphThrottled, GraphTransient
from outbox.engine import Run
from outbox.flow import Outcome
from outbox.states import Status
from roles.catalog import role_definition_id
from roles.guards import open_removals, removal_guard_message
from roles.holders import Holding, find_holding, read_role
from roles.models import HoldKind, PrincipalType, RoleChange, RoleChangeRequest
from roles.propagation import (
    NOT_YET_VISIBLE,
    first_step_at,
    not_visible_message,
    poll_again_or_give_up,
)
from roles.refresh import role_holders_refresh_request
from roles.signals import directory_roles_changed
from roles.tiering import paa_cache_forget

logger = logging.getLogger(__name__)


def run_role_change(run: Run[RoleChangeRequest]) -> Outcome:
    """Add or remove, as the change says."""
    return _run_add(run) if run.row.change == RoleChange.ADD else _run_remove(run)


def _graph_detail(exc: GraphError) -> str:
    return f"{exc.code}: {exc.message} (request-id {exc.request_id or 'none'})"


def _run_add(run: Run[RoleChangeRequest]) -> Outcome:
    row = run.row
    client = run.client
    definition = role_definition_id(client, row.role_name)
    eligible = row.hold_kind == HoldKind.ELIGIBLE_UNTIL
    key = "eligibility" if eligible else "assignment"
    index = run.step(f"Reading who holds {row.role_name}…")
    holdings = read_role(client, row.role_name)
    how = "eligible" if eligible else "active"
    present = find_holding(holdings, principal_id=row.principal_id, how=how)
    run.step_end(index, state="done", suffix="done")
    if key in row.completed_writes:
        # An earlier attempt's write Graph accepted (this run is a poll while PIM provisions it
        # or the directory catches up, or a re-run): read back only, it is never sent twice.
        return _verify(run, expect_present=True, holdings=holdings)
    if present is not None:
        if run.was_in_flight(key) is not None:
            # Our own write landed before the worker stopped: do not send it again.
            run.write_done(key)
            row.graph_object_id = row.graph_object_id or (
                present.assignment_id or present.schedule_id
            )
            run.step("The change had already reached Entra", state="done")
            return Outcome(Status.SUCCEEDED)
        run.step(f"{row.principal_name} already holds {row.role_name} that way", state="failed")
        return Outcome(
            Status.FAILED,
            error_code="AlreadyHeld",
            error_message=f"{row.principal_name} already holds {row.role_name} that way.",
        )
    if eligible:
        assert row.ends_at is not None
        index = run.step(
            f"Making {row.principal_name} eligible for {row.role_name} until "
            f"{timezone.localtime(row.ends_at):%d %b %Y %H:%M} (PIM)…"
        )
    elif row.hold_kind == HoldKind.ACTIVE_UNTIL:
        assert row.ends_at is not None
        index = run.step(
            f"Assigning {row.role_name} to {row.principal_name} (active until "
            f"{timezone.localtime(row.ends_at):%d %b %Y %H:%M}, PIM)…"
        )
    else:
        index = run.step(f"Assigning {row.role_name} to {row.principal_name} (active, permanent)…")
    run.write_begin(key)
    pim_status = ""
    try:
        if eligible:
            result = graph_roles.create_role_eligibility_schedule_request(
                client,
                action="adminAssign",
                role_definition_id=definition,
                principal_id=row.principal_id,
                justification=_graph_justification(row),
                start=timezone.now(),
                end=row.ends_at,
            )
            row.graph_object_id = result.id
            pim_status = result.status or ""
        elif row.hold_kind == HoldKind.ACTIVE_UNTIL:
            request = graph_roles.create_role_assignment_schedule_request(
                client,
                action="adminAssign",
                role_definition_id=definition,
                principal_id=row.principal_id,
                justification=_graph_justification(row),
                start=timezone.now(),
                end=row.ends_at,
            )
            row.graph_object_id = request.id
            pim_status = request.status or ""
        else:
            assignment = graph_roles.create_role_assignment(
                client, role_definition_id=definition, principal_id=row.principal_id
            )
            row.graph_object_id = assignment.id
    except (GraphThrottled, GraphTransient) as exc:
        # OutcomeUnknown stays in flight: the re-run reads Graph first.
        if exc.code != "OutcomeUnknown":
            run.write_abandon(key)
        raise
    except GraphError as exc:
        run.write_abandon(key)
        run.step_end(index, state="failed", suffix="failed", detail=_graph_detail(exc))
        return Outcome(Status.FAILED, error=exc)
    run.write_done(key)
    run.step_end(index, state="done", suffix="done", detail=_pim_detail(pim_status))
    return _verify(run, expect_present=True)


def _pim_detail(status: str) -> str:
    """The step detail naming the PIM request's status as Graph answered it."""
    return f"PIM request status: {status}." if status else ""


def _run_remove(run: Run[RoleChangeRequest]) -> Outcome:
    row = run.row
    client = run.client
    key = "removal"
    index = run.step(f"Reading who holds {row.role_name}…")
    holdings = read_role(client, row.role_name)
    holding = find_holding(holdings, principal_id=row.principal_id, how=row.hold_kind)
    run.step_end(index, state="done", suffix="done")
    if key in row.completed_writes and holding is not None:
        # An earlier attempt's removal Graph accepted, still showing: read back only (a poll),
        # it is never sent twice.
        return _verify(run, expect_present=False, holdings=holdings)
    if holding is None:
        if key in row.completed_writes or run.was_in_flight(key) is not None:
            run.write_done(key)
            run.step("The removal had already reached Entra", state="done")
            return Outcome(Status.SUCCEEDED)
        run.step(f"{row.principal_name} no longer holds it: nothing to remove", state="done")
        return Outcome(Status.SUCCEEDED)
    # The guards again, on what Graph says now: other changes may have run since the request.
    others = [
        h
        for h in open_removals(row.role_name, holdings)
        if h.principal_id.lower() != row.principal_id.lower()
    ]
    refusal = removal_guard_message(holdings, removing=holding, also_removing=others)
    if refusal:
        run.step("Refused by the portal's guard", state="failed", detail=refusal)
        return Outcome(Status.FAILED, error_code="GuardRefused", error_message=refusal)
    index = run.step(f"Removing {row.principal_name} from {row.role_name}…")
    run.write_begin(key)
    pim_status = ""
    try:
        if holding.is_time_bound_active:
            # Made through PIM: taken away through PIM too, so PIM's schedule ends with it and
            # Entra's audit says "Remove member from role in PIM completed (timebound)".
            request = graph_roles.create_role_assignment_schedule_request(
                client,
                action="adminRemove",
                role_definition_id=role_definition_id(client, row.role_name),
                principal_id=row.principal_id,
                justification=_graph_justification(row),
            )
            row.graph_object_id = request.id
            pim_status = request.status or ""
        elif row.hold_kind == HoldKind.ACTIVE:
            graph_roles.delete_role_assignment(client, holding.assignment_id)
            row.graph_object_id = holding.assignment_id
        else:
            result = graph_roles.create_role_eligibility_schedule_request(
                client,
                action="adminRemove",
                role_definition_id=role_definition_id(client, row.role_name),
                principal_id=row.principal_id,
                justification=_graph_justification(row),
                start=timezone.now(),
            )
            row.graph_object_id = result.id
            pim_status = result.status or ""
    except GraphNotFound:
        pass  # gone already: an earlier attempt's answer was lost
    except GraphBadRequest as exc:
        if exc.code != "RoleAssignmentDoesNotExist":
            run.write_abandon(key)
            run.step_end(index, state="failed", suffix="failed", detail=_graph_detail(exc))
            return Outcome(Status.FAILED, error=exc)
    except (GraphThrottled, GraphTransient) as exc:
        # OutcomeUnknown stays in flight: the re-run reads Graph first.
        if exc.code != "OutcomeUnknown":
            run.write_abandon(key)
        raise
    except GraphError as exc:
        run.write_abandon(key)
        run.step_end(index, state="failed", suffix="failed", detail=_graph_detail(exc))
        return Outcome(Status.FAILED, error=exc)
    run.write_done(key)
    run.step_end(index, state="done", suffix="done", detail=_pim_detail(pim_status))
    return _verify(run, expect_present=False)


_CHECKING = "Checking the change in Entra…"


def _verify(
    run: Run[RoleChangeRequest],
    *,
    expect_present: bool,
    holdings: tuple[Holding, ...] | None = None,
) -> Outcome:
    """Read the change back (``holdings``: as just read). Not visible yet: PIM may still be
    provisioning it, or the directory replicating it, so it is read again after a backoff
    (``roles.propagation``: the engine defers the run; the write is never sent again), up to
    ``ROLES_PROPAGATION_TIMEOUT_SECONDS`` after the first read-back; past that the change ends
    ``failed`` with ``NotYetVisible``, "not yet visible after N s; check Entra"."""
    row = run.row
    how = "eligible" if row.hold_kind in (HoldKind.ELIGIBLE_UNTIL, HoldKind.ELIGIBLE) else "active"
    index = run.step(_CHECKING)
    if holdings is None:
        holdings = read_role(run.client, row.role_name)
    present = find_holding(holdings, principal_id=row.principal_id, how=how)
    if (present is not None) == expect_present:
        detail = ""
        if present is not None and present.end is not None:
            until = "Active" if present.how == "active" else "Eligible"
            detail = f"{until} until {timezone.localtime(present.end):%d %b %Y %H:%M}."
        if present is not None and present.is_group:
            names = ", ".join(m.display_name for m in present.members) or "no members yet"
            detail = (detail + " " if detail else "") + f"Members who now hold it: {names}."
        run.step_end(index, state="done", suffix="done", detail=detail)
        return Outcome(Status.SUCCEEDED)
    since = first_step_at(row.steps, _CHECKING) or timezone.now()
    run.step_end(index, state="waiting", suffix="not visible yet")
    elapsed = poll_again_or_give_up(
        run,
        since=since,
        limit_seconds=settings.ROLES_PROPAGATION_TIMEOUT_SECONDS,
        waiting="Provisioning in Entra",
        detail=(
            f"{row.principal_name} {'still holds' if not expect_present else 'does not hold'} "
            f"{row.role_name} in what Graph reads. PIM provisions requests asynchronously and "
            "directory reads lag; the change is not sent again."
        ),
    )
    run.step(
        f"Not yet visible after {elapsed:.0f} s; check Entra",
        state="failed",
        detail="Graph accepted the change, but it never showed in what the portal reads.",
    )
    what = "the removal" if not expect_present else "the change"
    return Outcome(
        Status.FAILED,
        error_code=NOT_YET_VISIBLE,
        error_message=not_visible_message(elapsed, what),
    )


def _graph_justification(row: RoleChangeRequest) -> str:
    ticket = f"{row.ticket}: " if row.ticket else ""
    return f"{ticket}{row.justification} (via MFA helpdesk portal, {row.requester_name})"[:500]


def after_change(principal_ids: list[str], principal_type: str) -> None:
    """After a role changed: forget cached answers about the people concerned and read the
    holders again, so the page, tiering and the person pages see the new state.

    Other apps (mfa's cached person profiles) hear of it through
    :data:`roles.signals.directory_roles_changed`, sent with the people concerned (a group's
    members expanded)."""
    from portal.graph_client import get_graph_client

    people = list(principal_ids)
    if principal_type == PrincipalType.GROUP:
        try:
            people += [
                m.id
                for m in graph_groups.list_transitive_members(get_graph_client(), principal_ids[0])
                if m.is_user
            ]
        except GraphError:
            logger.warning("could not list the members of group %s", principal_ids[0])
    paa_cache_forget(people)
    directory_roles_changed.send(sender=RoleChangeRequest, principal_ids=people)
    role_holders_refresh_request(trigger="change")
