"""Issue 10, point 16: once Graph has issued a Temporary Access Pass, every failure before the
requester can read it withdraws the pass (and forgets any vault entry), not only the vault's own
error. Run inline through the real engine, Graph client and emulator.
"""

from __future__ import annotations

from typing import Any

import pytest
from pytest_django.fixtures import Settings

from graph import methods as graph_methods
from graph.results import MethodKind
from mfa import services, tap_vault
from mfa.models import ActionKind, ActionRequest, Status
from outbox import engine
from portal.graph_client import get_graph_client
from tests.mfa.action_requests import action_request_make
from tests.personas import PERSONAS

SAM = PERSONAS.standard_target


def _passes() -> list[str]:
    return [
        m.id
        for m in graph_methods.list_methods(get_graph_client(), SAM.oid)
        if m.kind is MethodKind.TEMPORARY_ACCESS_PASS
    ]


@pytest.fixture(autouse=True)
def _no_approval(settings: Settings) -> None:
    # A manual check alone backs a TAP without approval here: the run is what is under test.
    settings.PORTAL_MANUAL_CHECK_NEEDS_APPROVAL = []


def _tap_request() -> ActionRequest:
    row = action_request_make(
        ActionKind.ISSUE_TAP, params={"lifetime_minutes": 60, "usable_once": True}
    )
    assert row.status == Status.PENDING
    return row


def test_a_pass_the_vault_could_not_take_for_another_reason_is_withdrawn(
    tenant: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert _passes() == []

    def broken(**_: Any) -> None:
        raise ConnectionResetError("Redis went away mid-write")

    monkeypatch.setattr(tap_vault, "tap_store", broken)
    row = _tap_request()
    services.action_request_execute(request_id=row.pk)
    row.refresh_from_db()

    assert row.status == Status.FAILED
    assert _passes() == [], "a pass nobody can be shown must not stay usable"


def test_a_failure_after_the_pass_was_stored_withdraws_it_and_forgets_it(
    tenant: Any, monkeypatch: pytest.MonkeyPatch, redis_client: Any
) -> None:
    real_step_end = engine.Run.step_end

    def step_end(self: engine.Run[Any], index: int, **kwargs: Any) -> None:
        if (
            kwargs.get("state") == "done"
            and "Temporary Access Pass" in self.row.steps[index]["text"]
        ):
            raise RuntimeError("the step could not be saved")
        real_step_end(self, index, **kwargs)

    monkeypatch.setattr(engine.Run, "step_end", step_end)
    row = _tap_request()
    services.action_request_execute(request_id=row.pk)
    row.refresh_from_db()

    assert row.status == Status.FAILED
    assert _passes() == []
    assert not tap_vault.tap_available(public_id=row.public_id)
    assert redis_client.keys("portal:tap:*") == []
