"""The reads with compiled columns (``audit.selectors.compiled.values_rows``), which history's
pages use, give exactly what the ORM's ``order_by(...).values_list(...)[:limit]`` gives: the
same rows, in the same order, with the same values (JSON decoded, datetimes aware)."""

from __future__ import annotations

from typing import Any

import pytest

from audit.models import DirectoryAuditRecord, PortalEvent
from audit.selectors.compiled import values_rows
from audit.selectors.rows import ENTRA_FIELDS, PORTAL_FIELDS
from mfa.models import ActionRequest
from tests.audit.test_history_statements import SAM, _requests

pytestmark = pytest.mark.django_db

K = PortalEvent.Kind


def test_compiled_reads_give_what_the_orm_gives() -> None:
    made = _requests(3)
    cases: list[tuple[Any, tuple[str, ...], tuple[str, ...], int | None]] = [
        (PortalEvent.objects.all(), PORTAL_FIELDS, ("-created_at", "-id"), 4),
        (PortalEvent.objects.filter(request__in=[r.pk for r in made]), PORTAL_FIELDS, (), None),
        (
            PortalEvent.objects.filter(
                request__in=ActionRequest.objects.filter(target_id=SAM.oid).values("pk")
            ),
            PORTAL_FIELDS,
            ("created_at", "id"),
            None,
        ),
        (PortalEvent.objects.filter(request__in=[]), PORTAL_FIELDS, (), None),
        (
            DirectoryAuditRecord.objects.filter(action_request__isnull=False, target_id=SAM.oid),
            ENTRA_FIELDS,
            ("-activity_at", "-id"),
            3,
        ),
        (
            ActionRequest.objects.filter(pk__in=[r.pk for r in made]),
            ("pk", "public_id", "requester__username", "verification__method", "created_at"),
            ("pk",),
            None,
        ),
    ]
    for qs, fields, order, limit in cases:
        expected = list(qs.order_by(*order).values_list(*fields))
        if limit is not None:
            expected = expected[:limit]
        assert values_rows(qs, fields, order=order, limit=limit) == expected, qs.query
    # The detail is decoded as the ORM decodes it.
    first = values_rows(PortalEvent.objects.filter(kind=K.SIGN_IN), PORTAL_FIELDS)[0]
    assert first[-1] == PortalEvent.objects.get(kind=K.SIGN_IN).detail
