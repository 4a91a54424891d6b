"""The portal's event log is append-only and records who, what and from where."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import transaction
from django.test import RequestFactory

from audit.models import AppendOnlyError, PortalEvent
from audit.services import portal_event_record
from tests.personas import AGENT, portal_user


@pytest.fixture
def ada(db: None) -> Any:
    return portal_user(AGENT)


@pytest.mark.django_db
def test_record_copies_actor_and_request(ada: Any, rf: RequestFactory) -> None:
    request = rf.get("/", REMOTE_ADDR="127.0.0.9", HTTP_USER_AGENT="Firefox/140 " + "x" * 900)
    event = portal_event_record(
        kind=PortalEvent.Kind.SIGN_IN, actor=ada, request=request, detail={"why": "test"}
    )
    stored = PortalEvent.objects.get(pk=event.pk)
    assert stored.actor_id == ada.pk
    assert stored.actor_name == "Ada Agent"
    assert stored.actor_oid == AGENT.oid
    assert stored.source_ip == "127.0.0.9"
    assert stored.user_agent.startswith("Firefox/140") and len(stored.user_agent) == 512
    assert stored.detail == {"why": "test"}
    assert stored.request is None


@pytest.mark.django_db
def test_unknown_kind_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown portal event kind"):
        portal_event_record(kind="sign_in_maybe")


@pytest.mark.django_db
def test_events_cannot_be_changed_or_removed(ada: Any) -> None:
    event = portal_event_record(kind=PortalEvent.Kind.SIGN_OUT, actor=ada)
    event.detail = {"rewritten": True}
    with pytest.raises(AppendOnlyError):
        event.save()
    with pytest.raises(AppendOnlyError):
        event.delete()
    with pytest.raises(AppendOnlyError):
        PortalEvent.objects.filter(pk=event.pk).update(actor_name="Someone else")
    with pytest.raises(AppendOnlyError):
        PortalEvent.objects.all().delete()
    fetched = PortalEvent.objects.get(pk=event.pk)
    with pytest.raises(AppendOnlyError):
        fetched.save()
    # bulk_update runs in a transaction without a savepoint: give it one so the test's own
    # transaction stays usable after the refusal.
    with pytest.raises(AppendOnlyError), transaction.atomic():
        PortalEvent.objects.bulk_update([fetched], ["actor_name"])
    assert PortalEvent.objects.get(pk=event.pk).detail == {}
    # An audited person cannot be deleted out from under the log.
    from django.db.models import ProtectedError

    with pytest.raises(ProtectedError):
        ada.delete()
