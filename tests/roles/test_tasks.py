"""The role tasks keep their old names: a message queued before the upgrade (named
``accounts.role_tasks.<task>``) is still run by a worker, and a change ends as it would have."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.cache import cache

from mfa import policy
from outbox.states import Status
from portal.celery import app
from portal.graph_client import get_graph_client
from roles import catalog, services
from roles.flow import ROLE_CHANGES
from roles.forms import new_idempotency_key
from roles.holders import read_role
from roles.models import HoldKind, RoleChange, RoleChangeRequest
from tests.personas import PERSONAS, portal_user
from tests.roles.role_changes import wait_final
from tests.waiting import wait_for

pytestmark = pytest.mark.django_db(transaction=True)

TASKS = (
    "role_change_run",
    "role_holders_refresh",
    "role_holders_refresh_scheduled",
    "role_changes_redispatch",
)


def _add_auth_admin(principal_id: str) -> RoleChangeRequest:
    return services.role_change_create(
        requester=portal_user(PERSONAS.admin),
        change=RoleChange.ADD,
        role_name=catalog.AUTH_ADMIN,
        principal_id=principal_id,
        principal_type="user",
        hold_kind=HoldKind.ACTIVE_PERMANENT,
        justification="Joins the identity operations rota.",
        ticket="INC0012345",
        idempotency_key=new_idempotency_key(),
    )


def test_every_task_is_registered_under_its_new_and_its_old_name() -> None:
    app.loader.import_default_modules()  # what a worker does at start: autodiscovery included
    for task in TASKS:
        new, old = app.tasks[f"roles.tasks.{task}"], app.tasks[f"accounts.role_tasks.{task}"]
        assert new.acks_late == old.acks_late and new.ignore_result == old.ignore_result
    run = app.tasks["accounts.role_tasks.role_change_run"]
    assert run.acks_late and run.reject_on_worker_lost


def test_a_change_queued_under_the_old_task_name_runs_to_success(
    fresh_tenant: Any, celery_worker: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The request is recorded without its own message: only the old-named one below runs it.
    monkeypatch.setattr(ROLE_CHANGES, "send", lambda request_id: None)
    sam = PERSONAS.standard_target
    row = _add_auth_admin(sam.oid)
    assert row.status == Status.PENDING

    app.send_task("accounts.role_tasks.role_change_run", args=(row.pk,), queue="interactive")

    row = wait_final(row)
    assert row.status == Status.SUCCEEDED, (row.error_code, row.error_message, row.steps)
    assert any(
        h.principal_id == sam.oid and h.how == "active"
        for h in read_role(get_graph_client(), catalog.AUTH_ADMIN)
    )


def test_a_role_change_makes_mfa_forget_the_cached_person_profile(
    fresh_tenant: Any, celery_worker: Any
) -> None:
    sam = PERSONAS.standard_target
    client = get_graph_client()
    before = policy.target_profile(client, sam.oid)
    assert catalog.AUTH_ADMIN not in {r.role_name for r in before.roles}
    key = policy._cache_key(sam.oid)
    assert cache.get(key) is not None

    row = wait_final(_add_auth_admin(sam.oid))
    assert row.status == Status.SUCCEEDED, (row.error_code, row.error_message, row.steps)

    # The worker forgets the profile after its transaction commits: give it a moment.
    wait_for(lambda: cache.get(key) is None, timeout=10, what="the worker to forget the profile")
    after = policy.target_profile(client, sam.oid)
    assert catalog.AUTH_ADMIN in {r.role_name for r in after.roles}
