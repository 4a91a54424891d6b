"""What audit knows of the flows above it, filled in by those flows when the portal starts.

audit sits below mfa and roles in the portal's one-way dependencies (``mfa -> roles -> outbox
-> audit -> accounts -> graph``), yet its history shows the request each row belongs to, its
dashboard counts requests, and its correlation asks whether a portal change explains an Entra
event. Instead of importing the flows, audit keeps this registry, and each flow fills it in its
``AppConfig.ready()``:

- the **request source**, exactly one (mfa's ``ActionRequest``): the model that
  ``PortalEvent.request`` and ``DirectoryAuditRecord.action_request`` point to, its labels, the
  facts about its statuses and tiers that the dashboard needs, and its candidate changes for
  correlation (a record a request explains is linked to it);
- **change sources**, any number (roles' ``RoleChangeRequest``): flows whose changes explain
  Entra events, so that they are not "outside the portal", without being the record's link;
- **change histories**, one per such flow that history shows as requests of their own
  (:class:`ChangeHistory`: roles' summaries of role changes, and which change each Entra record
  belongs to), so that a role change's events and Entra's record of it read as one request.

Read the registry when a function runs, never at import time: modules are imported before the
apps are ready. Registering again under the same name replaces the earlier entry.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, NamedTuple

from django.core.exceptions import ImproperlyConfigured

if TYPE_CHECKING:
    from django.db import models

    from audit.models import DirectoryAuditRecord


@dataclass(frozen=True)
class PortalChange:
    """One change the portal made (or is making) in Entra, as correlation sees it
    (``audit.correlation.explains`` is the rule that reads it).

    ``pk``: the change's primary key in its flow. ``target_ids``: the object ids every Entra event
    of the change names among its targets (a person; for a role change, the person and the role).
    ``activities``: the Entra activities the change writes. ``started_at``/``finished_at``: its
    run (no end while it runs). ``agent_oid``: the Entra object id of the person who asked for
    it, whom Entra names in delegated mode ("" when the flow always acts as the portal's app).
    ``required_properties``: modified properties an event must carry to be this change's
    ("Update user" is the portal's only when it changed ``StrongAuthenticationRequirement``).
    ``linked_entra_ids``: the Entra events the flow already linked to this change.
    """

    pk: int
    target_ids: frozenset[str]
    activities: frozenset[str]
    started_at: datetime
    finished_at: datetime | None
    agent_oid: str = ""
    required_properties: frozenset[str] = frozenset()
    linked_entra_ids: frozenset[str] = frozenset()


# Every change of a flow that could explain one of the records given, the correlation window's
# slack being the timedelta: one query for the whole batch of records.
ChangeFinder = Callable[["Sequence[DirectoryAuditRecord]", timedelta], Sequence[PortalChange]]


@dataclass(frozen=True)
class RequestSource:
    """The flow whose requests the audit trail links to.

    ``model``: the request model. History, exports and the dashboard read these fields of it:
    ``public_id``, ``kind``, ``status``, ``requester`` (the Django user; ``requester_name``),
    ``ticket``, ``target_id``, ``target_name``, ``target_tier``, ``created_at``,
    ``finished_at``, ``decided_by_name``, ``decision_comment`` and ``verification`` (with
    ``method`` and ``manual_check``). ``kind_labels``/``status_labels``/``verification_labels``:
    value to label, in display order. ``done_statuses``: a run ended (the dashboard's time to
    done); ``stopped_statuses``: it never ran (rejected, cancelled, expired).
    ``privileged_tier``: the ``target_tier`` of a privileged person. ``changes``: the requests
    that could explain a batch of records, newest start first (of two equally near, the later
    start wins).
    """

    model: type[models.Model]
    changes: ChangeFinder
    kind_labels: Mapping[str, str]
    status_labels: Mapping[str, str]
    verification_labels: Mapping[str, str]
    done_statuses: tuple[str, ...]
    stopped_statuses: tuple[str, ...]
    privileged_tier: str


@dataclass(frozen=True)
class ChangeSummary:
    """What history shows of one change of a change history (a role change): the request-like
    columns of a history row. ``kind_label``: what was asked ("Add a holder: Global
    Administrator"); ``url``: the change's own page; ``entra_event_ids``: the Entra events the
    flow linked to it; ``target_id``: the object id its portal events name as their target."""

    flow: str
    pk: int
    public_id: uuid.UUID
    kind_label: str
    status: str
    status_label: str
    requester_name: str
    requester_oid: str
    ticket: str
    needs_approval: bool
    decided_by_name: str
    decision_comment: str
    target_upn: str
    url: str
    created_at: datetime
    entra_event_ids: tuple[str, ...] = ()
    # The person (or group) the change is about: its events' ``target_id``.
    target_id: str = ""


class CandidateRecord(NamedTuple):
    """What a history page already read of an Entra record that may be a change's (a role
    membership event not linked to an action request): enough for a change history to answer
    without reading the record again when no change could have made it
    (``ChangeHistory.for_candidates``)."""

    id: int
    entra_id: str
    activity: str
    activity_at: datetime


@dataclass(frozen=True)
class ChangeHistory:
    """A flow whose changes history shows as requests (roles' role changes).

    ``event_key``: the key of a portal event's ``detail`` holding the change's primary key
    (every event of a change has it). ``summaries``: the changes among the given primary keys
    (one query; unknown ones left out). ``for_records``: for the Entra records among the given
    ones (ids) that belong to one of the flow's changes, that change's primary key: the change
    that linked it, else the one the correlation rule says explains it (a bounded number of
    queries for the whole batch). ``for_candidates`` (optional): the same answer as
    ``for_records``, given what the caller already read of the records (each a role membership
    event not linked to an action request: :class:`CandidateRecord`), so the flow need not read
    them again; callers use it when it is set.
    """

    flow: str
    event_key: str
    summaries: Callable[[Iterable[int]], dict[int, ChangeSummary]]
    for_records: Callable[[Sequence[int]], dict[int, int]]
    for_candidates: Callable[[Sequence[CandidateRecord]], dict[int, int]] | None = None

    def owners(self, records: Sequence[CandidateRecord]) -> dict[int, int]:
        """``for_candidates(records)`` when the flow gives it, else ``for_records`` of their
        ids."""
        if not records:
            return {}
        if self.for_candidates is not None:
            return self.for_candidates(records)
        return self.for_records([record.id for record in records])


@dataclass
class _Registry:
    request: RequestSource | None = None
    changes: dict[str, ChangeFinder] = field(default_factory=dict)
    histories: dict[str, ChangeHistory] = field(default_factory=dict)


_registry = _Registry()


def request_source_register(source: RequestSource) -> None:
    """Make ``source`` the flow whose requests history links to (one flow: the last wins)."""
    _registry.request = source


def request_source() -> RequestSource:
    """The registered request source. Raises ImproperlyConfigured when no app registered one
    (the app that owns the request model is missing from INSTALLED_APPS)."""
    if _registry.request is None:
        raise ImproperlyConfigured(
            "audit has no request source: the app of the request model (mfa) registers one "
            "in its AppConfig.ready()"
        )
    return _registry.request


def change_source_register(name: str, finder: ChangeFinder) -> None:
    """Let the changes ``finder`` returns explain Entra events (``name``: the flow, e.g.
    "roles"); they are never linked as the record's request."""
    _registry.changes[name] = finder


def change_sources() -> tuple[ChangeFinder, ...]:
    """Every registered change finder, in registration order."""
    return tuple(_registry.changes.values())


def change_history_register(history: ChangeHistory) -> None:
    """Let history show ``history.flow``'s changes as requests (registering again replaces)."""
    _registry.histories[history.flow] = history


def change_histories() -> tuple[ChangeHistory, ...]:
    """Every registered change history, in registration order."""
    return tuple(_registry.histories.values())


def request_manager() -> models.Manager[Any]:
    """The request model's default manager. audit knows the model only by the field names
    :class:`RequestSource` lists."""
    return request_source().model._default_manager
