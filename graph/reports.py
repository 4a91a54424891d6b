"""The authentication methods registration report (``userRegistrationDetails``): how many
methods each of many people has, read in few calls, for a bulk operation's dry run.

Every call here draws on the small "identity and access reports" budget (5 per 10 s): it is a
Microsoft Entra reporting API ("Microsoft Entra reporting APIs are throttled ...",
https://learn.microsoft.com/graph/throttling-limits; the page's resource list does not name
userRegistrationDetails itself).

What Graph allows, and so how the rows are read:

- The list documents ``$filter`` on isMfaCapable, isMfaRegistered, isSsprEnabled,
  isSsprRegistered, methodsRegistered, userDisplayName and userPrincipalName, not on ``id``
  (https://learn.microsoft.com/graph/api/authenticationmethodsroot-list-userregistrationdetails),
  so a set of object ids cannot be asked for in ``$filter`` chunks. Two documented ways remain:
  one ``GET .../userRegistrationDetails/{id}`` per person
  (https://learn.microsoft.com/graph/api/userregistrationdetails-get), or a scan of the whole
  report, page by page, keeping the wanted rows. :func:`registration_details` takes the cheaper:
  ``min(n, pages)`` calls, where pages = ceil(tenant users / 999). A ``$batch`` does not help:
  each inner request counts against the throttling limit on its own.
- Page size: docs silent, and ``$top`` is not documented for this list; the scan asks for 999
  (as public clients do) and follows ``@odata.nextLink`` whatever size Graph answers with, so a
  smaller page only costs more calls than :func:`registration_details_calls` says.
- Disabled users have no row ("This method doesn't work for disabled users"): their ids are
  missing from the answer, as are unknown ids.
- Licence: Microsoft Entra ID P1 or P2; a free tenant refuses with 403
  ``Authentication_RequestFromNonPremiumTenantOrB2CTenant`` (public reports; docs silent on the
  code): see :func:`is_licence_refusal`.
- Permission: AuditLog.Read.All (the portal's app already holds it for the audit log).
- Freshness: the report is a snapshot; each row says when it was taken (``last_updated``).
  The portal's live reads (methods list, signInPreferences) stay the truth for a change.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from graph.client import GraphClient
from graph.errors import GraphError, GraphNotFound
from graph.operations import operation
from graph.results import PreferredSecondaryMethod, parse_datetime

# The page size the scan asks for (docs silent on the maximum; see the module docstring).
REPORT_PAGE_SIZE = 999
LICENCE_REFUSAL_CODE = "Authentication_RequestFromNonPremiumTenantOrB2CTenant"

# The properties RegistrationDetails reads ($select: "filter ... using the $filter and $select
# query parameters to reduce the size of your response object and the risk of throttling",
# throttling-limits, "Identity and access reports best practices").
_SELECT = (
    "id",
    "userPrincipalName",
    "isAdmin",
    "isMfaRegistered",
    "methodsRegistered",
    "userPreferredMethodForSecondaryAuthentication",
    "isSystemPreferredAuthenticationMethodEnabled",
    "lastUpdatedDateTime",
)

_LIST_REGISTRATION_DETAILS = operation(
    "reports.registration_details",
    "GET",
    "/v1.0/reports/authenticationMethods/userRegistrationDetails",
    reference="https://learn.microsoft.com/graph/api/authenticationmethodsroot-list-userregistrationdetails",
    select=_SELECT,
    paged=True,
)
# "This method does not support the OData query parameters": no $select here.
_GET_REGISTRATION_DETAILS = operation(
    "reports.registration_details_of",
    "GET",
    "/v1.0/reports/authenticationMethods/userRegistrationDetails/{user_id}",
    reference="https://learn.microsoft.com/graph/api/userregistrationdetails-get",
)


@dataclass(frozen=True)
class RegistrationDetails:
    """One person's row of the registration report.

    ``methods_registered`` are Graph's names (``mobilePhone``, ``microsoftAuthenticatorPush``,
    ``fido2``, ...; the password is not among them), so ``method_count`` is what a
    re-registration would remove. ``default_method`` is None when the person has no default
    (v1.0 answers ``none``; the docs' sample shows ``""``) or Graph names a value this client does
    not know (kept in ``raw_default_method``). ``last_updated`` is when the report's row was
    taken, not when the methods changed.
    """

    user_id: str
    user_principal_name: str
    methods_registered: tuple[str, ...]
    is_mfa_registered: bool | None
    is_admin: bool | None
    default_method: PreferredSecondaryMethod | None
    raw_default_method: str
    system_preferred_enabled: bool | None
    last_updated: datetime | None

    @property
    def method_count(self) -> int:
        return len(self.methods_registered)

    @classmethod
    def from_graph(cls, data: Mapping[str, Any]) -> RegistrationDetails:
        raw_default = data.get("userPreferredMethodForSecondaryAuthentication")
        raw = str(raw_default) if raw_default is not None else ""
        try:
            default: PreferredSecondaryMethod | None = PreferredSecondaryMethod(raw)
        except ValueError:
            default = None
        methods = data.get("methodsRegistered")

        def flag(name: str) -> bool | None:
            value = data.get(name)
            return value if isinstance(value, bool) else None

        return cls(
            user_id=str(data.get("id") or ""),
            user_principal_name=str(data.get("userPrincipalName") or ""),
            methods_registered=tuple(
                str(m) for m in (methods if isinstance(methods, list) else []) if m
            ),
            is_mfa_registered=flag("isMfaRegistered"),
            is_admin=flag("isAdmin"),
            default_method=default,
            raw_default_method=raw,
            system_preferred_enabled=flag("isSystemPreferredAuthenticationMethodEnabled"),
            last_updated=parse_datetime(data.get("lastUpdatedDateTime")),
        )


def scan_calls(tenant_users: int) -> int:
    """Pages of a whole-report scan for a tenant of ``tenant_users`` users (at least 1)."""
    return max(1, math.ceil(max(0, tenant_users) / REPORT_PAGE_SIZE))


def registration_details_calls(count: int, *, tenant_users: int) -> int:
    """How many reports-class calls :func:`registration_details` makes at most for ``count``
    distinct ids in a tenant of ``tenant_users`` users: 0 for none, else the cheaper of one Get
    per id and a scan of the report (fewer when a scan finds every id before its last page).
    For the dry run's estimate: at 5 per 10 s each call is a 2-second budget slot."""
    if count <= 0:
        return 0
    return min(count, scan_calls(tenant_users))


def _unique(user_ids: Sequence[str]) -> list[str]:
    seen: dict[str, None] = {}
    for user_id in user_ids:
        key = user_id.strip().lower()
        if key:
            seen.setdefault(key, None)
    return list(seen)


def get_registration_details(client: GraphClient, user_id: str) -> RegistrationDetails | None:
    """One person's row, or None when the report has none (an unknown or disabled user).
    One reports-class call. Raises GraphPermissionDenied for a tenant without P1/P2 (see
    :func:`is_licence_refusal`) or an app without AuditLog.Read.All."""
    # Reference: https://learn.microsoft.com/graph/api/userregistrationdetails-get
    try:
        response = client.call(_GET_REGISTRATION_DETAILS, path={"user_id": user_id})
    except GraphNotFound:
        return None
    data = response.data
    if isinstance(data, Mapping) and isinstance(data.get("value"), Mapping):
        data = data["value"]  # the page's sample wraps the row in "value"
    return RegistrationDetails.from_graph(data if isinstance(data, Mapping) else {})


def registration_details(
    client: GraphClient, user_ids: Sequence[str], *, tenant_users: int | None = None
) -> dict[str, RegistrationDetails]:
    """The report's rows of ``user_ids`` (object ids; case and duplicates ignored), by lower-case
    id. Ids the report has no row for (unknown, disabled) are missing from the answer.

    With ``tenant_users`` (the tenant's user count) it makes
    ``registration_details_calls(n, tenant_users=...)`` calls at most: one Get per id when that
    is fewer than the pages of a scan, else a scan that stops once every id is found. Without
    it, a scan (one call for a tenant of up to 999 users). Raises a GraphError as the calls do
    (GraphPermissionDenied for a tenant without P1/P2: :func:`is_licence_refusal`).
    """
    # Reference: https://learn.microsoft.com/graph/api/authenticationmethodsroot-list-userregistrationdetails
    wanted = _unique(user_ids)
    if not wanted:
        return {}
    found: dict[str, RegistrationDetails] = {}
    if tenant_users is not None and len(wanted) < scan_calls(tenant_users):
        for user_id in wanted:
            row = get_registration_details(client, user_id)
            if row is not None:
                found[user_id] = row
        return found
    missing = set(wanted)
    query = {"$top": str(REPORT_PAGE_SIZE)}
    page = client.get_page(_LIST_REGISTRATION_DETAILS, query=query)
    while True:
        for item in page.values:
            row = RegistrationDetails.from_graph(item)
            key = row.user_id.lower()
            if key in missing:
                found[key] = row
                missing.discard(key)
        if not missing or not page.next_link:
            return found
        page = client.get_page(_LIST_REGISTRATION_DETAILS, next_link=page.next_link)


def is_licence_refusal(error: GraphError) -> bool:
    """Whether ``error`` is the refusal of a tenant without Microsoft Entra ID P1 or P2 ("A
    Microsoft Entra ID P1 or P2 license is required to access authentication methods usage and
    insights reports", https://learn.microsoft.com/graph/api/resources/authenticationmethods-usage-insights-overview;
    the code is from public reports, docs silent)."""
    return error.code == LICENCE_REFUSAL_CODE
