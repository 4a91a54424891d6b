"""The lead dashboard's figures and anomaly flags, computed from the portal's requests and the
cached Entra records. The requests are those of the request source (``audit.sources``: mfa's
``ActionRequest``, which audit reads by its field names and does not import).

Charts (over ``DASHBOARD_WINDOW_DAYS``, days counted in ``DASHBOARD_TIMEZONE``): actions per day
by kind, outcomes, actions per agent, actions on privileged targets per day, and the median time
from request to done per day. An "action" is an ``ActionRequest`` made in the window, whatever
became of it.

Flags (each threshold is a ``DASHBOARD_*`` setting; each flag links to the history filtered on
what it is about):

- volume: an agent made at least ``DASHBOARD_VOLUME_MIN_ACTIONS`` actions in the last 24 hours,
  more than ``DASHBOARD_VOLUME_MULTIPLE`` times their own daily average over the
  ``DASHBOARD_BASELINE_DAYS`` before;
- off hours: an action made outside ``DASHBOARD_BUSINESS_HOURS`` / ``DASHBOARD_BUSINESS_DAYS``;
- repeat resets: a person reset (``DASHBOARD_RESET_KINDS``; rejected, cancelled and expired
  requests do not count) more than ``DASHBOARD_REPEAT_RESET_MAX`` times within
  ``DASHBOARD_REPEAT_RESET_DAYS``;
- privileged: an action on a privileged target;
- outside the portal: an Entra change no portal request explains (``outside_portal``). One that
  Entra says the portal's own app made (its client id) is named so: either it predates the
  portal's own records (a backfill of Entra's log, or the demo tenant's seeded history), or the
  portal's credentials were used outside the portal, which the flag says apart;
- manual checks: an agent recorded at least ``DASHBOARD_MANUAL_CHECKS_MIN`` manual caller checks
  in the last 24 hours (read from the portal's own ``verification_manual`` events, so audit needs
  nothing of mfa for it; mfa caps them at ``PORTAL_MANUAL_CHECKS_PER_DAY``).

Off hours, privileged and outside-the-portal look back ``DASHBOARD_FLAG_DAYS``.
"""

from __future__ import annotations

import statistics
import zoneinfo
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.urls import NoReverseMatch, reverse
from django.utils import timezone

from audit.correlation import is_portal_app
from audit.models import DirectoryAuditRecord, PortalEvent
from audit.sources import request_manager, request_source

# Flag lists show at most this many items (the count says how many there are).
FLAG_LIST_MAX = 50
_WEEKDAY_NAMES = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def duration_text(seconds: float | None) -> str:
    """``seconds`` for a person: "0.4 s" under ten seconds, "14 s" under a minute, else
    "2.5 min"; "" for None."""
    if seconds is None:
        return ""
    # A no-break space: the number and its unit stay on one line.
    if seconds < 10:
        return f"{seconds:.1f}\u00a0s"
    if seconds < 60:
        return f"{round(seconds)}\u00a0s"
    return f"{seconds / 60:.1f}\u00a0min"


def day_text(moment: datetime) -> str:
    """``moment`` as the audit pages write it: "3 Dec 2026, 14:05" in the portal's time zone."""
    local = timezone.localtime(moment)
    return f"{local.day} {_MONTHS[local.month - 1]} {local.year}, {local:%H:%M}"


@dataclass(frozen=True)
class Flag:
    """One anomaly: what, about whom, when, and the history URL that shows it."""

    title: str
    detail: str
    url: str
    at: datetime | None = None


@dataclass
class FlagGroup:
    """The flags of one rule, with the rule's threshold in words."""

    key: str
    title: str
    rule: str
    items: list[Flag] = field(default_factory=list)
    total: int = 0
    # How many more things the items stand for than their number (a flag summing up several).
    summed: int = 0

    @property
    def listed(self) -> int:
        """How many of ``total`` the items show."""
        return len(self.items) + self.summed

    def add(self, flag: Flag) -> None:
        self.total += 1
        if len(self.items) < FLAG_LIST_MAX:
            self.items.append(flag)


@dataclass
class DashboardFigures:
    """Everything the dashboard shows; ``charts_json()`` is what static/js/dashboard.js reads."""

    now: datetime
    days: list[date]
    total_actions: int
    per_day_by_kind: dict[str, list[int]]
    outcomes: list[tuple[str, str, int]]
    per_agent: list[tuple[str, int]]
    privileged_per_day: list[int]
    median_minutes_per_day: list[float | None]
    median_minutes: float | None
    flags: list[FlagGroup]
    median_seconds_per_day: list[float | None] = field(default_factory=list)
    median_seconds: float | None = None

    @property
    def median_text(self) -> str:
        """The median time from request to done in words: seconds under a minute ("14 s"),
        else minutes ("2.5 min"); "" when nothing is done yet."""
        return duration_text(self.median_seconds)

    @property
    def median_unit(self) -> str:
        """The chart's unit: seconds when every day's median is under a minute, else minutes."""
        values = [v for v in self.median_seconds_per_day if v is not None]
        return "s" if values and max(values) < 60 else "min"

    @property
    def day_labels(self) -> list[str]:
        """The x-axis' days, "3 Dec" (no leading zero), today the last."""
        return [f"{d.day} {_MONTHS[d.month - 1]}" for d in self.days]

    def charts_json(self) -> dict[str, Any]:
        kind_labels = request_source().kind_labels
        return {
            "days": [d.isoformat() for d in self.days],
            "perDayByKind": [
                {"label": kind_labels.get(kind, kind), "data": counts}
                for kind, counts in self.per_day_by_kind.items()
            ],
            "outcomes": {
                "labels": [label for _s, label, _n in self.outcomes],
                "data": [n for _s, _l, n in self.outcomes],
            },
            "perAgent": {
                "labels": [name for name, _n in self.per_agent],
                "data": [n for _name, n in self.per_agent],
            },
            "dayLabels": self.day_labels,
            "privilegedPerDay": self.privileged_per_day,
            "medianMinutesPerDay": self.median_minutes_per_day,
            "medianUnit": self.median_unit,
            "medianPerDay": (
                [None if v is None else round(v, 1) for v in self.median_seconds_per_day]
                if self.median_unit == "s"
                else self.median_minutes_per_day
            ),
        }

    @property
    def flag_total(self) -> int:
        return sum(group.total for group in self.flags)


def _history_url(**params: str) -> str:
    return reverse("audit:history") + "?" + urlencode({k: v for k, v in params.items() if v})


def _local_day(moment: datetime) -> str:
    """The calendar day of ``moment`` in the portal's time zone: what history's date filters
    read."""
    return timezone.localtime(moment).date().isoformat()


def _business_zone() -> zoneinfo.ZoneInfo:
    return zoneinfo.ZoneInfo(settings.DASHBOARD_TIMEZONE)


def is_business_time(moment: datetime) -> bool:
    """Whether ``moment`` falls within business hours on a business day (DASHBOARD_*)."""
    local = moment.astimezone(_business_zone())
    return (
        local.weekday() in settings.DASHBOARD_BUSINESS_WEEKDAYS
        and settings.DASHBOARD_BUSINESS_START <= local.time() < settings.DASHBOARD_BUSINESS_END
    )


def _charts(now: datetime) -> dict[str, Any]:
    zone = _business_zone()
    window_days: int = settings.DASHBOARD_WINDOW_DAYS
    today = now.astimezone(zone).date()
    days = [today - timedelta(days=n) for n in range(window_days - 1, -1, -1)]
    index = {d: i for i, d in enumerate(days)}
    start = datetime.combine(days[0], datetime.min.time(), tzinfo=zone)
    source = request_source()
    per_kind: dict[str, list[int]] = {kind: [0] * len(days) for kind in source.kind_labels}
    privileged = [0] * len(days)
    durations: list[list[float]] = [[] for _ in days]
    statuses: Counter[str] = Counter()
    agents: Counter[str] = Counter()
    rows = (
        request_manager()
        .filter(created_at__gte=start, created_at__lte=now)
        .values_list("created_at", "kind", "status", "requester_name", "target_tier", "finished_at")
        .iterator(chunk_size=2000)
    )
    total = 0
    for created_at, kind, status, requester_name, tier, finished_at in rows:
        i = index.get(created_at.astimezone(zone).date())
        if i is None:
            continue
        total += 1
        per_kind.setdefault(kind, [0] * len(days))[i] += 1
        statuses[status] += 1
        agents[requester_name] += 1
        if tier == source.privileged_tier:
            privileged[i] += 1
        if status in source.done_statuses and finished_at is not None:
            durations[i].append((finished_at - created_at).total_seconds())
    all_durations = [m for day in durations for m in day]
    status_labels = source.status_labels
    return {
        "days": days,
        "total_actions": total,
        "per_day_by_kind": {k: v for k, v in per_kind.items() if any(v)},
        "outcomes": [
            (status, status_labels.get(status, status), statuses[status])
            for status in status_labels
            if statuses[status]
        ],
        "per_agent": agents.most_common(),
        "privileged_per_day": privileged,
        "median_minutes_per_day": [
            round(statistics.median(day) / 60, 1) if day else None for day in durations
        ],
        "median_minutes": (
            round(statistics.median(all_durations) / 60, 1) if all_durations else None
        ),
        "median_seconds_per_day": [statistics.median(day) if day else None for day in durations],
        "median_seconds": statistics.median(all_durations) if all_durations else None,
    }


def _volume_flags(now: datetime) -> FlagGroup:
    multiple: float = settings.DASHBOARD_VOLUME_MULTIPLE
    minimum: int = settings.DASHBOARD_VOLUME_MIN_ACTIONS
    baseline_days: int = settings.DASHBOARD_BASELINE_DAYS
    group = FlagGroup(
        "volume",
        "Unusual volume",
        f"At least {minimum} actions in the last 24 hours and more than {multiple:g} times the "
        f"agent's daily average over the {baseline_days} days before.",
    )
    recent_start = now - timedelta(hours=24)
    baseline_start = recent_start - timedelta(days=baseline_days)
    recent: Counter[str] = Counter()
    baseline: Counter[str] = Counter()
    names: dict[str, str] = {}
    rows = (
        request_manager()
        .filter(created_at__gte=baseline_start, created_at__lte=now)
        .values_list("requester__username", "requester_name", "created_at")
        .iterator(chunk_size=2000)
    )
    for oid, name, created_at in rows:
        names[oid] = name
        (recent if created_at >= recent_start else baseline)[oid] += 1
    for oid, count in recent.most_common():
        average = baseline[oid] / baseline_days
        if count >= minimum and count > multiple * average:
            group.add(
                Flag(
                    title=names[oid],
                    detail=f"{count} actions in 24 hours; daily average {average:.1f} before.",
                    url=_history_url(agent=oid, since=_local_day(recent_start)),
                    at=now,
                )
            )
    return group


def _request_flags(now: datetime) -> tuple[FlagGroup, FlagGroup]:
    flag_days: int = settings.DASHBOARD_FLAG_DAYS
    start, end = settings.DASHBOARD_BUSINESS_START, settings.DASHBOARD_BUSINESS_END
    day_names = ", ".join(_WEEKDAY_NAMES[d] for d in sorted(settings.DASHBOARD_BUSINESS_WEEKDAYS))
    off_hours = FlagGroup(
        "off_hours",
        "Outside business hours",
        f"Actions outside {start:%H:%M}-{end:%H:%M} on {day_names} "
        f"({settings.DASHBOARD_TIMEZONE}), last {flag_days} days.",
    )
    privileged = FlagGroup(
        "privileged",
        "Privileged targets",
        f"Actions on people who hold a directory role or are in a protected group, "
        f"last {flag_days} days.",
    )
    zone = _business_zone()
    source = request_source()
    requests = (
        request_manager()
        .filter(created_at__gte=now - timedelta(days=flag_days))
        .order_by("-created_at", "-id")
        .values_list(
            "public_id", "created_at", "kind", "requester_name", "target_name", "target_tier"
        )
        .iterator(chunk_size=2000)
    )
    kind_labels = source.kind_labels
    for public_id, created_at, kind, requester_name, target_name, tier in requests:
        what = f"{kind_labels.get(kind, kind)} for {target_name}"
        url = _history_url(request=str(public_id))
        if not is_business_time(created_at):
            local = created_at.astimezone(zone)
            off_hours.add(
                Flag(
                    title=requester_name,
                    detail=f"{what}, {_WEEKDAY_NAMES[local.weekday()]} {local:%H:%M}",
                    url=url,
                    at=created_at,
                )
            )
        if tier == source.privileged_tier:
            privileged.add(
                Flag(
                    title=target_name, detail=f"{what} by {requester_name}", url=url, at=created_at
                )
            )
    return off_hours, privileged


def _repeat_reset_flags(now: datetime) -> FlagGroup:
    days: int = settings.DASHBOARD_REPEAT_RESET_DAYS
    most: int = settings.DASHBOARD_REPEAT_RESET_MAX
    kinds: list[str] = settings.DASHBOARD_RESET_KINDS
    source = request_source()
    kind_labels = source.kind_labels
    group = FlagGroup(
        "repeat_reset",
        "Repeated resets",
        f"The same person reset more than {most} time{'s' if most != 1 else ''} within "
        f"{days} days ({', '.join(kind_labels.get(k, k) for k in kinds)}).",
    )
    since = now - timedelta(days=days)
    per_target: dict[str, list[tuple[datetime, str]]] = defaultdict(list)
    names: dict[str, str] = {}
    rows = (
        request_manager()
        .filter(created_at__gte=since, created_at__lte=now, kind__in=kinds)
        # Rejected, cancelled and expired requests reset nobody.
        .exclude(status__in=source.stopped_statuses)
        .values_list("target_id", "target_name", "created_at", "requester_name")
        .iterator(chunk_size=2000)
    )
    for target_id, target_name, created_at, requester_name in rows:
        per_target[target_id].append((created_at, requester_name))
        names[target_id] = target_name
    for target_id, resets in sorted(per_target.items(), key=lambda item: -len(item[1])):
        if len(resets) <= most:
            continue
        agents = sorted({name for _at, name in resets})
        group.add(
            Flag(
                title=names[target_id],
                detail=f"{len(resets)} resets in {days} days, by {', '.join(agents)}",
                url=_history_url(target=target_id, since=_local_day(since)),
                at=max(at for at, _name in resets),
            )
        )
    return group


def _portal_records_began() -> datetime | None:
    """When the portal's own records begin: its first event (the chain's first link)."""
    return PortalEvent.objects.order_by("seq").values_list("created_at", flat=True).first()


def _outside_portal_flags(now: datetime) -> FlagGroup:
    flag_days: int = settings.DASHBOARD_FLAG_DAYS
    group = FlagGroup(
        "outside_portal",
        "Changes outside the portal",
        f"MFA, session and role changes in Entra that no portal request explains, last "
        f"{flag_days} days. One that Entra says the portal's own app made predates the "
        "portal's records, or means its credentials were used outside the portal.",
    )
    since = now - timedelta(days=flag_days)
    began = _portal_records_began()
    records = (
        DirectoryAuditRecord.objects.filter(outside_portal=True, activity_at__gte=since)
        .order_by("-activity_at", "-id")
        .only(
            "activity_at",
            "activity",
            "initiated_by_kind",
            "initiated_by_id",
            "initiated_by_app_id",
            "initiated_by_name",
            "target_id",
            "target_name",
        )
        .iterator(chunk_size=2000)
    )
    client_id: str = settings.ENTRA_CLIENT_ID
    before: list[DirectoryAuditRecord] = []
    for record in records:
        by = record.initiated_by_name or "unknown"
        detail = f"{record.activity} by {by}, {day_text(record.activity_at)}"
        if is_portal_app(record, client_id=client_id):
            if began is None or record.activity_at < began:
                # Entra's history from before the portal kept its own: one line for them all.
                before.append(record)
                continue
            detail += ": the portal's own app, but no portal request (its credentials used "
            detail += "outside the portal?)"
        group.add(
            Flag(
                title=record.target_name or "(no person)",
                detail=detail,
                url=_history_url(
                    source="entra",
                    outside="1",
                    target=record.target_id,
                    since=_local_day(record.activity_at),
                    until=_local_day(record.activity_at),
                ),
                at=record.activity_at,
            )
        )
    if before:
        _add_before_records(group, before, began)
    return group


def _add_before_records(
    group: FlagGroup, records: list[DirectoryAuditRecord], began: datetime | None
) -> None:
    """One flag, first, for the changes Entra says the portal's own app made before the portal's
    own records begin: no portal request can explain them, since the portal kept none then (a
    tenant's older history, or the demo tenant's seeded one)."""
    count, latest = len(records), max(r.activity_at for r in records)
    since = min(r.activity_at for r in records)
    when = f"before its own records begin ({day_text(began)})" if began else "before its records"
    flag = Flag(
        title=f"{count} change{'s' if count != 1 else ''} by the portal's own app",
        detail=(
            f"{records[0].initiated_by_name or 'The portal'} made them {when}, so no portal "
            "request can explain them: Entra's history from before the portal kept its own "
            "(in the demo, the emulator's seeded history)."
        ),
        url=_history_url(
            source="entra", outside="1", since=_local_day(since), until=_local_day(latest)
        ),
        at=latest,
    )
    group.items.insert(0, flag)
    group.total += count
    group.summed += count - 1
    del group.items[FLAG_LIST_MAX:]


def _bulk_operation_url(public_id: Any) -> str:
    """The bulk operation's page (``bulk:operation_detail``, reversed by name: audit may not
    import bulk), or the history when it cannot be named."""
    try:
        return reverse("bulk:operation_detail", args=[str(public_id)])
    except NoReverseMatch:
        return reverse("audit:history")


def _bulk_flags(now: datetime) -> FlagGroup:
    """Large or repeated bulk operations (issue 14), from their ``bulk_operation_requested``
    events (confirmed operations; ``left`` is the people included at that moment)."""
    large: int = settings.DASHBOARD_BULK_LARGE
    most: int = settings.DASHBOARD_BULK_REPEAT_MAX
    days: int = settings.DASHBOARD_REPEAT_RESET_DAYS
    group = FlagGroup(
        "bulk_operations",
        "Large or repeated bulk operations",
        f"A bulk operation on more than {large} people, or more than {most} confirmed by the "
        f"same person within {days} days.",
    )
    since = now - timedelta(days=days)
    rows = (
        PortalEvent.objects.filter(
            kind="bulk_operation_requested", created_at__gte=since, created_at__lte=now
        )
        .order_by("created_at")
        .values_list("actor_oid", "actor_name", "created_at", "detail")
    )
    per_starter: dict[str, list[datetime]] = defaultdict(list)
    names: dict[str, str] = {}
    for oid, name, created_at, detail in rows:
        facts = detail if isinstance(detail, dict) else {}
        per_starter[oid].append(created_at)
        names[oid] = name or oid
        size = sum(int(facts.get(key) or 0) for key in ("done", "failed", "left"))
        if size > large:
            group.add(
                Flag(
                    title=f"{facts.get('source_label') or 'Bulk operation'}: {size} people",
                    detail=f"Confirmed by {name or oid}",
                    url=_bulk_operation_url(facts.get("bulk_operation")),
                    at=created_at,
                )
            )
    for oid, moments in per_starter.items():
        if len(moments) > most:
            group.add(
                Flag(
                    title=names[oid],
                    detail=f"{len(moments)} bulk operations in {days} days",
                    url=_history_url(agent=oid, since=_local_day(since)),
                    at=moments[-1],
                )
            )
    return group


def _manual_check_flags(now: datetime) -> FlagGroup:
    minimum: int = settings.DASHBOARD_MANUAL_CHECKS_MIN
    cap: int = settings.PORTAL_MANUAL_CHECKS_PER_DAY
    group = FlagGroup(
        "manual_checks",
        "Many manual checks",
        f"At least {minimum} manual caller check{'s' if minimum != 1 else ''} by one agent in "
        f"the last 24 hours (the most allowed is {cap}). A manual check is the agent's own word.",
    )
    since = now - timedelta(hours=24)
    counts: Counter[str] = Counter()
    names: dict[str, str] = {}
    latest: dict[str, datetime] = {}
    rows = (
        PortalEvent.objects.filter(
            kind=PortalEvent.Kind.VERIFICATION_MANUAL, created_at__gte=since, created_at__lte=now
        )
        .values_list("actor_oid", "actor_name", "created_at")
        .iterator(chunk_size=2000)
    )
    for oid, name, created_at in rows:
        counts[oid] += 1
        names[oid] = name or oid
        latest[oid] = max(latest.get(oid, created_at), created_at)
    for oid, count in counts.most_common():
        if count < minimum:
            break
        group.add(
            Flag(
                title=names[oid],
                detail=f"{count} manual checks in 24 hours",
                url=_history_url(
                    agent=oid,
                    kind=PortalEvent.Kind.VERIFICATION_MANUAL.value,
                    since=_local_day(since),
                ),
                at=latest[oid],
            )
        )
    return group


def dashboard_figures(*, now: datetime | None = None) -> DashboardFigures:
    """The charts and flags as of ``now`` (default: the current time)."""
    now = now or timezone.now()
    charts = _charts(now)
    off_hours, privileged = _request_flags(now)
    return DashboardFigures(
        now=now,
        flags=[
            _volume_flags(now),
            off_hours,
            _repeat_reset_flags(now),
            privileged,
            _outside_portal_flags(now),
            _manual_check_flags(now),
            _bulk_flags(now),
        ],
        **charts,
    )
