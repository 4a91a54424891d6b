"""Expired sessions are deleted every day by beat (issue 10, point 15)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.conf import settings
from django.contrib.sessions.models import Session
from django.utils import timezone

from accounts.tasks import sessions_clear_expired


def test_beat_clears_expired_sessions_every_day() -> None:
    entries = [
        entry
        for entry in settings.CELERY_BEAT_SCHEDULE.values()
        if entry["task"] == "accounts.tasks.sessions_clear_expired"
    ]
    assert len(entries) == 1
    assert float(entries[0]["schedule"]) <= 86400
    assert entries[0]["options"]["queue"] == "sync"


@pytest.mark.django_db
def test_the_task_deletes_expired_sessions_and_keeps_live_ones() -> None:
    now = timezone.now()
    Session.objects.create(session_key="e" * 32, session_data="x", expire_date=now - timedelta(1))
    Session.objects.create(session_key="l" * 32, session_data="x", expire_date=now + timedelta(1))
    sessions_clear_expired.apply()  # as the worker runs it, in this process
    assert list(Session.objects.values_list("session_key", flat=True)) == ["l" * 32]
