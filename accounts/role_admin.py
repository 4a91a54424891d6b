"""Who holds the directory roles that govern MFA: reading them from Graph, and what the portal
decides with them (selectors; every change goes through ``accounts.role_services``).

The roles of /roles/ (:data:`ROLES_SHOWN`): Privileged Authentication Administrator (PAA),
Authentication Administrator, Authentication Policy Administrator, Privileged Role Administrator
and Global Administrator. A holder holds a role in one of three ways: an **active** assignment
(``roleAssignments``), a PIM **eligibility** (``roleEligibilitySchedules``, with start and end), or
either of those given to a **role-assignable group**, whose members (expanded to people through
``transitiveMembers``) then hold it too.

Tiering follows Entra's (``PORTAL_MIRROR_ENTRA_TIERING``): :func:`agent_holds_paa` says whether a
portal user holds PAA *actively* in the tenant right now (directly, through a role-assignable
group, or as an activated PIM role); ``mfa.policy`` lets only such people act on privileged targets.

Whether a holder is also a portal agent comes from the app roles of the portal's own app
registration (:func:`read_portal_roles`), read with the holders into the same snapshot, so people
who never signed in count too; only when Graph cannot say does the page fall back to
``PortalProfile`` (the people who signed in), with a warning.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from django.conf import settings
from django.core.cache import cache
from django.utils import timezone

from accounts.models import PortalProfile, RoleChangeRequest, RoleHolderSnapshot
from accounts.roles import roles_from_claims
from graph import GraphClient
from graph import applications as graph_applications
from graph import groups as graph_groups
from graph import roles as graph_roles
from graph import users as graph_users
from graph.errors import GraphError
from graph.results import DirectoryObject, Group, parse_datetime

logger = logging.getLogger(__name__)

PAA = "Privileged Authentication Administrator"
AUTH_ADMIN = "Authentication Administrator"
AUTH_POLICY_ADMIN = "Authentication Policy Administrator"
PRA = "Privileged Role Administrator"
GLOBAL_ADMIN = "Global Administrator"
ROLES_SHOWN: tuple[str, ...] = (PAA, AUTH_ADMIN, AUTH_POLICY_ADMIN, PRA, GLOBAL_ADMIN)
# Roles whose last active holder must never go (someone must always be able to reset an
# administrator's MFA, and someone must always be able to administer the tenant).
ROLES_NEVER_EMPTY: tuple[str, ...] = (GLOBAL_ADMIN, PAA)
# Entra's audit activities for a role given to someone, and taken away.
ADD_ACTIVITIES: tuple[str, ...] = (
    "Add member to role",
    "Add member to role in PIM completed (permanent)",
    "Add member to role in PIM completed (timebound)",
    "Add eligible member to role in PIM completed (permanent)",
    "Add eligible member to role in PIM completed (timebound)",
)
REMOVE_ACTIVITIES: tuple[str, ...] = (
    "Remove member from role",
    "Remove member from role in PIM completed (permanent)",
    "Remove member from role in PIM completed (timebound)",
    "Remove eligible member from role in PIM completed (permanent)",
    "Remove eligible member from role in PIM completed (timebound)",
)
# PIM request statuses after which the requested schedule is (or is about to be) in force.
_GRANTED_STATUSES = frozenset({"provisioned", "granted", "pendingprovisioning", "schedulecreated"})
_REMOVING_ACTIONS = frozenset({"adminremove", "selfdeactivate"})
_DEFINITION_CACHE_SECONDS = 24 * 3600
_PAA_CACHE_VERSION = 1

How = Literal["active", "eligible"]


def role_template(role_name: str) -> str:
    """The template id of a role of :data:`ROLES_SHOWN`; KeyError for any other name."""
    if role_name not in ROLES_SHOWN:
        raise KeyError(role_name)
    return graph_roles.ROLE_TEMPLATES[role_name]


def role_is_read_only(role_name: str) -> bool:
    """Shown but never changed through the portal (``ROLES_READ_ONLY``, default Global Admin)."""
    return role_name in settings.ROLES_READ_ONLY


def managed_roles() -> list[str]:
    """The roles an Admin may change here, in display order."""
    return [r for r in ROLES_SHOWN if not role_is_read_only(r)]


def role_needs_approval(role_name: str) -> bool:
    """Whether granting ``role_name`` waits for a second Admin (``ROLES_REQUIRING_APPROVAL``)."""
    return role_name in settings.ROLES_REQUIRING_APPROVAL


def role_definition_id(client: GraphClient, role_name: str) -> str:
    """The tenant's role definition id for a built-in role, looked up by template id (cached a
    day). Falls back to the template id, which is the definition id of built-in roles, when the
    tenant lists no definition for it."""
    template = role_template(role_name)
    key = f"accounts:role-definition:{template}"
    cached = cache.get(key)
    if isinstance(cached, str):
        return cached
    definition = graph_roles.get_role_definition_by_template(client, template)
    value = definition.id if definition is not None else template
    cache.set(key, value, timeout=_DEFINITION_CACHE_SECONDS)
    return value


# --- holders -------------------------------------------------------------------------------------


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
    the page falls back to the people who signed in)."""

    taken_at: datetime
    roles: Mapping[str, tuple[Holding, ...]] = field(default_factory=dict)
    portal_roles: Mapping[str, tuple[str, ...]] | None = None
    portal_roles_error: str = ""

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
        return cls(taken_at=taken, roles=roles, portal_roles=portal, portal_roles_error=error)


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
    and end of the time-bound ones), then PIM eligibilities, group members expanded. Raises
    GraphError as it comes."""
    memo = {} if memo is None else memo
    definition = role_definition_id(client, role_name)
    holdings: list[Holding] = []
    assignments = graph_roles.list_role_assignments(client, role_definition_id=definition)
    bounds = active_schedule_bounds(client, definition) if assignments else {}
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
    for schedule in graph_roles.list_role_eligibility_schedules(
        client, role_definition_id=definition
    ):
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
    (``client.config.client_id``), by person id (lower case), read from Graph now: the app
    roles' ids and values, then every assignment (``appRoleAssignedTo``); an assignment to a group
    counts for each of its direct members (as in Entra, nested groups do not pass app roles on).
    App role values map to portal roles
    through ``settings.PORTAL_ROLE_CLAIMS``; other values and service principals are ignored.
    Two reads plus one per assigned group. Raises GraphError as it comes."""
    app_id = client.config.client_id
    values = {
        role.id: role.value
        for role in graph_applications.list_app_roles(client, app_id)
        if role.value and role.is_enabled
    }
    held: dict[str, set[str]] = {}
    for assignment in graph_applications.list_app_role_assigned_to(client, app_id):
        value = values.get(assignment.app_role_id)
        if value is None:
            continue  # default access, a disabled role, or a role of another resource
        if assignment.is_user:
            people = [assignment.principal_id]
        elif assignment.is_group:
            people = [
                m.id.lower()
                for m in graph_groups.list_members(client, assignment.principal_id)
                if m.is_user
            ]
        else:
            continue
        for person in people:
            held.setdefault(person, set()).add(value)
    found = {oid: tuple(roles_from_claims(vals)) for oid, vals in held.items()}
    return {oid: roles for oid, roles in found.items() if roles}


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
    return RoleHolders(
        taken_at=timezone.now(), roles=roles, portal_roles=portal, portal_roles_error=error
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


# --- what the page shows -------------------------------------------------------------------------


@dataclass(frozen=True)
class HolderRow:
    """One line of /roles/: a principal's holding, with who is behind it and what to know."""

    holding: Holding
    portal_roles: Mapping[str, list[str]]  # person id -> portal roles (agents of the portal)
    expiring: bool
    outside_portal: bool

    @property
    def is_portal_agent(self) -> bool:
        return any(self.portal_roles.values())


@dataclass(frozen=True)
class RoleWarning:
    """Something an Admin should look at. ``code``: portal_roles_unknown, paa_ceiling,
    ga_too_many, ga_too_few, expiring, outside_portal."""

    code: str
    text: str
    role_name: str = ""


def portal_roles_by_oid(ids: Iterable[str]) -> dict[str, list[str]]:
    """Portal roles (Agent, Lead, Admin) of the people with these Entra ids who ever signed in
    (as of their last sign-in): the fallback when Graph could not say (:class:`RoleHolders`)."""
    wanted = {i.lower() for i in ids}
    found: dict[str, list[str]] = {}
    for oid, roles in PortalProfile.objects.filter(oid__in=wanted).values_list("oid", "roles"):
        found[oid.lower()] = sorted(str(r) for r in (roles or []) if r)
    return found


def drift_events(holders: RoleHolders, *, now: datetime | None = None) -> list[dict[str, Any]]:
    """Entra "Add member to role" (and PIM add) events from the audit cache, marked outside the
    portal and linked to no portal role change, naming a current holder of a shown role.

    Each item: ``role_name``, ``principal_id``, ``entra_id``, ``activity``, ``activity_at``,
    ``initiated_by``. Looks back ``ROLES_DRIFT_LOOKBACK_DAYS``.
    """
    from audit.models import DirectoryAuditRecord

    now = now or timezone.now()
    since = now - timedelta(days=settings.ROLES_DRIFT_LOOKBACK_DAYS)
    linked = {
        entra_id
        for ids in RoleChangeRequest.objects.exclude(entra_event_ids=[]).values_list(
            "entra_event_ids", flat=True
        )
        for entra_id in ids or ()
    }
    holders_by_role = {
        role_template(name): (name, {h.principal_id.lower() for h in holders.of(name)})
        for name in ROLES_SHOWN
    }
    found: list[dict[str, Any]] = []
    records = DirectoryAuditRecord.objects.filter(
        outside_portal=True, activity__in=ADD_ACTIVITIES, activity_at__gte=since
    ).order_by("-activity_at")
    portal_adds = list(
        RoleChangeRequest.objects.filter(
            change="add", status="succeeded", finished_at__gte=since
        ).values_list("principal_id", "role_template_id", "started_at", "finished_at")
    )
    for record in records:
        if record.entra_id in linked or _made_by_portal(record, portal_adds):
            continue
        ids = {str(i).lower() for i in record.target_ids or ()}
        for template, (name, principals) in holders_by_role.items():
            if template not in ids:
                continue
            for principal in principals & ids:
                found.append(
                    {
                        "role_name": name,
                        "principal_id": principal,
                        "entra_id": record.entra_id,
                        "activity": record.activity,
                        "activity_at": record.activity_at,
                        "initiated_by": record.initiated_by_name or record.initiated_by_id,
                    }
                )
    return found


def _made_by_portal(record: Any, portal_adds: Sequence[tuple[Any, ...]]) -> bool:
    """Whether a portal role change explains ``record`` though it is not linked yet (the audit
    sync may store Entra's event before ``role_changes_correlate`` links it): the portal's app
    initiated it, for the same principal and role, while that change ran (plus ten minutes)."""
    if (record.initiated_by_app_id or "").lower() != settings.ENTRA_CLIENT_ID.lower():
        return False
    ids = {str(i).lower() for i in record.target_ids or ()}
    slack = timedelta(minutes=10)
    return any(
        principal.lower() in ids
        and template.lower() in ids
        and started is not None
        and finished is not None
        and started - timedelta(seconds=5) <= record.activity_at <= finished + slack
        for principal, template, started, finished in portal_adds
    )


def role_rows(
    holders: RoleHolders, *, now: datetime | None = None
) -> tuple[dict[str, list[HolderRow]], list[RoleWarning]]:
    """The rows of each role and every warning (DESIGN and issue 5):

    * more people hold PAA (in any way) than ``ROLES_PAA_CEILING``;
    * Global Administrators (people, in any way) above ``ROLES_GLOBAL_ADMIN_MAX`` or below
      ``ROLES_GLOBAL_ADMIN_MIN``;
    * an eligibility or a time-bound active assignment that ends within
      ``ROLES_EXPIRY_WARNING_DAYS``;
    * a holder added outside the portal (:func:`drift_events`).
    """
    now = now or timezone.now()
    horizon = now + timedelta(days=settings.ROLES_EXPIRY_WARNING_DAYS)
    everyone = {p.id for name in ROLES_SHOWN for h in holders.of(name) for p in h.people()}
    if holders.portal_roles is not None:
        portal = {oid: list(roles) for oid, roles in holders.portal_roles.items()}
    else:
        portal = portal_roles_by_oid(everyone)
    drift = drift_events(holders, now=now)
    drifted = {(d["role_name"], d["principal_id"]) for d in drift}
    rows: dict[str, list[HolderRow]] = {}
    warnings: list[RoleWarning] = []
    for name in ROLES_SHOWN:
        rows[name] = []
        for holding in holders.of(name):
            expiring = holding.end is not None and holding.end <= horizon
            outside = (name, holding.principal_id.lower()) in drifted
            rows[name].append(
                HolderRow(
                    holding=holding,
                    portal_roles={p.id: portal.get(p.id.lower(), []) for p in holding.people()},
                    expiring=expiring,
                    outside_portal=outside,
                )
            )
            if expiring:
                assert holding.end is not None
                what = "active assignment of" if holding.how == "active" else "eligibility for"
                warnings.append(
                    RoleWarning(
                        "expiring",
                        f"{holding.display_name}'s {what} {name} ends on "
                        f"{timezone.localtime(holding.end):%d %b %Y %H:%M}, within "
                        f"{settings.ROLES_EXPIRY_WARNING_DAYS} days.",
                        name,
                    )
                )
    paa_count = len(all_people(holders.of(PAA)))
    if paa_count > settings.ROLES_PAA_CEILING:
        warnings.insert(
            0,
            RoleWarning(
                "paa_ceiling",
                f"{paa_count} people hold {PAA}; the ceiling is {settings.ROLES_PAA_CEILING}. "
                "Each of them can reset any administrator's MFA, Global Administrators included.",
                PAA,
            ),
        )
    ga_count = len(all_people(holders.of(GLOBAL_ADMIN)))
    if ga_count > settings.ROLES_GLOBAL_ADMIN_MAX:
        warnings.insert(
            0,
            RoleWarning(
                "ga_too_many",
                f"{ga_count} people are Global Administrators: keep it to "
                f"{settings.ROLES_GLOBAL_ADMIN_MAX} or fewer.",
                GLOBAL_ADMIN,
            ),
        )
    elif ga_count < settings.ROLES_GLOBAL_ADMIN_MIN:
        warnings.insert(
            0,
            RoleWarning(
                "ga_too_few",
                f"Only {ga_count} {'person is a' if ga_count == 1 else 'people are'} Global "
                f"Administrator: keep at least {settings.ROLES_GLOBAL_ADMIN_MIN} (one for "
                "emergencies).",
                GLOBAL_ADMIN,
            ),
        )
    for item in drift:
        found: Holding | None = next(
            (
                h
                for h in holders.of(item["role_name"])
                if h.principal_id.lower() == item["principal_id"]
            ),
            None,
        )
        who = found.display_name if found else item["principal_id"]
        warnings.append(
            RoleWarning(
                "outside_portal",
                f"{who} was added to {item['role_name']} outside the portal by "
                f"{item['initiated_by'] or 'an unknown initiator'} on "
                f"{timezone.localtime(item['activity_at']):%d %b %Y %H:%M} "
                f"(Entra: {item['activity']}).",
                item["role_name"],
            )
        )
    if holders.portal_roles is None:
        warnings.append(
            RoleWarning(
                "portal_roles_unknown",
                "Portal roles could not be read from Entra "
                f"({holders.portal_roles_error or 'no reason given'}): the Portal column shows "
                "only people who have signed in to the portal, with the roles of their last "
                "sign-in. Grant the portal Application.Read.All to see everyone.",
            )
        )
    return rows, warnings


# --- the guards ----------------------------------------------------------------------------------


def removal_guard_message(
    holdings: Sequence[Holding], *, removing: Holding, also_removing: Sequence[Holding] = ()
) -> str | None:
    """Why removing ``removing`` (with the removals ``also_removing`` already under way) is
    refused, or None when it may go ahead.

    * the last Global Administrator can never be removed;
    * a removal that leaves no active PAA holder is refused: someone must always be able to
      reset an administrator's MFA.
    Only active holdings count (an eligibility must be activated before it can be used).
    """
    role_name = removing.role_name
    if role_name not in ROLES_NEVER_EMPTY:
        return None

    def key(h: Holding) -> tuple[str, str, str]:
        return (h.principal_id.lower(), h.how, h.assignment_id or h.schedule_id)

    gone = {key(removing)} | {key(h) for h in also_removing}
    remaining = active_people(h for h in holdings if key(h) not in gone)
    if remaining:
        return None
    if role_name == GLOBAL_ADMIN:
        return (
            f"{removing.display_name} cannot be removed: no active Global Administrator would "
            "remain. The last Global Administrator can never be removed."
        )
    return (
        f"{removing.display_name} cannot be removed: no one would hold {PAA} actively any more, "
        "and someone must always be able to reset an administrator's MFA. Add another holder "
        "first."
    )


# --- tiering: does this portal user hold PAA in the tenant? --------------------------------------


def _oid_of(user: Any) -> str:
    profile = getattr(user, "portal_profile", None)
    return str(getattr(profile, "oid", "") or getattr(user, "username", "") or "")


def _paa_key(oid: str) -> str:
    return f"accounts:holds-paa:v{_PAA_CACHE_VERSION}:{oid.lower()}"


def principal_holds_active(client: GraphClient, principal_id: str, role_name: str) -> bool:
    """Whether ``principal_id`` (a user) holds ``role_name`` actively now: a direct assignment,
    an assignment to a role-assignable group it belongs to, or an activated role (a directoryRole
    in its transitiveMemberOf). Raises GraphError as it comes."""
    definition = role_definition_id(client, role_name)
    template = role_template(role_name)
    direct = graph_roles.list_role_assignments(
        client, role_definition_id=definition, principal_id=principal_id
    )
    if any(a.directory_scope_id == "/" for a in direct):
        return True
    for membership in graph_users.list_transitive_member_of(client, principal_id):
        if membership.is_directory_role and membership.role_template_id == template:
            return True
        if isinstance(membership, Group) and membership.is_assignable_to_role:
            through = graph_roles.list_role_assignments(
                client, role_definition_id=definition, principal_id=membership.id
            )
            if any(a.directory_scope_id == "/" for a in through):
                return True
    return False


def agent_holds_paa(user: Any, *, use_cache: bool = True) -> bool:
    """Whether the portal user ``user`` holds Privileged Authentication Administrator actively
    in the tenant now (see :func:`principal_holds_active`).

    Checked through Graph and cached in the shared cache for ``PORTAL_PAA_CHECK_CACHE_SECONDS``;
    ``use_cache=False`` reads afresh. Fails closed: a Graph failure answers False (logged, not
    cached), so an outage never widens what an agent may do. Anonymous users: False.
    """
    if user is None or not getattr(user, "is_authenticated", False):
        return False
    oid = _oid_of(user)
    if not oid:
        return False
    key = _paa_key(oid)
    if use_cache:
        cached = cache.get(key)
        if isinstance(cached, bool):
            return cached
    from portal.graph_client import get_graph_client

    try:
        held = principal_holds_active(get_graph_client(), oid, PAA)
    except GraphError as exc:
        logger.warning("could not check whether %s holds PAA: %s", oid, exc)
        return False
    cache.set(key, held, timeout=settings.PORTAL_PAA_CHECK_CACHE_SECONDS)
    return held


def paa_cache_forget(oids: Iterable[str]) -> None:
    """Drop the cached PAA answer of these people (after a change of who holds it)."""
    cache.delete_many([_paa_key(oid) for oid in oids])


def tiering_refusal(agent: Any, *, privileged: bool) -> str | None:
    """Why ``agent`` may not act on this target under the mirrored Entra tiering, or None.

    Only privileged targets are restricted, and only while ``PORTAL_MIRROR_ENTRA_TIERING`` is on.
    """
    if not privileged or not settings.PORTAL_MIRROR_ENTRA_TIERING:
        return None
    if agent_holds_paa(agent):
        return None
    return (
        "This person is privileged. Like Entra itself, the portal lets only people who hold "
        f"{PAA} in the tenant act on privileged people, and you do not hold it now."
    )


def approval_refusal(requester: Any, *, privileged: bool) -> str | None:
    """Why a request by ``requester`` on a privileged target can no longer be approved (the
    requester no longer holds PAA), or None."""
    if not privileged or not settings.PORTAL_MIRROR_ENTRA_TIERING:
        return None
    if agent_holds_paa(requester):
        return None
    return (
        f"The requester no longer holds {PAA} in the tenant, so under Entra's tiering they may "
        "not act on this privileged person: this request can no longer be approved. Reject it, "
        "or ask someone who holds the role to request it again."
    )
