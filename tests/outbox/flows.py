"""The two durable-request flows, seen the same way by the durability and fault suites.

A test parametrised with ``FLOWS`` (ids ``action_request`` and ``role_change``) runs once per flow
and asks the flow for what differs: how to make a request that runs straight away, how to run,
redispatch and watch it, which Graph write(s) it makes and how Entra's audit log (the emulator's)
counts them. Everything else (the states, the lease, the journal, defer-or-fail, redispatch) is
the engine's and is asserted the same way for both.

- ``action_request``: Ada Agent re-registers Sam Standard (a manual caller check first): one
  ``DELETE`` per deletable method, each an Entra "deleted security info" event.
- ``role_change``: Ana Admin gives Sam Standard Authentication Administrator, active and
  permanent (no approval: ``ROLES_REQUIRING_APPROVAL`` names PAA and PRA only): one ``POST
  roleAssignments``, one Entra "Add member to role" event.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar

import pytest
from django.test import Client

from audit.models import PortalEvent
from graph import methods as graph_methods
from graph import roles as graph_roles
from mfa import services as mfa_services
from mfa.models import ActionKind, ActionRequest
from outbox.states import Status
from portal.graph_client import get_graph_client
from roles import services as role_services
from roles.models import HoldKind, RoleChange, RoleChangeRequest
from tests.mfa.action_requests import REASON, TICKET, action_request_make, emulator_audit, new_key
from tests.personas import AUTH_ADMIN, PERSONAS, Persona, portal_user, signed_in
from tests.waiting import wait_for

SAM = PERSONAS.standard_target
# The first words of the step a worker adds when it takes a row over from a dead one.
TAKEN_OVER = "The previous worker stopped"


def _form_key(html: str) -> str:
    match = re.search(r'name="idempotency_key" value="([^"]+)"', html)
    assert match, html[:2000]
    return match.group(1)


def assert_resumed(row: Any) -> None:
    """``row`` was taken over from a dead worker and the page says so: it shows the takeover step,
    the step the dead worker stopped on says it was interrupted, and no step is left "running"."""
    texts = [str(s.get("text", "")) for s in row.steps]
    taken = [i for i, text in enumerate(texts) if text.startswith(TAKEN_OVER)]
    assert taken, f"no step says {TAKEN_OVER!r}: {texts}"
    assert not [s for s in row.steps if s.get("state") == "running"], row.steps
    before = row.steps[: taken[0]]
    assert before and before[-1]["state"] in ("failed", "done"), before


class Flow:
    """What a durability or fault test needs to know of one flow. Subclasses fill it in."""

    id: ClassVar[str]
    model: ClassVar[type[Any]]
    # Who makes the request and watches its page.
    requester: ClassVar[Persona]
    # The Graph write the runner makes, as a module attribute a test may wrap
    # (``monkeypatch.setattr(flow.write_module, flow.write_function, ...)``), and as the HTTP
    # method and emulator path (``/v1.0/...``) a ``fail_next`` rule matches.
    write_module: ClassVar[Any]
    write_function: ClassVar[str]
    write_method: ClassVar[str]
    write_path: ClassVar[str]
    # PortalEvent kinds of the flow.
    started_kind: ClassVar[str]
    retry_kind: ClassVar[str]
    redispatched_kind: ClassVar[str]
    outcome_kinds: ClassVar[tuple[str, ...]]
    # A request of the standard form (the Redis tests submit it like a person would); it makes
    # exactly one Graph write.
    form_url: ClassVar[str]
    # What a worker's log names when it runs the flow's task.
    task_name: ClassVar[str]

    def __repr__(self) -> str:
        return f"<flow {self.id}>"

    # --- making and running a request ------------------------------------------------------------
    def planned_writes(self) -> int:
        """How many Graph writes the request ``create`` makes will need, read from Graph now."""
        raise NotImplementedError

    def create(self) -> Any:
        """Make a request through the real service; it needs no approval, so its task is enqueued
        on commit."""
        raise NotImplementedError

    def execute(self, request_id: int) -> None:
        """What the task does: run the request if it can be claimed."""
        raise NotImplementedError

    def redispatch(self) -> int:
        """What beat runs every 30 s; returns how many rows it dispatched again."""
        raise NotImplementedError

    def get(self, request_id: int) -> Any:
        return self.model._default_manager.get(pk=request_id)

    def wait_final(self, request_id: int, *, timeout: float = 90.0) -> Any:
        """The row once it is in a final state (polled from the database)."""

        def final() -> Any:
            row = self.get(request_id)
            return row if row.is_final else None

        return wait_for(final, timeout=timeout, what=f"{self.id} {request_id} to finish")

    def backdate(self, request_id: int, **fields: Any) -> None:
        """Set columns of the row directly (the clock moving on while no worker looked)."""
        self.model._default_manager.filter(pk=request_id).update(**fields)

    def mid_run(self, row: Any, planned: int) -> bool:
        """Whether a worker killed now is caught in the middle of ``row`` (the SIGKILL test):
        a re-registration between two deletes, a role change with its one write on the wire."""
        raise NotImplementedError

    def on_the_wire(self, row: Any, arrived: list[tuple[str, str]]) -> bool:
        """Whether the write ``row`` journals as begun has reached Entra, given the (method, path)
        of every Graph request the emulator has received. The journal entry is saved before the
        request is sent, so a worker killed in between never sent it."""
        return True

    # --- what happened ---------------------------------------------------------------------------
    def writes(self, server: Any) -> int:
        """How many writes of this flow Entra (the emulator's audit log) records about Sam."""
        raise NotImplementedError

    def check_done(self, row: Any, server: Any) -> None:
        """The directory shows the request's effect (every method gone; the role held)."""
        raise NotImplementedError

    def events(self, row: Any, *kinds: str) -> list[PortalEvent]:
        """The row's PortalEvents of ``kinds`` (any kind when none is given), oldest first."""
        raise NotImplementedError

    def page_url(self, row: Any) -> str:
        raise NotImplementedError

    def page(self, row: Any) -> str:
        """The live status fragment the requester's browser polls (htmx)."""
        client = signed_in(self.requester)
        return client.get(self.page_url(row), HTTP_HX_REQUEST="true").content.decode()

    def form_data(self, client: Client) -> dict[str, str]:
        """The standard form (``form_url``) filled in, with the key of a freshly loaded form."""
        raise NotImplementedError

    def form_writes(self, server: Any) -> int:
        """Entra's count of the write the standard form's request makes."""
        raise NotImplementedError


class ActionRequestFlow(Flow):
    id = "action_request"
    model = ActionRequest
    requester = PERSONAS.agent
    write_module: ClassVar[Any] = graph_methods
    write_function = "delete_method"
    write_method = "DELETE"
    write_path = rf"^/v1\.0/users/{SAM.oid}/authentication/"
    started_kind = PortalEvent.Kind.ACTION_STARTED
    retry_kind = PortalEvent.Kind.ACTION_RETRY_SCHEDULED
    redispatched_kind = PortalEvent.Kind.ACTION_REDISPATCHED
    outcome_kinds = (
        PortalEvent.Kind.ACTION_SUCCEEDED,
        PortalEvent.Kind.ACTION_PARTIALLY_SUCCEEDED,
        PortalEvent.Kind.ACTION_FAILED,
    )
    form_url = f"/users/{SAM.oid}/actions/{ActionKind.REVOKE_SESSIONS}/"
    task_name = "action_request_run"

    def _deletable(self) -> set[str]:
        return {
            m.id
            for m in graph_methods.list_methods(get_graph_client(), SAM.oid)
            if m.kind.deletable
        }

    def planned_writes(self) -> int:
        count = len(self._deletable())
        assert count >= 2, "the seed gives Sam Standard at least two deletable methods"
        return count

    def create(self) -> ActionRequest:
        return action_request_make(ActionKind.REREGISTER)

    def execute(self, request_id: int) -> None:
        mfa_services.action_request_execute(request_id=request_id)

    def redispatch(self) -> int:
        return mfa_services.requests_redispatch()

    def mid_run(self, row: Any, planned: int) -> bool:
        deleted = [k for k in row.completed_writes if k.startswith("delete:")]
        return 1 <= len(deleted) < planned

    def writes(self, server: Any) -> int:
        return len(
            emulator_audit(server, target_id=SAM.oid, activity_contains="deleted security info")
        )

    def check_done(self, row: Any, server: Any) -> None:
        assert len(row.result["removed"]) == len({e["id"] for e in row.result["removed"]})
        assert self._deletable() == set()

    def events(self, row: Any, *kinds: str) -> list[PortalEvent]:
        found = PortalEvent.objects.filter(request=row.pk)
        if kinds:
            found = found.filter(kind__in=kinds)
        return list(found.order_by("seq"))

    def page_url(self, row: Any) -> str:
        return f"/requests/{row.public_id}/"

    def form_data(self, client: Client) -> dict[str, str]:
        return {
            "reason": "Caller's laptop was stolen, sign out everywhere now.",
            "ticket": "INC0077001",
            "idempotency_key": _form_key(client.get(self.form_url).content.decode()),
        }

    def form_writes(self, server: Any) -> int:
        return len(emulator_audit(server, target_id=SAM.oid, activity_contains="StsRefreshToken"))


class RoleChangeFlow(Flow):
    id = "role_change"
    model = RoleChangeRequest
    requester = PERSONAS.admin
    write_module: ClassVar[Any] = graph_roles
    write_function = "create_role_assignment"
    write_method = "POST"
    write_path = r"^/v1\.0/roleManagement/directory/roleAssignments$"
    started_kind = PortalEvent.Kind.ROLE_CHANGE_STARTED
    retry_kind = PortalEvent.Kind.ROLE_CHANGE_RETRY_SCHEDULED
    # The kind the engine is to record for a role change sent again (none exists before the
    # engine: the role flow did not record a redispatch). Compared as a string on purpose.
    redispatched_kind = "role_change_redispatched"
    outcome_kinds = (
        PortalEvent.Kind.ROLE_CHANGE_SUCCEEDED,
        PortalEvent.Kind.ROLE_CHANGE_FAILED,
    )
    form_url = "/roles/add/"
    task_name = "role_change_run"

    def planned_writes(self) -> int:
        return 1

    def create(self) -> RoleChangeRequest:
        row = role_services.role_change_create(
            requester=portal_user(self.requester),
            change=RoleChange.ADD,
            role_name=AUTH_ADMIN,
            principal_id=SAM.oid,
            principal_type="user",
            hold_kind=HoldKind.ACTIVE_PERMANENT,
            justification=REASON,
            ticket=TICKET,
            idempotency_key=new_key(),
        )
        assert row.status == Status.PENDING, "Authentication Administrator needs no approval"
        return row

    def execute(self, request_id: int) -> None:
        role_services.role_change_execute(request_id=request_id)

    def redispatch(self) -> int:
        return role_services.role_changes_redispatch()

    def mid_run(self, row: Any, planned: int) -> bool:
        # The one write is begun (journalled) and its answer not yet recorded.
        return bool(row.pending_writes)

    def on_the_wire(self, row: Any, arrived: list[tuple[str, str]]) -> bool:
        return any(
            method == self.write_method and re.match(self.write_path, path)
            for method, path in arrived
        )

    def writes(self, server: Any) -> int:
        return len(
            emulator_audit(server, target_id=SAM.oid, activity_contains="Add member to role")
        )

    def check_done(self, row: Any, server: Any) -> None:
        template = graph_roles.ROLE_TEMPLATES[AUTH_ADMIN]
        with server.tenant.lock:
            held = [
                a
                for a in server.tenant.role_assignments.values()
                if a.get("principalId") == SAM.oid and a.get("roleDefinitionId") == template
            ]
        assert len(held) == 1, held
        assert row.graph_object_id == held[0]["id"]

    def events(self, row: Any, *kinds: str) -> list[PortalEvent]:
        found = PortalEvent.objects.filter(target_id=row.principal_id)
        if kinds:
            found = found.filter(kind__in=kinds)
        return [
            e for e in found.order_by("seq") if (e.detail or {}).get("role_change_id") == row.pk
        ]

    def page_url(self, row: Any) -> str:
        return f"/roles/changes/{row.public_id}/"

    def form_data(self, client: Client) -> dict[str, str]:
        return {
            "role": AUTH_ADMIN,
            "principal": f"user:{SAM.oid}",
            "kind": HoldKind.ACTIVE_PERMANENT,
            "justification": REASON,
            "ticket": TICKET,
            "idempotency_key": _form_key(client.get(self.form_url).content.decode()),
        }

    def form_writes(self, server: Any) -> int:
        return self.writes(server)


ACTION_REQUEST = ActionRequestFlow()
ROLE_CHANGE = RoleChangeFlow()
# ``@pytest.mark.parametrize("flow", FLOWS)``: one test per flow, ids action_request, role_change.
FLOWS = [
    pytest.param(ACTION_REQUEST, id=ACTION_REQUEST.id),
    pytest.param(ROLE_CHANGE, id=ROLE_CHANGE.id),
]
