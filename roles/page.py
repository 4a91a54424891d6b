"""What /roles/ shows: a row per holding, with who is behind it, and the warnings an Admin
should read (selectors over a :class:`roles.holders.RoleHolders` snapshot)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone

from accounts.models import PortalProfile
from roles.catalog import GLOBAL_ADMIN, PAA, ROLES_SHOWN
from roles.drift import drift_events
from roles.holders import Holding, RoleHolders, all_people


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
    ga_too_many, ga_too_few, expiring, outside_portal, no_protected_group."""

    code: str
    text: str
    role_name: str = ""


def configuration_warnings() -> list[RoleWarning]:
    """Warnings about the portal's own configuration, shown whether or not holders were read:
    no protected group (``PORTAL_PROTECTED_GROUP_IDS``; the system check portal.W001 says the
    same at start)."""
    if settings.PORTAL_PROTECTED_GROUP_IDS:
        return []
    return [
        RoleWarning(
            "no_protected_group",
            "No protected group is set (PORTAL_PROTECTED_GROUP_IDS): executives and other "
            "sensitive people without a directory role are standard targets, which any agent "
            "may reset without approval.",
        )
    ]


def portal_roles_by_oid(ids: Iterable[str]) -> dict[str, list[str]]:
    """Portal roles (Agent, Lead, Admin) of the people with these Entra ids who ever signed in
    (as of their last sign-in): the fallback when Graph could not say (:class:`RoleHolders`)."""
    wanted = {i.lower() for i in ids}
    found: dict[str, list[str]] = {}
    for oid, roles in PortalProfile.objects.filter(oid__in=wanted).values_list("oid", "roles"):
        found[oid.lower()] = sorted(str(r) for r in (roles or []) if r)
    return found


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
