"""History filters and cursors: what ``/audit/`` reads from its URL, and the labels and
outcome groups of the two sources (portal events and cached Entra records)."""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from typing import Literal

from audit import activities as entra
from audit.models import PortalEvent

Source = Literal["portal", "entra"]
Order = Literal["desc", "asc"]

# Ties in time are broken by source, then id: Entra records sort below portal events of the same
# instant (rank 0 < 1), so the merged order is total and a cursor names exactly one position.
SOURCE_RANK: dict[str, int] = {"entra": 0, "portal": 1}
SOURCES: tuple[str, ...] = ("portal", "entra")
Q_MAX_LENGTH = 200

GUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")

# Entra activities offered in the kind filter, as Microsoft's audit activity reference spells
# them (audit/activities.py); any other activity name given in the URL filters as well.
KNOWN_ENTRA_ACTIVITIES: tuple[str, ...] = (
    entra.ADMIN_DELETED_SECURITY_INFO,
    entra.ADMIN_REGISTERED_SECURITY_INFO,
    entra.USER_DELETED_SECURITY_INFO,
    entra.USER_REGISTERED_SECURITY_INFO,
    entra.PASSKEY_DELETED,
    entra.FIDO2_KEY_DELETED,
    entra.WINDOWS_HELLO_DELETED,
    entra.SESSIONS_REVOKED,
    entra.PER_USER_MFA_STATE_UPDATED,
    entra.USER_UPDATED,
    entra.STRONG_AUTHENTICATION_DISABLED,
    entra.STRONG_AUTHENTICATION_ENABLED,
    entra.PASSWORD_RESET,
    *entra.ROLE_ADD_ACTIVITIES,
    *entra.ROLE_REMOVE_ACTIVITIES,
)

K = PortalEvent.Kind
# What "outcome" means for a portal event. Entra records carry their own result.
PORTAL_OUTCOMES: dict[str, tuple[str, ...]] = {
    "success": (
        K.ACTION_SUCCEEDED,
        K.VERIFICATION_SUCCEEDED,
        K.VERIFICATION_MANUAL,
        K.SIGN_IN,
        K.TAP_REVEALED,
        K.ROLE_CHANGE_SUCCEEDED,
    ),
    "partial": (K.ACTION_PARTIALLY_SUCCEEDED,),
    "failure": (
        K.ACTION_FAILED,
        K.VERIFICATION_FAILED,
        K.SIGN_IN_REFUSED,
        K.TAP_REVEAL_REFUSED,
        K.ROLE_CHANGE_FAILED,
    ),
    "stopped": (
        K.ACTION_REJECTED,
        K.ACTION_CANCELLED,
        K.ACTION_EXPIRED,
        K.ROLE_CHANGE_REJECTED,
        K.ROLE_CHANGE_CANCELLED,
        K.ROLE_CHANGE_EXPIRED,
    ),
}
ENTRA_OUTCOMES: dict[str, tuple[str, ...]] = {
    "success": ("success",),
    "failure": ("failure", "timeout"),
}
OUTCOME_LABELS: dict[str, str] = {
    "success": "Success",
    "partial": "Partial success",
    "failure": "Failure",
    "stopped": "Rejected, cancelled or expired",
}
PORTAL_KIND_OUTCOME: dict[str, str] = {
    kind: outcome for outcome, kinds in PORTAL_OUTCOMES.items() for kind in kinds
}
KIND_LABELS: dict[str, str] = dict(PortalEvent.Kind.choices)
ENTRA_RESULT_OUTCOME: dict[str, str] = {
    result: outcome for outcome, results in ENTRA_OUTCOMES.items() for result in results
}
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class FilterError(ValueError):
    """A history filter or cursor in the URL is malformed; ``errors`` maps field to message."""

    def __init__(self, errors: Mapping[str, str]) -> None:
        self.errors = dict(errors)
        super().__init__("; ".join(f"{k}: {v}" for k, v in self.errors.items()))


@dataclass(frozen=True)
class HistoryFilters:
    """The filters of ``/audit/`` (all optional; all given ones must hold).

    ``since``/``until``: calendar days, inclusive, in the portal's time zone. ``agent``: the
    Entra object id of the helpdesk person (the portal event's actor or the request's requester;
    for an Entra record, also the person Entra names as initiator). ``target``: the object id of
    the person acted on. ``kind``: a ``PortalEvent.Kind`` value or an Entra activity name.
    ``outcome``: a key of ``OUTCOME_LABELS``. ``source``: "portal", "entra" or "" for both.
    ``q``: free text, case-insensitive, in names, UPNs, tickets and activities. ``request``: an
    ActionRequest's public id: its portal events and its linked Entra records. ``outside``: only
    Entra changes made outside the portal. ``order``: "desc" (newest first) or "asc".
    """

    since: date | None = None
    until: date | None = None
    agent: str = ""
    target: str = ""
    kind: str = ""
    outcome: str = ""
    source: str = ""
    q: str = ""
    request: uuid.UUID | None = None
    outside: bool = False
    order: Order = "desc"

    @classmethod
    def from_params(cls, params: Mapping[str, str]) -> HistoryFilters:
        """Parse GET parameters. Unknown parameters are ignored (``after``/``before`` are the
        cursor's). Raises FilterError naming each malformed parameter."""
        errors: dict[str, str] = {}

        def day(name: str) -> date | None:
            raw = (params.get(name) or "").strip()
            if not raw:
                return None
            try:
                return date.fromisoformat(raw)
            except ValueError:
                errors[name] = "must be a date like 2026-03-31"
                return None

        def guid(name: str) -> str:
            raw = (params.get(name) or "").strip().lower()
            if raw and not GUID_RE.match(raw):
                errors[name] = "must be an Entra object id (a GUID)"
                return ""
            return raw

        since, until = day("since"), day("until")
        if since and until and since > until:
            errors["until"] = "must not be before the start date"
        outcome = (params.get("outcome") or "").strip()
        if outcome and outcome not in OUTCOME_LABELS:
            errors["outcome"] = f"must be one of {', '.join(OUTCOME_LABELS)}"
        source = (params.get("source") or "").strip()
        if source and source not in SOURCES:
            errors["source"] = "must be portal or entra"
        order = (params.get("order") or "desc").strip()
        if order not in ("desc", "asc"):
            errors["order"] = "must be desc or asc"
        q = (params.get("q") or "").strip()
        if len(q) > Q_MAX_LENGTH:
            errors["q"] = f"must be at most {Q_MAX_LENGTH} characters"
        kind = (params.get("kind") or "").strip()
        if len(kind) > 256:
            errors["kind"] = "is too long"
        request_id: uuid.UUID | None = None
        raw_request = (params.get("request") or "").strip()
        if raw_request:
            try:
                request_id = uuid.UUID(raw_request)
            except ValueError:
                errors["request"] = "must be a request id (a GUID)"
        outside = (params.get("outside") or "").strip().lower() in ("1", "true", "on", "yes")
        filters = cls(
            since=since,
            until=until,
            agent=guid("agent"),
            target=guid("target"),
            kind=kind,
            outcome=outcome if outcome in OUTCOME_LABELS else "",
            source=source if source in SOURCES else "",
            q=q[:Q_MAX_LENGTH],
            request=request_id,
            outside=outside,
            order="asc" if order == "asc" else "desc",
        )
        if errors:
            raise FilterError(errors)
        return filters

    def to_params(self) -> dict[str, str]:
        """The GET parameters that give these filters back (defaults left out): a bookmark."""
        params: dict[str, str] = {}
        if self.since:
            params["since"] = self.since.isoformat()
        if self.until:
            params["until"] = self.until.isoformat()
        for name in ("agent", "target", "kind", "outcome", "source", "q"):
            value = getattr(self, name)
            if value:
                params[name] = value
        if self.request:
            params["request"] = str(self.request)
        if self.outside:
            params["outside"] = "1"
        if self.order != "desc":
            params["order"] = self.order
        return params

    @property
    def descending(self) -> bool:
        return self.order == "desc"

    def reversed(self) -> HistoryFilters:
        return replace(self, order="asc" if self.descending else "desc")


@dataclass(frozen=True, order=True)
class Cursor:
    """A position in the merged order: (time, source rank, id). Encoded in URLs as
    ``<microseconds since 1970>.<rank>.<id>``."""

    at: datetime
    rank: int
    id: int

    def encode(self) -> str:
        micros = (self.at - EPOCH) // timedelta(microseconds=1)
        return f"{micros}.{self.rank}.{self.id}"

    @classmethod
    def decode(cls, raw: str) -> Cursor:
        """Raises FilterError for anything but three integers with a known rank."""
        parts = raw.strip().split(".")
        try:
            micros, rank, row_id = (int(p) for p in parts)
        except ValueError:
            raise FilterError({"cursor": "is not a history position"}) from None
        if rank not in SOURCE_RANK.values() or row_id < 1:
            raise FilterError({"cursor": "is not a history position"})
        try:
            at = EPOCH + timedelta(microseconds=micros)
        except OverflowError:
            raise FilterError({"cursor": "is not a history position"}) from None
        return cls(at, rank, row_id)
