"""Retention of the Entra audit cache: pruning, and the prune's own entry in the portal log."""

from __future__ import annotations

import os
from datetime import timedelta
from io import StringIO

import pytest
from django.conf import settings
from django.core.management import call_command
from django.test import override_settings
from django.utils import timezone

from audit.chain import chain_verify
from audit.models import DirectoryAuditRecord, PortalEvent
from audit.retention import entra_audit_prune
from audit.services import portal_event_record
from audit.tasks import entra_audit_prune as prune_task

pytestmark = pytest.mark.django_db


def _records(*ages_in_days: float) -> list[DirectoryAuditRecord]:
    now = timezone.now()
    return DirectoryAuditRecord.objects.bulk_create(
        DirectoryAuditRecord(
            entra_id=f"event-{index}",
            activity_at=now - timedelta(days=age),
            category="UserManagement",
            activity="Admin deleted security info",
            initiated_by_kind="app",
            target_id="target",
        )
        for index, age in enumerate(ages_in_days)
    )


def test_default_retention_keeps_two_years() -> None:
    """With no AUDIT_RETENTION_DAYS in the environment (the run sets none), the daily prune keeps
    an event just under two years old and removes one just over."""
    assert "AUDIT_RETENTION_DAYS" not in os.environ
    two_years = 730
    inside, _outside = _records(two_years - 1 / 24, two_years + 1 / 24)
    assert entra_audit_prune().deleted == 1
    assert list(DirectoryAuditRecord.objects.values_list("entra_id", flat=True)) == [
        inside.entra_id
    ]


def test_prune_removes_only_events_past_retention_and_logs_itself() -> None:
    _records(10, 729, 731, 800, 2000)
    result = entra_audit_prune(batch_size=2)  # several batches
    assert result.deleted == 3
    left = sorted(DirectoryAuditRecord.objects.values_list("entra_id", flat=True))
    assert left == ["event-0", "event-1"]
    event = PortalEvent.objects.get(kind=PortalEvent.Kind.ENTRA_AUDIT_PRUNED)
    assert event == result.event
    assert event.detail["deleted"] == 3 and event.detail["retention_days"] == 730
    assert event.detail["cutoff"] == result.cutoff.isoformat()
    assert chain_verify().intact


def test_nothing_to_prune_writes_nothing() -> None:
    _records(1, 2)
    assert entra_audit_prune().deleted == 0
    assert not PortalEvent.objects.exists()


@override_settings(AUDIT_RETENTION_DAYS=30)
def test_retention_is_configurable_and_the_command_reports() -> None:
    _records(10, 40, 50)
    out = StringIO()
    call_command("audit_prune", "--dry-run", stdout=out)
    assert out.getvalue().startswith("would delete 2 Entra audit events")
    assert DirectoryAuditRecord.objects.count() == 3 and not PortalEvent.objects.exists()
    out = StringIO()
    call_command("audit_prune", stdout=out)
    assert out.getvalue().startswith("deleted 2 Entra audit events") and "30 days" in out.getvalue()
    assert DirectoryAuditRecord.objects.count() == 1
    assert PortalEvent.objects.filter(kind=PortalEvent.Kind.ENTRA_AUDIT_PRUNED).count() == 1


def test_beat_task_prunes() -> None:
    _records(1000)
    assert prune_task.apply().get() == 1
    entry = settings.CELERY_BEAT_SCHEDULE["audit-entra-prune"]
    assert entry["task"] == "audit.tasks.entra_audit_prune" and entry["options"]["queue"] == "sync"


def test_portal_events_are_never_pruned() -> None:
    earlier = portal_event_record(kind=PortalEvent.Kind.SIGN_IN, ticket="INC0000001")
    _records(1000)
    entra_audit_prune(days=1)
    assert PortalEvent.objects.filter(pk=earlier.pk).exists()
    assert PortalEvent.objects.count() == 2 and chain_verify().intact
