"""The dry run of a bulk operation: who is asked for, who is included and who is refused (and
why), each person's tier and registered methods, the Graph calls the run needs and how long they
take at the budget's ceiling. Reads Graph only; ``bulk.services.plan`` stores the answer.

Calls: the people are read through ``$batch`` (20 a request, identity class), a group's members
through its transitive members; each candidate's tier through ``mfa.policy.target_profile``
(identity class, the portal's app role map read once); the methods through
``graph.reports.registration_details`` (reports class: one call per 999 people of the tenant,
never one per person). A tenant without Entra ID P1/P2 has no such report: the counts are then
unknown, and the dry run says so.
"""

from __future__ import annotations

import csv
import io
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from django.conf import settings

from bulk.errors import PlanRefused as PlanRefused  # re-exported: bulk.forms, bulk.views
from bulk.models import BulkAction, Refusal
from graph import GraphClient
from graph import groups as graph_groups
from graph import reports as graph_reports
from graph import users as graph_users
from graph.budget import REPORTS, BudgetRate, classify_path
from graph.errors import GraphError, GraphNotFound, GraphThrottled, GraphTransient
from graph.results import User
from mfa import policy
from mfa.models import Tier
from roles.holders import read_portal_roles

# When a tenant has no registration report: the methods a person is assumed to lose, for the
# estimate only (said so on the page).
ASSUMED_METHODS = 2
_GUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", re.I)
_CSV_COLUMNS = ("upn", "userprincipalname", "id", "objectid")
_SPLIT = re.compile(r"[\s,;]+")

# The Graph calls of one person's part, by kind, besides the methods it deletes: the execution
# check (the portal's app role map, the starter, the person's profile: about 6 identity reads)
# and the runner's own calls (mfa.runners).
_CHECK_IDENTITY_CALLS = 6
_PART_CALLS: Mapping[str, tuple[str, ...]] = {
    BulkAction.REVOKE_SESSIONS: (classify_path("/v1.0/users/x/revokeSignInSessions"),),
    # list, sign-in preferences (the default goes last), list again.
    BulkAction.REREGISTER: (
        classify_path("/v1.0/users/x/authentication/methods"),
        classify_path("/beta/users/x/authentication/signInPreferences"),
        classify_path("/v1.0/users/x/authentication/methods"),
    ),
}
_DELETE_CLASS = classify_path("/v1.0/users/x/authentication/phoneMethods/y")


@dataclass
class Person:
    """One asked-for person as the dry run found them."""

    asked: str
    target_id: str = ""
    upn: str = ""
    display_name: str = ""
    tier: str = ""
    tier_reasons: list[str] = field(default_factory=list)
    included: bool = False
    refusal: str = ""
    refusal_text: str = ""
    methods_count: int | None = None

    def refuse(self, code: Refusal, text: str) -> None:
        self.included, self.refusal, self.refusal_text = False, code.value, text


@dataclass
class DryRun:
    people: list[Person]
    summary: dict[str, Any]


# --- input ---------------------------------------------------------------------------------------


def split_pasted(text: str) -> list[str]:
    """UPNs or object ids, one per line (commas, semicolons and spaces also separate)."""
    return [p for p in _SPLIT.split(text or "") if p.strip()]


def parse_csv(data: bytes | str) -> list[str]:
    """The people of a CSV file: the column named upn, userPrincipalName, id or objectId (any
    case), else the first column (its first row is a header unless it looks like a UPN or an
    object id). Raises PlanRefused for a file that is not text."""
    if isinstance(data, bytes):
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise PlanRefused("The file is not a UTF-8 text (CSV) file.") from None
    else:
        text = data
    rows = [r for r in csv.reader(io.StringIO(text)) if any(c.strip() for c in r)]
    if not rows:
        return []
    header = [c.strip().lower() for c in rows[0]]
    column = next((header.index(n) for n in _CSV_COLUMNS if n in header), None)
    if column is None:
        first = rows[0][0].strip() if rows[0] else ""
        body = rows if ("@" in first or _GUID.match(first)) else rows[1:]
        column = 0
    else:
        body = rows[1:]
    return [r[column].strip() for r in body if len(r) > column and r[column].strip()]


# --- the dry run ---------------------------------------------------------------------------------


def group_members(client: GraphClient, group_id: str) -> list[str]:
    """The object ids of the users among the group's transitive members (nested groups are
    expanded by Graph; their own objects are not people). Raises PlanRefused for no such
    group."""
    try:
        members = graph_groups.list_transitive_members(client, group_id)
    except GraphNotFound:
        raise PlanRefused("There is no such group in the tenant.") from None
    return [m.id for m in members if m.odata_type == "microsoft.graph.user" and m.id]


def run(
    client: GraphClient,
    *,
    starter_oid: str,
    starter_holds_paa: bool,
    asked: Sequence[str],
) -> DryRun:
    """Decide every asked-for person (see the module docstring) and the operation's summary.
    ``asked``: UPNs or object ids, in order. Raises GraphThrottled / GraphTransient as they
    come (the page says try again); other Graph errors of one person make them ``not_found``
    with Graph's code."""
    people = [Person(asked=a.strip()) for a in asked]
    seen: set[str] = set()
    unique: list[Person] = []
    for person in people:
        key = person.asked.lower()
        if key in seen:
            person.refuse(Refusal.DUPLICATE, "Listed more than once: acted on once.")
            continue
        seen.add(key)
        unique.append(person)
    found = graph_users.get_users(client, [p.asked for p in unique]) if unique else {}
    by_id: set[str] = set()
    candidates: list[tuple[Person, User]] = []
    staff_ids = set()
    held = read_portal_roles(client)
    break_glass = {str(i).lower() for i in settings.PORTAL_BREAK_GLASS_IDS}
    for person in unique:
        answer = found.get(person.asked)
        if isinstance(answer, GraphThrottled | GraphTransient):
            raise answer
        if not isinstance(answer, User):
            code = answer.code if isinstance(answer, GraphError) else "NotFound"
            person.refuse(Refusal.NOT_FOUND, f"No such person in the tenant ({code}).")
            continue
        user = answer
        person.target_id, person.upn = user.id, user.user_principal_name
        person.display_name = user.display_name
        if user.id.lower() in by_id:
            person.refuse(Refusal.DUPLICATE, "The same person is listed twice: acted on once.")
            continue
        by_id.add(user.id.lower())
        if user.id.lower() == starter_oid.lower():
            person.refuse(Refusal.STARTER, "You cannot act on your own account in a bulk run.")
        elif user.is_guest:
            person.refuse(
                Refusal.GUEST,
                "A guest account: its methods and sessions belong to its home organisation.",
            )
        elif user.account_enabled is False:
            person.refuse(Refusal.DISABLED, "The account is disabled: nobody can sign in.")
        else:
            candidates.append((person, user))
            if user.id.lower() in break_glass or held.get(user.id.lower()):
                staff_ids.add(user.id.lower())
    for person, user in candidates:
        profile = policy.target_profile(client, user.id, portal_roles=held)
        person.tier = profile.tier
        person.tier_reasons = list(profile.reasons)
        decide(person, staff=user.id.lower() in staff_ids, starter_holds_paa=starter_holds_paa)
    methods, methods_note, reports_calls = read_methods(
        client, [p.target_id for p, _ in candidates]
    )
    for person, _ in candidates:
        person.methods_count = methods.get(person.target_id.lower()) if methods else None
    return DryRun(people=people, summary={"methods_note": methods_note, "reports": reports_calls})


def decide(person: Person, *, staff: bool, starter_holds_paa: bool) -> None:
    """Include a candidate, or refuse them as staff / break-glass or privileged without PAA."""
    privileged = person.tier == Tier.PRIVILEGED
    if staff:
        person.refuse(
            Refusal.STAFF_OR_BREAK_GLASS,
            "The portal's own staff or a break-glass account: included only if an Admin "
            "confirms this person.",
        )
    elif privileged and settings.PORTAL_MIRROR_ENTRA_TIERING and not starter_holds_paa:
        why = "; ".join(person.tier_reasons) or "privileged"
        person.refuse(
            Refusal.PRIVILEGED_WITHOUT_PAA,
            f"A privileged person ({why}): only a holder of Privileged Authentication "
            "Administrator may act on them.",
        )
    else:
        person.included, person.refusal, person.refusal_text = True, "", ""


def read_methods(client: GraphClient, ids: Sequence[str]) -> tuple[dict[str, int], str, int]:
    """(methods registered by lower-case id, a note, reports calls made) from the registration
    report. A tenant without P1/P2 or an app without the permission: ({}, why, calls)."""
    if not ids:
        return {}, "", 0
    counting = _Counting(client)
    try:
        rows = graph_reports.registration_details(cast(GraphClient, counting), ids)
    except (GraphThrottled, GraphTransient):
        raise
    except GraphError as exc:
        if graph_reports.is_licence_refusal(exc):
            note = (
                "Method counts unknown: the tenant has no Microsoft Entra ID P1 or P2, so Graph "
                "offers no registration report (the portal does not read each person's methods "
                "one call at a time)."
            )
        else:
            note = f"Method counts unknown: Graph refused the registration report ({exc.code})."
        return {}, note, counting.calls
    return {key: row.method_count for key, row in rows.items()}, "", counting.calls


class _Counting:
    """A GraphClient that counts the calls made through it (``call`` and ``get_page``)."""

    def __init__(self, client: GraphClient) -> None:
        self._client = client
        self.calls = 0

    def call(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        return self._client.call(*args, **kwargs)

    def get_page(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        return self._client.get_page(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


def estimate(
    people: Iterable[Person], actions: Sequence[str], *, rates: Mapping[str, BudgetRate]
) -> dict[str, Any]:
    """The Graph calls the run needs, per class, and the time at the budget's ceiling: the
    slowest class decides (its calls / its rate). A person whose methods are unknown counts
    ASSUMED_METHODS deletions."""
    calls: dict[str, int] = {}
    included = [p for p in people if p.included]
    unknown = 0
    for person in included:
        for action in actions:
            for klass in _PART_CALLS[action]:
                calls[klass] = calls.get(klass, 0) + 1
            calls["identity"] = calls.get("identity", 0) + _CHECK_IDENTITY_CALLS
            if action == BulkAction.REREGISTER:
                count = person.methods_count
                if count is None:
                    unknown += 1
                    count = ASSUMED_METHODS
                calls[_DELETE_CLASS] = calls.get(_DELETE_CLASS, 0) + count
    seconds = 0.0
    slowest = REPORTS
    for klass, n in calls.items():
        rate = rates.get(klass)
        if rate is None:
            continue
        need = n / rate.requests * rate.per_seconds
        if need > seconds:
            seconds, slowest = need, klass
    rate = rates.get(slowest)
    n = calls.get(slowest, 0)
    text = f"{len(included)} people, about {n:,} calls in the {slowest} class"
    if rate is not None and n:
        text += f", about {_duration(seconds)} at {rate.requests} per {rate.per_seconds:g} s"
    return {
        "calls": calls,
        "slowest_class": slowest,
        "estimate_seconds": round(seconds, 1),
        "estimate_text": text,
        "methods_assumed_for": unknown,
    }


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{max(1, math.ceil(seconds))} seconds"
    minutes = math.ceil(seconds / 60)
    if minutes < 120:
        return f"{minutes} minutes"
    return f"{minutes / 60:.1f} hours"


def counts(people: Iterable[Person]) -> dict[str, int]:
    """People by outcome: "included" and each refusal code."""
    found: dict[str, int] = {}
    for person in people:
        key = "included" if person.included else person.refusal
        found[key] = found.get(key, 0) + 1
    return found
