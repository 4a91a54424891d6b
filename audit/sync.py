"""The incremental sync of Entra's directory audit log into ``DirectoryAuditRecord``.

One run (:func:`entra_audit_sync`):

1. takes the sync's lease (a conditional UPDATE of the ``AuditSyncState`` row), so two workers,
   or beat and ``audit_backfill``, never run at once; raises :class:`SyncBusy` otherwise;
2. resumes the unfinished run's ``@odata.nextLink`` if there is one; otherwise asks Graph for
   every event since ``watermark - AUDIT_SYNC_OVERLAP_MINUTES`` (or ``since``, or
   ``AUDIT_SYNC_INITIAL_DAYS`` back for the very first run);
3. for each page, in one transaction: inserts the events the keep rule accepts (duplicates by
   ``entra_id`` are ignored: the overlap re-reads events on purpose), correlates them with
   portal requests, and saves the next link and the lease; so a crash loses at most the page
   in flight, and the next run resumes from the saved link;
4. after the last page, moves the watermark to the time the run started reading.

Graph documents no order for the list (nor does the sync ask for one), so the watermark can
only move once the whole run is read: moving it after page 1 would skip the pages not yet read
if the run then died. Calls go through the
shared budget at ``sync`` priority: interactive work is served first.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from audit.correlation import correlate_records
from audit.models import AuditSyncState, DirectoryAuditRecord
from audit.signals import send_security_events_seen_on_commit
from graph import GraphBadRequest, GraphClient
from graph.audit_logs import directory_audits_page
from graph.results import DirectoryAudit, Page, thaw
from portal.graph_client import get_graph_client

logger = logging.getLogger(__name__)


class SyncBusy(RuntimeError):
    """Another run holds the sync's lease."""


class LeaseLost(RuntimeError):
    """The run's lease lapsed and another run took it; this run stops without saving."""


@dataclass(frozen=True)
class KeepRule:
    """Which Entra events the cache keeps (``AUDIT_KEEP_CATEGORIES`` / ``AUDIT_KEEP_ACTIVITIES``).

    ``categories`` empty: any category. An activity written ``"Update user:Property"`` is kept
    only when the event modifies that property.
    """

    categories: frozenset[str]
    activities: frozenset[str]
    activity_properties: dict[str, frozenset[str]]

    @classmethod
    def from_settings(cls) -> KeepRule:
        return cls.parse(settings.AUDIT_KEEP_CATEGORIES, settings.AUDIT_KEEP_ACTIVITIES)

    @classmethod
    def parse(cls, categories: Iterable[str], activities: Iterable[str]) -> KeepRule:
        plain: set[str] = set()
        with_property: dict[str, set[str]] = {}
        for entry in activities:
            name, _, prop = entry.partition(":")
            if prop:
                with_property.setdefault(name.strip(), set()).add(prop.strip())
            else:
                plain.add(name.strip())
        return cls(
            categories=frozenset(c.strip() for c in categories if c.strip()),
            activities=frozenset(plain),
            activity_properties={k: frozenset(v) for k, v in with_property.items()},
        )

    def keeps(self, audit: DirectoryAudit) -> bool:
        if self.categories and audit.category not in self.categories:
            return False
        if audit.activity_display_name in self.activities:
            return True
        wanted = self.activity_properties.get(audit.activity_display_name)
        if not wanted:
            return False
        modified = {
            str(prop.get("displayName"))
            for target in audit.target_resources
            for prop in target.modified_properties
        }
        return bool(wanted & modified)


@dataclass(frozen=True)
class SyncResult:
    """What one run did. ``finished`` is False when it stopped early (``max_pages``)."""

    pages: int
    seen: int
    kept: int
    inserted: int
    linked: int
    outside: int
    resumed: bool
    finished: bool
    watermark: datetime | None


ProgressCallback = Callable[[int, int, int, datetime | None, bool], None]


def record_from_audit(audit: DirectoryAudit, *, synced_at: datetime) -> DirectoryAuditRecord:
    """The cache row for one Graph event (not saved). Raises ValueError for an event without an
    id or a time, which the cache cannot key or order."""
    if not audit.id or audit.activity_date_time is None:
        raise ValueError(f"directoryAudit without id or activityDateTime: {audit.id!r}")
    user_target = next((t for t in audit.target_resources if (t.type or "") == "User"), None)
    first = user_target or (audit.target_resources[0] if audit.target_resources else None)
    record = DirectoryAuditRecord(
        entra_id=audit.id,
        activity_at=audit.activity_date_time,
        category=audit.category[:64],
        activity=audit.activity_display_name[:256],
        result=(audit.result or "")[:32],
        result_reason=(audit.result_reason or "")[:1024],
        logged_by_service=(audit.logged_by_service or "")[:128],
        operation_type=(audit.operation_type or "")[:64],
        target_id=((first.id if first else "") or "")[:64],
        target_name=((first.display_name if first else "") or "")[:256],
        target_upn=((first.user_principal_name if first else "") or "")[:320],
        target_ids=list(audit.target_ids),
        correlation_id=(audit.correlation_id or "")[:64],
        raw=thaw(audit.raw),
        synced_at=synced_at,
    )
    if audit.initiated_by_app is not None and audit.initiated_by_user is None:
        app = audit.initiated_by_app
        record.initiated_by_kind = DirectoryAuditRecord.InitiatorKind.APP
        record.initiated_by_id = (app.service_principal_id or "")[:64]
        record.initiated_by_name = (app.display_name or app.service_principal_name or "")[:256]
        record.initiated_by_app_id = (app.app_id or "")[:64]
    else:
        user = audit.initiated_by_user
        record.initiated_by_kind = DirectoryAuditRecord.InitiatorKind.USER
        record.initiated_by_id = ((user.id if user else "") or "")[:64]
        name = (user.display_name or user.user_principal_name) if user else ""
        record.initiated_by_name = (name or "")[:256]
    return record


# --- the lease ---------------------------------------------------------------------------------


def lease_acquire(owner: str, *, seconds: int | None = None) -> bool:
    """Take the sync's lease for ``owner`` if it is free, lapsed or already theirs."""
    AuditSyncState.load()
    now = timezone.now()
    seconds = settings.AUDIT_SYNC_LEASE_SECONDS if seconds is None else seconds
    taken = (
        AuditSyncState.objects.filter(pk=AuditSyncState.SINGLETON_ID)
        .filter(
            Q(lease_expires_at__isnull=True)
            | Q(lease_expires_at__lt=now)
            | Q(lease_owner=owner)
            | Q(lease_owner="")
        )
        .update(lease_owner=owner, lease_expires_at=now + timedelta(seconds=seconds))
    )
    return taken == 1


def lease_release(owner: str) -> None:
    """Give the lease back (only if ``owner`` still holds it)."""
    AuditSyncState.objects.filter(pk=AuditSyncState.SINGLETON_ID, lease_owner=owner).update(
        lease_owner="", lease_expires_at=None
    )


# --- one run -------------------------------------------------------------------------------------


def _store_page(
    page: Page[DirectoryAudit],
    *,
    owner: str,
    rule: KeepRule,
    run_started: datetime,
) -> tuple[int, int, int, int, datetime | None]:
    """Store one page and advance the state, in one transaction.

    Returns (kept, inserted, linked, outside, watermark or None while the run goes on).
    Raises LeaseLost (and stores nothing) when another run has taken the lease.
    """
    now = timezone.now()
    records: dict[str, DirectoryAuditRecord] = {}
    for audit in page.items:
        if not rule.keeps(audit):
            continue
        try:
            record = record_from_audit(audit, synced_at=now)
        except ValueError:
            logger.warning("audit sync: skipped an event without id or time (%r)", audit.id)
            continue
        records.setdefault(record.entra_id, record)
    with transaction.atomic():
        state = AuditSyncState.objects.select_for_update().get(pk=AuditSyncState.SINGLETON_ID)
        if state.lease_owner != owner:
            raise LeaseLost("the audit sync's lease was taken by another run")
        existing = set(
            DirectoryAuditRecord.objects.filter(entra_id__in=records).values_list(
                "entra_id", flat=True
            )
        )
        DirectoryAuditRecord.objects.bulk_create(
            [r for key, r in records.items() if key not in existing],
            ignore_conflicts=True,
            batch_size=500,
        )
        inserted = len(records) - len(existing)
        # Re-read: rows that existed keep their primary key and links; new ones get theirs.
        stored = list(DirectoryAuditRecord.objects.filter(entra_id__in=records))
        correlation = correlate_records(stored)
        # mfa's person cache forgets whom these new events changed (audit.signals).
        send_security_events_seen_on_commit(r for r in stored if r.entra_id not in existing)
        state.resume_link = page.next_link or ""
        state.lease_expires_at = now + timedelta(seconds=settings.AUDIT_SYNC_LEASE_SECONDS)
        state.events_ingested = F("events_ingested") + inserted
        if page.next_link:
            state.run_high_water = run_started
        else:
            if state.watermark is None or run_started > state.watermark:
                state.watermark = run_started
            state.run_high_water = None
            state.last_finished_at = now
            state.last_error = ""
        state.save()
        watermark = None if page.next_link else state.watermark
    return len(records), inserted, correlation.linked, correlation.outside, watermark


def _start_since(state: AuditSyncState, since: datetime | None, now: datetime) -> datetime:
    if since is not None:
        return since
    if state.watermark is not None:
        return state.watermark - timedelta(minutes=settings.AUDIT_SYNC_OVERLAP_MINUTES)
    return now - timedelta(days=settings.AUDIT_SYNC_INITIAL_DAYS)


def entra_audit_sync(
    *,
    client: GraphClient | None = None,
    since: datetime | None = None,
    restart: bool = False,
    max_pages: int | None = None,
    progress: ProgressCallback | None = None,
) -> SyncResult:
    """Run the sync (see the module docstring) and return what it did.

    ``since``: read from this time instead of the watermark (backfill); an unfinished run is
    still resumed first unless ``restart`` discards it. ``max_pages``: stop after that many
    pages, leaving the run resumable. ``progress(pages, seen, inserted, oldest_time_on_page,
    last_page)`` is called after each stored page.

    Raises SyncBusy when another run holds the lease, LeaseLost when this run lost it midway, and
    any GraphError from Graph (the pages stored so far stay stored, the run stays resumable;
    ``last_error`` records the failure).
    """
    client = client or get_graph_client().with_priority("sync")
    owner = uuid.uuid4().hex
    if not lease_acquire(owner):
        raise SyncBusy("another audit sync run holds the lease")
    rule = KeepRule.from_settings()
    pages = seen = kept = inserted = linked = outside = 0
    watermark: datetime | None = None
    finished = False
    try:
        now = timezone.now()
        AuditSyncState.objects.filter(pk=AuditSyncState.SINGLETON_ID).update(last_started_at=now)
        state = AuditSyncState.load()
        if restart and state.resume_link:
            AuditSyncState.objects.filter(pk=state.pk).update(resume_link="", run_high_water=None)
            state.resume_link, state.run_high_water = "", None
        link: str | None = state.resume_link or None
        resumed = link is not None
        run_started = state.run_high_water if resumed and state.run_high_water else now
        start_since = _start_since(state, since, now)
        while max_pages is None or pages < max_pages:
            try:
                if link is not None:
                    page = directory_audits_page(client, next_link=link)
                else:
                    page = directory_audits_page(
                        client, since=start_since, top=settings.AUDIT_SYNC_PAGE_SIZE
                    )
            except GraphBadRequest:
                if link is None or pages:
                    raise
                # A saved link that Graph no longer accepts (its page token expired): start
                # again from the watermark; the overlap and the dedupe make this safe.
                logger.warning("audit sync: the saved next link was refused; starting afresh")
                link, run_started = None, now
                continue
            page_kept, page_inserted, page_linked, page_outside, watermark = _store_page(
                page, owner=owner, rule=rule, run_started=run_started
            )
            pages += 1
            seen += len(page.items)
            kept += page_kept
            inserted += page_inserted
            linked += page_linked
            outside += page_outside
            if progress is not None:
                oldest = min(
                    (a.activity_date_time for a in page.items if a.activity_date_time),
                    default=None,
                )
                progress(pages, seen, inserted, oldest, not page.next_link)
            if not page.next_link:
                finished = True
                break
            link = page.next_link
    except Exception as exc:
        AuditSyncState.objects.filter(pk=AuditSyncState.SINGLETON_ID).update(
            last_error=f"{type(exc).__name__}: {exc}"[:2000]
        )
        raise
    finally:
        lease_release(owner)
    logger.info(
        "audit sync: %d pages, %d events read, %d kept, %d new, %d linked, %d outside the portal",
        pages,
        seen,
        kept,
        inserted,
        linked,
        outside,
    )
    return SyncResult(
        pages=pages,
        seen=seen,
        kept=kept,
        inserted=inserted,
        linked=linked,
        outside=outside,
        resumed=resumed,
        finished=finished,
        watermark=watermark,
    )


# --- one person, on demand -----------------------------------------------------------------------


@dataclass(frozen=True)
class PersonSyncResult:
    """What one person's on-demand sync did: events read, kept by the keep rule, newly stored."""

    target_id: str
    seen: int
    kept: int
    inserted: int


# One page of a person's newest events: far more than the person page shows (10).
PERSON_SYNC_TOP = 100
# How long "a sync of this person is under way" is believed without the task ending it.
PERSON_SYNC_MARK_SECONDS = 60


def _person_sync_key(target_id: str) -> str:
    return f"audit:person-sync:{target_id.lower()}"


def person_sync_mark(target_id: str) -> None:
    """Note that a sync of ``target_id`` was asked for (the task ends the note)."""
    cache.set(_person_sync_key(target_id), True, timeout=PERSON_SYNC_MARK_SECONDS)


def person_sync_forget(target_id: str) -> None:
    """End the note of :func:`person_sync_mark` (the task could not be queued)."""
    cache.delete(_person_sync_key(target_id))


def person_sync_pending(target_id: str) -> bool:
    """Whether a sync of ``target_id`` was asked for and has not ended (at most
    PERSON_SYNC_MARK_SECONDS ago)."""
    return bool(cache.get(_person_sync_key(target_id)))


def entra_audit_sync_person(
    *, target_id: str, client: GraphClient | None = None, top: int = PERSON_SYNC_TOP
) -> PersonSyncResult:
    """Read the newest ``top`` Entra audit events about ``target_id``
    (one page, newest first) and store those the keep rule accepts, correlated as the sync does.

    Independent of the tenant-wide run: it takes no lease and moves no watermark (the next run
    re-reads these events and the dedupe by ``entra_id`` ignores them). ``client``: the caller's
    view (an agent's on-demand sync passes theirs); by default the process client at ``sync``
    priority. Raises ValueError for an id Graph's filter cannot take, and any GraphError.
    """
    try:
        return _sync_person(target_id, client or get_graph_client().with_priority("sync"), top=top)
    finally:
        cache.delete(_person_sync_key(target_id))


def _sync_person(target_id: str, client: GraphClient, *, top: int) -> PersonSyncResult:
    page = directory_audits_page(client, target_id=target_id, top=top, newest_first=True)
    rule = KeepRule.from_settings()
    now = timezone.now()
    records: dict[str, DirectoryAuditRecord] = {}
    for audit in page.items:
        if not rule.keeps(audit):
            continue
        try:
            record = record_from_audit(audit, synced_at=now)
        except ValueError:
            continue
        records.setdefault(record.entra_id, record)
    with transaction.atomic():
        existing = set(
            DirectoryAuditRecord.objects.filter(entra_id__in=records).values_list(
                "entra_id", flat=True
            )
        )
        DirectoryAuditRecord.objects.bulk_create(
            [r for key, r in records.items() if key not in existing],
            ignore_conflicts=True,
            batch_size=500,
        )
        stored = list(DirectoryAuditRecord.objects.filter(entra_id__in=records))
        correlate_records(stored)
        send_security_events_seen_on_commit(r for r in stored if r.entra_id not in existing)
    logger.info(
        "audit sync of %s: %d events read, %d kept, %d new",
        target_id,
        len(page.items),
        len(records),
        len(records) - len(existing),
    )
    return PersonSyncResult(
        target_id=target_id,
        seen=len(page.items),
        kept=len(records),
        inserted=len(records) - len(existing),
    )
