"""The authentication methods registration report: ``userRegistrationDetails``.

Graph calls served here (v1.0, throttling class "reports"):

- ``GET /reports/authenticationMethods/userRegistrationDetails``: one row per enabled user, with
  ``$filter`` on the documented properties, ``$orderby`` on ``userDisplayName`` /
  ``userPrincipalName``, ``$select``, ``$top`` and ``@odata.nextLink`` paging;
- ``GET /reports/authenticationMethods/userRegistrationDetails/{userId}``: one row.

What each behaviour is taken from (every page on learn.microsoft.com):

- list: https://learn.microsoft.com/graph/api/authenticationmethodsroot-list-userregistrationdetails
  ("This method doesn't work for disabled users"; ``$filter`` on isMfaCapable, isMfaRegistered,
  isSsprEnabled, isSsprRegistered, methodsRegistered, userDisplayName and userPrincipalName);
- get: https://learn.microsoft.com/graph/api/userregistrationdetails-get ("This method does not
  support the OData query parameters");
- the row: https://learn.microsoft.com/graph/api/resources/userregistrationdetails (properties,
  which of them "Supports $filter", and ``$orderby`` on the two names); the property set is
  the v1.0 metadata's (``/work/shared/graph/v1.0.csdl``): ``defaultMfaMethod`` is beta only;
- permissions: AuditLog.Read.All, delegated or application, "Higher privileged permissions: Not
  available" (both pages);
- licence: "A Microsoft Entra ID P1 or P2 license is required to access authentication methods
  usage and insights reports"
  (https://learn.microsoft.com/graph/api/resources/authenticationmethods-usage-insights-overview).

The docs are silent on: the refusal a free tenant gets (the emulator answers what public reports
show, see ``LICENCE_REFUSAL``); the default order (the emulator sorts by object id, so that a
client assuming name order is caught); the page size and ``$top`` (neither page documents
``$top``; the emulator takes 1..999 and pages 100 by default, as directory collections do);
``$select`` (undocumented here; the emulator applies it, strictly, from the metadata); how often
the report is refreshed (see "Freshness"); the answers to an unsupported filter or order (400,
the emulator's wording). ``id`` is not a documented filter property, so ``$filter=id eq ...``
is refused: a client that needs a few users' rows reads them by id or scans the report.

Freshness: the report is a snapshot, not the live state (graph/requirements.py says why the
portal reads the default method elsewhere). Every row carries ``lastUpdatedDateTime``, and the
documentation's sample gives all rows of one answer the same value, i.e. a tenant-wide refresh.
The emulator takes such a snapshot from the tenant's current methods, and keeps serving it until
it is older than the tenant's refresh interval (``set_report_refresh_seconds``; 0, the default,
means a new snapshot for every first page and a fresh row for every Get); pages after the first
(``$skiptoken``) continue the snapshot they started on. Docs silent on the real interval.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from werkzeug import Response

from entra_emulator.audit_api import format_timestamp
from entra_emulator.graph_core import (
    GraphContext,
    GraphHttpError,
    collection_response,
    graph_route,
    json_response,
)
from entra_emulator.methods_api import (
    MFA_METHOD_TYPES,
    ODATA_PREFIX,
    PHONE_TYPE,
    not_found,
    preferred_method_value,
)
from entra_emulator.tenant import Tenant

READ_PERMISSIONS = ("AuditLog.Read.All",)
REPORT_PATH = "/reports/authenticationMethods/userRegistrationDetails"
CONTEXT = "reports/authenticationMethods/userRegistrationDetails"

# "A Microsoft Entra ID P1 or P2 license is required" (usage and insights overview, above).
REPORT_LICENCES = frozenset({"p1", "p2"})
# Docs silent on the refusal. Public reports of this very call from tenants without P1/P2
# (microsoftgraph/microsoft-graph-docs-contrib issue 8777, "Get userRegistrationDetails -
# Authentication_RequestFromNonPremiumTenantOrB2CTenant"; the 403 status from issue 3808 on the
# sibling report credentialUserRegistrationDetails).
LICENCE_REFUSAL = (
    403,
    "Authentication_RequestFromNonPremiumTenantOrB2CTenant",
    "Neither tenant is B2C or tenant doesn't have premium license",
)

# Docs silent on the page size and on $top for this report (see the module docstring).
DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 999

# $filter: the properties the resource page marks "Supports $filter" and the list page's table
# (the union of both), with the operators they name: eq everywhere, startswith on the two names,
# any (with eq) on the two string collections. userPreferredMethodForSecondaryAuthentication is
# marked "any with eq" although it is single-valued: the emulator accepts eq on it.
FILTER_PROPERTIES = frozenset(
    {
        "isMfaCapable",
        "isMfaRegistered",
        "isPasswordlessCapable",
        "isSsprCapable",
        "isSsprEnabled",
        "isSsprRegistered",
        "isSystemPreferredAuthenticationMethodEnabled",
        "methodsRegistered",
        "systemPreferredAuthenticationMethods",
        "userDisplayName",
        "userPreferredMethodForSecondaryAuthentication",
        "userPrincipalName",
    }
)
FILTER_OPERATORS = frozenset({"eq", "startswith", "any"})
# "Supports $filter (eq, startsWith) and $orderby" on userDisplayName and userPrincipalName only.
ORDERBY_PROPERTIES = frozenset({"userDisplayName", "userPrincipalName"})

# ``methodsRegistered`` names, per method kind. The pages give examples only ("such as
# mobilePhone, email, fido2"; the list sample: microsoftAuthenticatorPush,
# softwareOneTimePasscode, mobilePhone); the other names are the members of the beta enum
# usageAuthMethod (https://learn.microsoft.com/graph/api/resources/usageauthmethod?view=graph-rest-beta).
# The mapping from a method to its name is docs silent. The password is not a registered method
# here (the sample's user without methods lists none).
_PHONE_NAMES = {
    "mobile": "mobilePhone",
    "alternateMobile": "alternateMobilePhone",
    "office": "officePhone",
}
_KIND_NAMES = {
    ODATA_PREFIX + "microsoftAuthenticatorAuthenticationMethod": "microsoftAuthenticatorPush",
    ODATA_PREFIX + "softwareOathAuthenticationMethod": "softwareOneTimePasscode",
    ODATA_PREFIX + "fido2AuthenticationMethod": "fido2",
    ODATA_PREFIX + "emailAuthenticationMethod": "email",
    ODATA_PREFIX + "windowsHelloForBusinessAuthenticationMethod": "windowsHelloForBusiness",
    ODATA_PREFIX + "temporaryAccessPassAuthenticationMethod": "temporaryAccessPass",
    ODATA_PREFIX + "platformCredentialAuthenticationMethod": "macOsSecureEnclaveKey",
}
# Passwordless: "FIDO2, Windows Hello for Business, and Microsoft Authenticator (Passwordless)"
# (resource page); the emulator does not model Authenticator's passwordless mode, and counts the
# platform credential (a device-bound passkey) too.
_PASSWORDLESS_TYPES = frozenset(
    {
        ODATA_PREFIX + "fido2AuthenticationMethod",
        ODATA_PREFIX + "windowsHelloForBusinessAuthenticationMethod",
        ODATA_PREFIX + "platformCredentialAuthenticationMethod",
    }
)
# Methods that can reset a password (docs silent on the emulated tenant's SSPR policy: the
# emulator assumes SSPR is not enabled for anyone, and one such method registers a user).
_SSPR_TYPES = frozenset(
    {
        PHONE_TYPE,
        ODATA_PREFIX + "emailAuthenticationMethod",
        ODATA_PREFIX + "microsoftAuthenticatorAuthenticationMethod",
        ODATA_PREFIX + "softwareOathAuthenticationMethod",
    }
)
# systemPreferredAuthenticationMethods takes values of userDefaultAuthenticationMethod only; the
# strongest first, in the order of https://learn.microsoft.com/entra/identity/authentication/
# concept-system-preferred-multifactor-authentication (Authenticator notifications, then
# one-time passcodes, then telephony). Which phone ranks first: docs silent.
_SYSTEM_PREFERENCE_ORDER = ("push", "oath", "sms", "voiceAlternateMobile", "voiceOffice")


# --- the rows -------------------------------------------------------------------------------------


def method_names(methods: Iterable[Mapping[str, Any]]) -> list[str]:
    """The ``methodsRegistered`` names of a user's methods, each name once, in method order."""
    names: list[str] = []
    for method in methods:
        kind = str(method["@odata.type"])
        if kind == PHONE_TYPE:
            name = _PHONE_NAMES.get(str(method.get("phoneType", "")))
        else:
            name = _KIND_NAMES.get(kind)
        if name is not None and name not in names:
            names.append(name)
    return names


def admin_ids(tenant: Tenant) -> set[str]:
    """Ids of the users holding an active directory role, directly or through a role-assignable
    group (nested groups followed). The caller holds the lock. ``isAdmin``: "has an admin role
    in the tenant"; whether eligible (PIM) roles count: docs silent, they do not here."""
    principals = {str(a.get("principalId")) for a in tenant.role_assignments.values()}
    users = {p for p in principals if p in tenant.users}
    groups = [p for p in principals if p in tenant.group_members]
    seen: set[str] = set()
    while groups:
        group_id = groups.pop()
        if group_id in seen:
            continue
        seen.add(group_id)
        for member in tenant.group_members.get(group_id, ()):
            if member in tenant.users:
                users.add(member)
            elif member in tenant.group_members:
                groups.append(member)
    return users


def registration_row(
    tenant: Tenant, user: Mapping[str, Any], *, is_admin: bool, taken_at: datetime
) -> dict[str, Any]:
    """One ``userRegistrationDetails`` row for ``user`` from the tenant's methods, as of
    ``taken_at`` (its ``lastUpdatedDateTime``). The caller holds the lock."""
    user_id = str(user["id"])
    methods = tenant.methods.get(user_id, [])
    kinds = {str(m["@odata.type"]) for m in methods}
    default_id = tenant.default_method.get(user_id)
    default = next((m for m in methods if m["id"] == default_id), None)
    mfa_registered = bool(kinds & MFA_METHOD_TYPES)
    preferences: list[str] = []
    for method in methods:
        value = preferred_method_value(method, mobile_voice=False)
        if value is not None:
            preferences.append(value)
    system_preferred = [v for v in _SYSTEM_PREFERENCE_ORDER if v in preferences][:1]
    return {
        "id": user_id,
        "userPrincipalName": user["userPrincipalName"],
        "userDisplayName": user.get("displayName") or "",
        "userType": "guest" if user.get("userType") == "Guest" else "member",
        "isAdmin": is_admin,
        "isSsprRegistered": bool(kinds & _SSPR_TYPES),
        "isSsprEnabled": False,
        "isSsprCapable": False,
        "isMfaRegistered": mfa_registered,
        # "must be allowed by the authentication methods policy": the emulator's policy allows
        # every method it models (docs silent on the tenant's policy).
        "isMfaCapable": mfa_registered,
        "isPasswordlessCapable": bool(kinds & _PASSWORDLESS_TYPES),
        "lastUpdatedDateTime": format_timestamp(taken_at),
        "methodsRegistered": method_names(methods),
        "isSystemPreferredAuthenticationMethodEnabled": tenant.system_preferred_mfa.get(
            user_id, True
        ),
        "systemPreferredAuthenticationMethods": system_preferred,
        # v1.0's userDefaultAuthenticationMethod has a ``none`` member (the metadata); the list
        # page's sample shows "" for a user without a default: the emulator answers the enum.
        "userPreferredMethodForSecondaryAuthentication": preferred_method_value(
            default, mobile_voice=user_id in tenant.default_mobile_voice
        )
        or "none",
    }


# --- the snapshot ---------------------------------------------------------------------------------


@dataclass
class _Snapshot:
    users_ref: dict[str, dict[str, Any]]  # the tenant's users dict it was taken from
    taken_at: datetime
    rows: list[dict[str, Any]]
    by_id: dict[str, dict[str, Any]]


# Kept beside the tenant, keyed by its identity (the Tenant's fields are fixed; a reset keeps the
# object but replaces its ``users`` dict, which drops the snapshot). The refresh interval is a
# server setting, kept across a reset like Tenant.propagation.
_SNAPSHOTS: dict[int, _Snapshot] = {}
_REFRESH_SECONDS: dict[int, float] = {}


def set_report_refresh_seconds(tenant: Tenant, seconds: float) -> None:
    """How old the report may grow before a read takes a new snapshot (0: at every first page).
    Raises ValueError for a negative number."""
    if float(seconds) < 0:
        raise ValueError("the report's refresh interval must not be negative")
    with tenant.lock:
        _REFRESH_SECONDS[id(tenant)] = float(seconds)


def report_refresh_seconds(tenant: Tenant) -> float:
    """The tenant's refresh interval (see :func:`set_report_refresh_seconds`)."""
    return _REFRESH_SECONDS.get(id(tenant), 0.0)


def take_snapshot(tenant: Tenant, now: datetime) -> _Snapshot:
    """A new snapshot of every enabled user's row at ``now``. The caller holds the lock."""
    admins = admin_ids(tenant)
    rows = [
        registration_row(tenant, user, is_admin=user_id in admins, taken_at=now)
        for user_id, user in sorted(tenant.users.items())
        # "This method doesn't work for disabled users" (list page): they have no row.
        if user.get("accountEnabled", True)
    ]
    return _Snapshot(tenant.users, now, rows, {row["id"]: row for row in rows})


def current_snapshot(tenant: Tenant, now: datetime, *, continuing: bool = False) -> _Snapshot:
    """The snapshot a read at ``now`` sees: the kept one while it is younger than the refresh
    interval (or, with ``continuing``, for a later page of the same read), else a new one."""
    with tenant.lock:
        kept = _SNAPSHOTS.get(id(tenant))
        if kept is not None and kept.users_ref is tenant.users:
            age = (now - kept.taken_at).total_seconds()
            if continuing or age < report_refresh_seconds(tenant):
                return kept
        snapshot = take_snapshot(tenant, now)
        _SNAPSHOTS[id(tenant)] = snapshot
        return snapshot


def row_of(tenant: Tenant, user_id: str, now: datetime) -> dict[str, Any] | None:
    """The row a Get of ``user_id`` at ``now`` sees (None: no such enabled user). With the
    interval at 0 a new snapshot of the whole tenant would hold the same row, so only this row
    is computed (and the kept snapshot is left for the pages of a scan in progress)."""
    with tenant.lock:
        if report_refresh_seconds(tenant) > 0:
            return current_snapshot(tenant, now).by_id.get(user_id)
        user = tenant.users.get(user_id)
        if user is None or not user.get("accountEnabled", True):
            return None
        return registration_row(tenant, user, is_admin=user_id in admin_ids(tenant), taken_at=now)


# --- the routes -----------------------------------------------------------------------------------


def _check_licence(ctx: GraphContext) -> None:
    if ctx.tenant.licence not in REPORT_LICENCES:
        raise GraphHttpError(*LICENCE_REFUSAL)


def _check_list_query(ctx: GraphContext) -> None:
    """400 for what the list does not support: a filter on an undocumented property or with an
    undocumented operator, an order on another property, $search, $expand, $count."""
    query = ctx.query
    if query.search is not None or query.expand is not None or query.count:
        raise GraphHttpError(
            400,
            "Request_UnsupportedQuery",
            "userRegistrationDetails supports only $filter, $orderby, $select and $top.",
        )
    if query.filter is not None:
        unknown_paths = sorted(
            {path[0] for path in query.filter.paths if path and path[0] not in FILTER_PROPERTIES}
        )
        operators = sorted(query.filter.features - FILTER_OPERATORS)
        if unknown_paths or operators:
            what = unknown_paths[0] if unknown_paths else operators[0]
            raise GraphHttpError(
                400,
                "Request_UnsupportedQuery",
                f"Unsupported filter on userRegistrationDetails: '{what}'.",
            )
    for prop, _descending in query.orderby:
        if prop not in ORDERBY_PROPERTIES:
            raise GraphHttpError(
                400,
                "Request_UnsupportedQuery",
                f"Sorting by '{prop}' is not supported: $orderby supports userDisplayName and "
                "userPrincipalName.",
            )


@graph_route("GET", REPORT_PATH, throttle_class="reports", permissions=READ_PERMISSIONS)
def list_user_registration_details(ctx: GraphContext) -> Response:
    """``GET /reports/authenticationMethods/userRegistrationDetails``: the snapshot's rows,
    filtered, ordered (by id unless ``$orderby``), paged by ``@odata.nextLink``."""
    _check_licence(ctx)
    _check_list_query(ctx)
    snapshot = current_snapshot(ctx.tenant, ctx.now(), continuing=ctx.query.skiptoken is not None)
    # The rows are not changed by the answer ($select builds new dicts): no copy of a big tenant.
    return collection_response(
        ctx,
        snapshot.rows,
        context=CONTEXT,
        default_top=DEFAULT_PAGE_SIZE,
        max_top=MAX_PAGE_SIZE,
    )


@graph_route(
    "GET",
    REPORT_PATH + r"/(?P<user_id>[^/]+)",
    throttle_class="reports",
    permissions=READ_PERMISSIONS,
)
def get_user_registration_details(ctx: GraphContext) -> Response:
    """``GET .../userRegistrationDetails/{userId}``: one row; 404 for an unknown or disabled
    user (docs silent on the answer), 400 for any query option (the page: "does not support the
    OData query parameters"; docs silent on the answer)."""
    _check_licence(ctx)
    if any(name.startswith("$") for name in ctx.request.args):
        raise GraphHttpError(
            400,
            "Request_UnsupportedQuery",
            "Get userRegistrationDetails does not support OData query parameters.",
        )
    row = row_of(ctx.tenant, ctx.params["user_id"].lower(), ctx.now())
    if row is None:
        raise not_found(ctx.params["user_id"])
    # The page's sample wraps the row in "value"; its text says "a userRegistrationDetails
    # object in the response body". The emulator answers the object, as every other Get does.
    body = {"@odata.context": ctx.context_url(CONTEXT + "/$entity"), **row}
    return json_response(ctx, body)
