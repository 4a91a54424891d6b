"""Who holds the directory roles of :data:`roles.catalog.ROLES_SHOWN`, read from Graph
(selectors; every change goes through ``roles.services``).

A holder holds a role in one of three ways: an **active** assignment (``roleAssignments``), a PIM
**eligibility** (``roleEligibilitySchedules``, with start and end), or either of those given to a
**role-assignable group**, whose members (expanded to people through ``transitiveMembers``) then
hold it too.

Eligibilities and time-bound active assignments are PIM's, which needs Microsoft Entra ID P2: in
a tenant without it (``accounts.capabilities``) nothing of PIM is read, every holding is active
and permanent, and the snapshot says why (``RoleHolders.pim_unavailable``).

Whether a holder is also a portal agent comes from the app roles of the portal's own app
registration (:func:`read_portal_roles`), read with the holders into the same snapshot, so people
who never signed in count too; only when Graph cannot say does the page fall back to
``PortalProfile`` (the people who signed in), with a warning.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from django.conf import settings
from django.core.cache import cache
from django.utils import timezone
from redis.exceptions import RedisError

from accounts.app_roles import portal_role_grants
from accounts.capabilities import pim_read, tenant_capabilities
from graph import GraphClient
from graph import groups as graph_groups
from graph import roles as graph_roles
from graph.errors import GraphError
from graph.results import DirectoryObject, parse_datetime
from roles.catalog import ROLES_SHOWN, role_definition_id
from roles.models import RoleHolderSnapshot

logger = logging.getLogger(__name__)
# PIM request statuses after which the requested schedule is (or is about to be) in force.
_GRANTED_STATUSES = frozenset({"provisioned", "granted", "pendingprovisioning", "schedulecreated"})
_REMOVING_ACTIONS = frozenset({"adminremove", "selfdeactivate"})
How = Literal["active", "eligible"]


@dataclass(frozen=True)
class Member:
    """A person behind a role-assignable group."""

    id: str
    display_name: str
    upn: str


@dataclass(frozen=True)
class Holding:
    """One principal holding one role one way. ``assignment_id`` names an active assignment,
    ``schedule_id`` an eligibility; ``start``/``end`` bound an eligibility or a time-bound
    active assignment (``end`` None: open-ended). ``members`` are the people of a group
    principal (empty for a user)."""

    role_name: str
    principal_id: str
    principal_type: str  # "user", "group" or "servicePrincipal"
    display_name: str
    upn: str
    how: How
    assignment_id: str = ""
    schedule_id: str = ""
    start: datetime | None = None
    end: datetime | None = None
    members: tuple[Member, ...] = ()

    @property
    def is_group(self) -> bool:
        return self.principal_type == "group"

    @property
    def is_time_bound_active(self) -> bool:
        """An active assignment with an end: made (and removed) through PIM's
        roleAssignmentScheduleRequests rather than the plain roleAssignments API."""
        return self.how == "active" and self.end is not None

    def people(self) -> list[Member]:
        """The people who hold the role through this holding (the user, or the group's members)."""
        if self.principal_type == "user":
            return [Member(self.principal_id, self.display_name, self.upn)]
        return list(self.members)


@dataclass(frozen=True)
class RoleHolders:
    """Every holding of every role of :data:`ROLES_SHOWN`, as read at ``taken_at``.

    ``portal_roles``: the portal roles (Agent, Lead, Admin) of everyone who holds one of the
    portal's app roles, directly or through a group, by person id (lower case), read from Graph
    with the holders; None when Graph could not say (then ``portal_roles_error`` says why, and
    the page falls back to the people who signed in). ``pim_unavailable``: empty when PIM was
    read; else why it was not (the tenant's licence and Graph's answer), and no holding is
    eligible or time-bound."""

    taken_at: datetime
    roles: Mapping[str, tuple[Holding, ...]] = field(default_factory=dict)
    portal_roles: Mapping[str, tuple[str, ...]] | None = None
    portal_roles_error: str = ""
    pim_unavailable: str = ""

    def of(self, role_name: str) -> tuple[Holding, ...]:
        return tuple(self.roles.get(role_name, ()))

    def as_json(self) -> dict[str, Any]:
        """JSON for ``RoleHolderSnapshot.holders`` (datetimes as ISO strings)."""

        def encode(holding: Holding) -> dict[str, Any]:
            data = asdict(holding)
            data["start"] = holding.start.isoformat() if holding.start else None
            data["end"] = holding.end.isoformat() if holding.end else None
            return data

        return {
            "taken_at": self.taken_at.isoformat(),
            "roles": {name: [encode(h) for h in hs] for name, hs in self.roles.items()},
            "portal_roles": None
            if self.portal_roles is None
            else {oid: list(roles) for oid, roles in self.portal_roles.items()},
            "portal_roles_error": self.portal_roles_error,
            "pim_unavailable": self.pim_unavailable,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RoleHolders:
        roles: dict[str, tuple[Holding, ...]] = {}
        for name, items in (data.get("roles") or {}).items():
            roles[name] = tuple(
                Holding(
                    **{
                        **item,
                        "start": parse_datetime(item.get("start")),
                        "end": parse_datetime(item.get("end")),
                        "members": tuple(Member(**m) for m in item.get("members") or ()),
                    }
                )
                for item in items
            )
        taken = parse_datetime(data.get("taken_at")) or timezone.now()
        # Snapshots taken before portal roles were read from Graph have no "portal_roles": the
        # page then falls back to the people who signed in, as it does after a failed read.
        raw = data.get("portal_roles")
        portal = (
            {str(k): tuple(str(r) for r in v) for k, v in raw.items()}
            if isinstance(raw, Mapping)
            else None
        )
        error = str(data.get("portal_roles_error") or "")
        if portal is None and not error:
            error = "this read of the holders predates reading portal roles from Entra"
        return cls(
            taken_at=taken,
            roles=roles,
            portal_roles=portal,
            portal_roles_error=error,
            pim_unavailable=str(data.get("pim_unavailable") or ""),
        )


def _principal_fields(principal: DirectoryObject | None, principal_id: str) -> dict[str, str]:
    if principal is None:
        return {"principal_type": "user", "display_name": principal_id, "upn": ""}
    kind = principal.odata_type.removeprefix("microsoft.graph.")
    return {
        "principal_type": kind,
        "display_name": principal.display_name or principal_id,
        "upn": principal.user_principal_name or "",
    }


def _group_members(
    client: GraphClient, group_id: str, memo: dict[str, tuple[Member, ...]]
) -> tuple[Member, ...]:
    if group_id not in memo:
        memo[group_id] = tuple(
            Member(m.id, m.display_name or m.id, m.user_principal_name or "")
            for m in graph_groups.list_transitive_members(client, group_id)
            if m.is_user
        )
    return memo[group_id]


def active_schedule_bounds(
    client: GraphClient, role_definition: str, *, now: datetime | None = None
) -> dict[str, tuple[datetime | None, datetime]]:
    """Start and end of the time-bound active assignments of a role, by principal id (lower
    case), tenant-wide scope only: what the newest PIM request of each principal
    (``roleAssignmentScheduleRequests``) asked for, when it was granted and ends in the future.

    A principal whose newest request is a removal, or whose end has passed, is left out: an
    active assignment Graph still lists for them was made otherwise and is permanent. (Graph's
    ``roleAssignmentSchedules`` says the same directly; the Entra emulator serves only the
    requests, which real Graph serves too.) Raises GraphError as it comes.
    """
    now = now or timezone.now()
    oldest = datetime.min.replace(tzinfo=UTC)
    requests = sorted(
        graph_roles.list_role_assignment_schedule_requests(
            client, role_definition_id=role_definition
        ),
        key=lambda r: r.created or oldest,
    )
    # Oldest first, so the newest request of each principal is the one kept.
    newest = {r.principal_id.lower(): r for r in requests if r.directory_scope_id == "/"}
    bounds: dict[str, tuple[datetime | None, datetime]] = {}
    for key, request in newest.items():
        if request.action.lower() in _REMOVING_ACTIONS:
            continue
        if request.status.lower() not in _GRANTED_STATUSES:
            continue
        if request.end is not None and request.end > now:
            bounds[key] = (request.start, request.end)
    return bounds


def read_role(
    client: GraphClient, role_name: str, *, memo: dict[str, tuple[Member, ...]] | None = None
) -> tuple[Holding, ...]:
    """Every holding of ``role_name`` read from Graph now: active assignments (with the start
    and end of the time-bound ones), then PIM eligibilities, group members expanded. In a tenant
    without PIM (``accounts.capabilities``) only the active assignments, all read as permanent.
    Raises GraphError as it comes."""
    memo = {} if memo is None else memo
    definition = role_definition_id(client, role_name)
    holdings: list[Holding] = []
    assignments = graph_roles.list_role_assignments(client, role_definition_id=definition)
    bounds = (
        pim_read(client, lambda: active_schedule_bounds(client, definition)) or {}
        if assignments
        else {}
    )
    for assignment in assignments:
        if assignment.directory_scope_id != "/":
            continue  # scoped to an administrative unit: not a tenant-wide holder
        fields = _principal_fields(assignment.principal, assignment.principal_id)
        start, end = bounds.get(assignment.principal_id.lower(), (None, None))
        holdings.append(
            Holding(
                role_name=role_name,
                principal_id=assignment.principal_id,
                how="active",
                assignment_id=assignment.id,
                start=start,
                end=end,
                members=_group_members(client, assignment.principal_id, memo)
                if fields["principal_type"] == "group"
                else (),
                principal_type=fields["principal_type"],
                display_name=fields["display_name"],
                upn=fields["upn"],
            )
        )
    schedules = pim_read(
        client,
        lambda: graph_roles.list_role_eligibility_schedules(client, role_definition_id=definition),
    )
    for schedule in schedules or ():
        if schedule.directory_scope_id != "/":
            continue
        fields = _principal_fields(schedule.principal, schedule.principal_id)
        holdings.append(
            Holding(
                role_name=role_name,
                principal_id=schedule.principal_id,
                how="eligible",
                schedule_id=schedule.id,
                start=schedule.start,
                end=schedule.end,
                members=_group_members(client, schedule.principal_id, memo)
                if fields["principal_type"] == "group"
                else (),
                principal_type=fields["principal_type"],
                display_name=fields["display_name"],
                upn=fields["upn"],
            )
        )
    return tuple(sorted(holdings, key=lambda h: (h.how, h.display_name.lower())))


def read_portal_roles(client: GraphClient) -> dict[str, tuple[str, ...]]:
    """The portal roles of everyone who holds an app role of the portal's own app registration
    (``client.config.client_id``), by person id (lower case), read from Graph now
    (``accounts.app_roles.portal_role_grants``); an assignment to a group counts for each of its
    direct members (as in Entra, nested groups do not pass app roles on). Two reads plus one per
    assigned group. Raises GraphError as it comes."""
    held: dict[str, set[str]] = {}
    for grant in portal_role_grants(client):
        people = (
            [
                m.id.lower()
                for m in graph_groups.list_members(client, grant.principal_id)
                if m.is_user
            ]
            if grant.is_group
            else [grant.principal_id]
        )
        for person in people:
            held.setdefault(person, set()).update(grant.roles)
    return {oid: tuple(sorted(roles)) for oid, roles in held.items()}


_PORTAL_ROLES_KEY = "roles:portal-roles:v1"


def read_portal_roles_shared(client: GraphClient) -> dict[str, tuple[str, ...]]:
    """:func:`read_portal_roles`, shared by every process for ``PORTAL_TARGET_CACHE_SECONDS``
    (the Django cache, Redis): the same map serves every person page drawn from a cached or a
    new target profile, instead of two or more Graph reads per person opened. It is as old as
    the target profiles it feeds may be; a decision that must be fresh (the action form's tier,
    a runner's check) calls :func:`read_portal_roles`. Redis down: read from Graph. Raises
    GraphError as it comes."""
    try:
        cached = cache.get(_PORTAL_ROLES_KEY)
    except (RedisError, OSError):
        cached = None
    if isinstance(cached, dict):
        return {str(oid): tuple(roles) for oid, roles in cached.items()}
    held = read_portal_roles(client)
    try:
        cache.set(
            _PORTAL_ROLES_KEY,
            {oid: list(roles) for oid, roles in held.items()},
            timeout=settings.PORTAL_TARGET_CACHE_SECONDS,
        )
    except (RedisError, OSError):
        pass  # not shared: read again next time
    return held


def read_role_holders(client: GraphClient) -> RoleHolders:
    """Every holding of every role of :data:`ROLES_SHOWN` (about a dozen Graph reads plus one
    per holding group), and the portal roles of everyone (:func:`read_portal_roles`). Raises
    GraphError as it comes for the directory roles; a failure to read the portal roles is kept
    in ``portal_roles_error`` instead (the page then falls back to who signed in)."""
    memo: dict[str, tuple[Member, ...]] = {}
    roles = {name: read_role(client, name, memo=memo) for name in ROLES_SHOWN}
    try:
        portal: dict[str, tuple[str, ...]] | None = read_portal_roles(client)
        error = ""
    except GraphError as exc:
        # Typically a tenant that has not granted Application.Read.All yet: the holders are
        # still worth showing.
        logger.warning("could not read the portal's app role holders: %s", exc.code)
        portal, error = None, f"{exc.code}: {exc.message}"
    capabilities = tenant_capabilities(client)
    return RoleHolders(
        taken_at=timezone.now(),
        roles=roles,
        portal_roles=portal,
        portal_roles_error=error,
        pim_unavailable="" if capabilities.pim else capabilities.pim_unavailable_reason,
    )


def active_people(holdings: Iterable[Holding]) -> set[str]:
    """Ids of the people who hold a role actively (directly or through a group)."""
    return {p.id for h in holdings if h.how == "active" for p in h.people()}


def all_people(holdings: Iterable[Holding]) -> set[str]:
    """Ids of the people who hold a role in any way (active or eligible, direct or group)."""
    return {p.id for h in holdings for p in h.people()}


def latest_snapshot() -> RoleHolderSnapshot | None:
    """The newest completed read of the holders, or None before the first one."""
    return RoleHolderSnapshot.objects.filter(state=RoleHolderSnapshot.State.DONE).first()


def refresh_in_progress() -> RoleHolderSnapshot | None:
    """A read queued or running, started in the last five minutes (older ones died)."""
    since = timezone.now() - timedelta(minutes=5)
    return (
        RoleHolderSnapshot.objects.filter(
            state__in=(RoleHolderSnapshot.State.PENDING, RoleHolderSnapshot.State.RUNNING),
            created_at__gte=since,
        )
        .order_by("-created_at")
        .first()
    )


def find_holding(holdings: tuple[Holding, ...], *, principal_id: str, how: str) -> Holding | None:
    return next(
        (h for h in holdings if h.principal_id.lower() == principal_id.lower() and h.how == how),
        None,
    )
