"""An Entra event initiated by the portal's app but carrying no ``appId``, only the service
principal's object id (as public samples of real app-initiated directoryAudit records show), is
still the portal's: correlation then names the portal by its service principal, read through
Graph once and cached. Another app's service principal is never taken for the portal.
"""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.core.cache import cache
from django.utils import timezone

from accounts.app_roles import portal_service_principal_id
from audit.correlation import SESSIONS_REVOKED, explains
from audit.models import DirectoryAuditRecord
from audit.sources import PortalChange
from entra_emulator.seed import CLIENT_ID
from entra_emulator.server import EmulatorServer
from tests.personas import PERSONAS

pytestmark = pytest.mark.django_db

SAM = PERSONAS.standard_target


def _record(initiator_id: str) -> DirectoryAuditRecord:
    entra_id = f"Directory_{uuid.uuid4()}"
    return DirectoryAuditRecord.objects.create(
        entra_id=entra_id,
        activity_at=timezone.now(),
        category="UserManagement",
        activity=SESSIONS_REVOKED,
        result="success",
        initiated_by_kind=DirectoryAuditRecord.InitiatorKind.APP,
        initiated_by_id=initiator_id,
        initiated_by_name="MFA Helpdesk Portal",
        initiated_by_app_id="",  # appId null in the event
        target_id=SAM.oid,
        target_ids=[SAM.oid],
        raw={"id": entra_id, "activityDisplayName": SESSIONS_REVOKED},
    )


def _change() -> PortalChange:
    now = timezone.now()
    return PortalChange(
        pk=1,
        target_ids=frozenset({SAM.oid}),
        activities=frozenset({SESSIONS_REVOKED}),
        started_at=now - timedelta(minutes=1),
        finished_at=now,
    )


@pytest.fixture(autouse=True)
def _no_cached_service_principal() -> None:
    cache.delete("accounts:portal-service-principal-id")


def test_an_event_without_app_id_is_the_portals_by_its_service_principal(
    emulator: EmulatorServer,
) -> None:
    own = emulator.tenant.apps[CLIENT_ID].service_principal_id.lower()
    assert portal_service_principal_id() == own
    assert explains(_change(), _record(own))


def test_another_apps_service_principal_is_not_the_portal(emulator: EmulatorServer) -> None:
    assert not explains(_change(), _record(str(uuid.uuid4())))
    assert not explains(_change(), _record(""))
