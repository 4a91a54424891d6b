"""The dashboard's flag for large or repeated bulk operations (issue 14's guard rails): read from
the ``bulk_operation_requested`` events the bulk flow records when a starter confirms one."""

from __future__ import annotations

import uuid

import pytest
from django.contrib.auth.models import AbstractBaseUser
from pytest_django.fixtures import Settings

from audit.dashboard import FlagGroup, dashboard_figures
from audit.services import portal_event_record
from tests.personas import PERSONAS, portal_user

pytestmark = pytest.mark.django_db


def _confirmed(by: AbstractBaseUser, people: int, label: str) -> str:
    public_id = str(uuid.uuid4())
    portal_event_record(
        kind="bulk_operation_requested",
        actor=by,
        detail={
            "bulk_operation": public_id,
            "source_label": label,
            "done": 0,
            "failed": 0,
            "left": people,
        },
    )
    return public_id


def _group() -> FlagGroup:
    [group] = [g for g in dashboard_figures().flags if g.key == "bulk_operations"]
    return group


def test_a_large_and_a_repeated_bulk_operation_are_flagged(settings: Settings) -> None:
    settings.DASHBOARD_BULK_LARGE = 100
    settings.DASHBOARD_BULK_REPEAT_MAX = 2
    rita = portal_user(PERSONAS.responder)
    ana = portal_user(PERSONAS.admin)
    large = _confirmed(ana, 150, "Phishing campaign 2026-12")
    for n in range(3):
        _confirmed(rita, 10, f"{n + 1} pasted")
    group = _group()
    titles = [flag.title for flag in group.items]
    assert "Phishing campaign 2026-12: 150 people" in titles
    assert "Rita Responder" in titles and "Ana Admin" not in titles
    [big] = [f for f in group.items if f.title.endswith("150 people")]
    assert large in big.url


def test_small_operations_by_different_people_are_not_flagged(settings: Settings) -> None:
    settings.DASHBOARD_BULK_LARGE = 100
    _confirmed(portal_user(PERSONAS.responder), 12, "12 pasted")
    _confirmed(portal_user(PERSONAS.admin), 99, "99 pasted")
    assert _group().items == []
