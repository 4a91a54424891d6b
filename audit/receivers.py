"""The portal events that lower apps announce by signal instead of importing audit.

accounts sends ``accounts.signals.signed_in``, ``sign_in_refused`` and ``signed_out`` from its
views; :func:`connect` (called by ``AuditConfig.ready()``) makes each write its ``PortalEvent``,
inside the view's request, as the views once did themselves. A failure to record propagates to
the view (``Signal.send``, not ``send_robust``): a sign-in the log cannot record fails loudly.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest

from accounts import signals
from audit.models import PortalEvent
from audit.services import portal_event_record


def _signed_in(*, request: HttpRequest, user: Any, **_: Any) -> None:
    portal_event_record(kind=PortalEvent.Kind.SIGN_IN, actor=user, request=request)


def _sign_in_refused(*, request: HttpRequest, user: Any, reason: str, **_: Any) -> None:
    portal_event_record(
        kind=PortalEvent.Kind.SIGN_IN_REFUSED,
        actor=user,
        request=request,
        detail={"reason": reason},
    )


def _signed_out(*, request: HttpRequest, user: Any, reason: str = "", **_: Any) -> None:
    # ``reason``: the portal ended the session (accounts.middleware), not the person.
    portal_event_record(
        kind=PortalEvent.Kind.SIGN_OUT,
        actor=user,
        request=request,
        detail={"reason": reason} if reason else {},
    )


def connect() -> None:
    """Connect the receivers (idempotent: each has a ``dispatch_uid``)."""
    signals.signed_in.connect(_signed_in, dispatch_uid="audit.signed_in")
    signals.sign_in_refused.connect(_sign_in_refused, dispatch_uid="audit.sign_in_refused")
    signals.signed_out.connect(_signed_out, dispatch_uid="audit.signed_out")
