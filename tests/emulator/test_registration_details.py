"""The emulator's userRegistrationDetails report against Microsoft's documentation.

Pages: https://learn.microsoft.com/graph/api/authenticationmethodsroot-list-userregistrationdetails
(list, $filter table, "doesn't work for disabled users"),
https://learn.microsoft.com/graph/api/userregistrationdetails-get (no query options),
https://learn.microsoft.com/graph/api/resources/userregistrationdetails (properties),
https://learn.microsoft.com/graph/api/resources/authenticationmethods-usage-insights-overview
(P1 or P2). Where the docs are silent, entra_emulator/reports_api.py says what is used instead.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests

from entra_emulator import reports_api
from entra_emulator.graph_core import registered_routes
from entra_emulator.seed import PERSONAS
from entra_emulator.server import EmulatorServer
from tests.emulator.conftest import app_token, graph_get, http, reader_token

REPORT = "/reports/authenticationMethods/userRegistrationDetails"
SAM = PERSONAS["sam.standard"]["id"]
PRIYA = PERSONAS["priya.privileged"]["id"]
OTTO = PERSONAS["otto.outsider"]["id"]
# The v1.0 properties (resource page and /work/shared/graph/v1.0.csdl): every row has them all.
PROPERTIES = {
    "id",
    "isAdmin",
    "isMfaCapable",
    "isMfaRegistered",
    "isPasswordlessCapable",
    "isSsprCapable",
    "isSsprEnabled",
    "isSsprRegistered",
    "isSystemPreferredAuthenticationMethodEnabled",
    "lastUpdatedDateTime",
    "methodsRegistered",
    "systemPreferredAuthenticationMethods",
    "userDisplayName",
    "userPreferredMethodForSecondaryAuthentication",
    "userPrincipalName",
    "userType",
}


@pytest.fixture(scope="module")
def token(emulator_server: EmulatorServer) -> str:
    return app_token(emulator_server)


@pytest.fixture
def report(emu: EmulatorServer) -> Iterator[EmulatorServer]:
    """The emulator with its throttle off (a test here is about the report, not pacing) and the
    report's refresh interval back to 0 afterwards."""
    emu.throttle.configure(enabled=False)
    try:
        yield emu
    finally:
        reports_api.set_report_refresh_seconds(emu.tenant, 0)


def _list(emu: EmulatorServer, token: str, **params: str) -> requests.Response:
    return graph_get(emu, REPORT, token, params=params)


def _all_rows(emu: EmulatorServer, token: str, **params: str) -> list[dict[str, Any]]:
    answer = _list(emu, token, **params)
    rows: list[dict[str, Any]] = []
    while True:
        assert answer.status_code == 200, answer.text
        body = answer.json()
        rows.extend(body["value"])
        link = body.get("@odata.nextLink")
        if not link:
            return rows
        answer = http(emu).get(link, headers={"Authorization": f"Bearer {token}"}, timeout=10)


def _enabled_ids(emu: EmulatorServer) -> set[str]:
    return {uid for uid, user in emu.tenant.users.items() if user["accountEnabled"]}


def _error(answer: requests.Response, status: int) -> dict[str, Any]:
    assert answer.status_code == status, answer.text
    error: dict[str, Any] = answer.json()["error"]
    return error


def test_a_row_has_the_documented_properties_computed_from_the_methods(
    report: EmulatorServer, token: str
) -> None:
    answer = graph_get(report, f"{REPORT}/{SAM}", token)
    assert answer.status_code == 200, answer.text
    row = answer.json()
    assert row["@odata.context"].endswith("$metadata#" + reports_api.CONTEXT + "/$entity")
    assert set(row) - {"@odata.context"} == PROPERTIES
    # Sam: password, mobile phone, Authenticator (the default): the password is not listed.
    assert row["userPrincipalName"].startswith("sam.standard@")
    assert sorted(row["methodsRegistered"]) == ["microsoftAuthenticatorPush", "mobilePhone"]
    assert row["isMfaRegistered"] is True and row["isAdmin"] is False
    assert row["userPreferredMethodForSecondaryAuthentication"] == "push"
    assert row["systemPreferredAuthenticationMethods"] == ["push"]
    assert row["userType"] == "member"
    # Priya holds a directory role; her FIDO2 key makes her passwordless capable.
    priya = graph_get(report, f"{REPORT}/{PRIYA}", token).json()
    assert priya["isAdmin"] is True and priya["isPasswordlessCapable"] is True
    assert "fido2" in priya["methodsRegistered"]
    # Otto's default is his mobile phone (by text): sms.
    otto = graph_get(report, f"{REPORT}/{OTTO}", token).json()
    assert otto["userPreferredMethodForSecondaryAuthentication"] == "sms"
    assert sorted(otto["methodsRegistered"]) == ["mobilePhone"]


def test_a_user_without_methods_has_an_empty_row_and_no_default(
    report: EmulatorServer, token: str
) -> None:
    with report.tenant.lock:
        report.tenant.methods[SAM] = [
            m for m in report.tenant.methods[SAM] if "password" in m["@odata.type"]
        ]
        report.tenant.default_method.pop(SAM, None)
    row = graph_get(report, f"{REPORT}/{SAM}", token).json()
    assert row["methodsRegistered"] == [] and row["isMfaRegistered"] is False
    assert row["userPreferredMethodForSecondaryAuthentication"] == "none"


def test_disabled_users_have_no_row(report: EmulatorServer, token: str) -> None:
    disabled = [uid for uid, u in report.tenant.users.items() if not u["accountEnabled"]]
    assert disabled
    rows = _all_rows(report, token, **{"$top": "999"})
    assert {row["id"] for row in rows} == _enabled_ids(report)
    error = _error(graph_get(report, f"{REPORT}/{disabled[0]}", token), 404)
    assert error["code"] == "Request_ResourceNotFound"
    unknown = graph_get(report, f"{REPORT}/00000000-0000-0000-0000-000000000000", token)
    assert _error(unknown, 404)["code"] == "Request_ResourceNotFound"


def test_paging_follows_next_links_without_gaps_or_repeats(
    report: EmulatorServer, token: str
) -> None:
    first = _list(report, token)
    assert first.status_code == 200, first.text
    assert len(first.json()["value"]) == reports_api.DEFAULT_PAGE_SIZE
    rows = _all_rows(report, token, **{"$top": "37"})
    ids = [row["id"] for row in rows]
    assert len(ids) == len(set(ids)) == len(_enabled_ids(report))
    assert ids == sorted(ids)  # docs silent on the order: the emulator's is by object id
    for top in ("0", "1000"):
        assert _error(_list(report, token, **{"$top": top}), 400)["code"] == "Request_BadRequest"


def test_the_documented_filters_work(report: EmulatorServer, token: str) -> None:
    sam_upn = report.tenant.users[SAM]["userPrincipalName"]
    by_upn = _all_rows(report, token, **{"$filter": f"userPrincipalName eq '{sam_upn.upper()}'"})
    assert [row["id"] for row in by_upn] == [SAM]  # "Supports case insensitive"
    by_name = _all_rows(report, token, **{"$filter": "startswith(userDisplayName,'Sam St')"})
    assert SAM in {row["id"] for row in by_name}
    unregistered = _all_rows(report, token, **{"$filter": "isMfaRegistered eq false"})
    assert all(row["isMfaRegistered"] is False for row in unregistered)
    with report.tenant.lock:
        office = next(
            uid
            for uid, methods in sorted(report.tenant.methods.items())
            if any(m.get("phoneType") == "office" for m in methods)
        )
    with_phone = _all_rows(
        report, token, **{"$filter": "methodsRegistered/any(m:m eq 'officePhone')"}
    )
    assert office in {row["id"] for row in with_phone}
    assert all("officePhone" in row["methodsRegistered"] for row in with_phone)
    both = _all_rows(
        report,
        token,
        **{"$filter": f"isMfaRegistered eq true and userPrincipalName eq '{sam_upn}'"},
    )
    assert [row["id"] for row in both] == [SAM]


@pytest.mark.parametrize(
    "expression",
    [
        f"id eq '{SAM}'",  # id is not a documented filter property
        "isAdmin eq true",
        "userType eq 'guest'",
        "endswith(userPrincipalName,'.com')",
        "isMfaRegistered ne true",
        "lastUpdatedDateTime ge 2026-01-01T00:00:00Z",
    ],
)
def test_undocumented_filters_are_refused(
    report: EmulatorServer, token: str, expression: str
) -> None:
    error = _error(_list(report, token, **{"$filter": expression}), 400)
    assert error["code"] == "Request_UnsupportedQuery"


def test_id_in_is_refused(report: EmulatorServer, token: str) -> None:
    """``id in (...)`` is neither a documented filter of this report nor parsed: 400."""
    answer = _list(report, token, **{"$filter": f"id in ('{SAM}','{PRIYA}')"})
    assert answer.status_code == 400, answer.text


def test_select_is_strict_about_the_metadata(report: EmulatorServer, token: str) -> None:
    ok = _list(report, token, **{"$select": "id,methodsRegistered", "$top": "5"})
    assert ok.status_code == 200, ok.text
    assert all(set(row) == {"id", "methodsRegistered"} for row in ok.json()["value"])
    # defaultMfaMethod exists in beta only; the v1.0 type does not have it.
    error = _error(_list(report, token, **{"$select": "id,defaultMfaMethod"}), 400)
    assert "defaultMfaMethod" in error["message"]


def test_orderby_only_on_the_two_names(report: EmulatorServer, token: str) -> None:
    rows = _all_rows(report, token, **{"$orderby": "userPrincipalName desc", "$top": "999"})
    names = [row["userPrincipalName"].casefold() for row in rows]
    assert names == sorted(names, reverse=True)
    error = _error(_list(report, token, **{"$orderby": "lastUpdatedDateTime"}), 400)
    assert error["code"] == "Request_UnsupportedQuery"


def test_get_takes_no_query_options(report: EmulatorServer, token: str) -> None:
    answer = graph_get(report, f"{REPORT}/{SAM}", token, params={"$select": "id"})
    assert _error(answer, 400)["code"] == "Request_UnsupportedQuery"


def test_a_tenant_without_p1_or_p2_is_refused(report: EmulatorServer, token: str) -> None:
    report.set_licence("free")
    try:
        for path in (REPORT, f"{REPORT}/{SAM}"):
            error = _error(graph_get(report, path, token), 403)
            assert error["code"] == "Authentication_RequestFromNonPremiumTenantOrB2CTenant"
        report.set_licence("p1")
        assert _list(report, token).status_code == 200
    finally:
        report.set_licence("p2")


def test_an_app_without_audit_log_read_all_is_refused(report: EmulatorServer) -> None:
    error = _error(graph_get(report, REPORT, reader_token(report)), 403)
    assert error["code"] == "Authorization_RequestDenied"


def test_a_snapshot_lags_behind_changes_and_says_when_it_was_taken(
    report: EmulatorServer, token: str
) -> None:
    def sam_row() -> dict[str, Any]:
        row: dict[str, Any] = graph_get(report, f"{REPORT}/{SAM}", token).json()
        return row

    def drop_sams_phone() -> None:
        with report.tenant.lock:
            report.tenant.methods[SAM] = [
                m for m in report.tenant.methods[SAM] if m.get("phoneType") != "mobile"
            ]

    # Interval 0 (the default): every read takes a new snapshot.
    before = sam_row()
    drop_sams_phone()
    after = sam_row()
    assert "mobilePhone" in before["methodsRegistered"]
    assert "mobilePhone" not in after["methodsRegistered"]
    assert after["lastUpdatedDateTime"] > before["lastUpdatedDateTime"]
    # A long interval: the report goes on showing the snapshot, and its time.
    report.reset()
    reports_api.set_report_refresh_seconds(report.tenant, 3600)
    kept = sam_row()
    drop_sams_phone()
    stale = sam_row()
    assert stale == kept and "mobilePhone" in stale["methodsRegistered"]
    rows = _all_rows(report, token, **{"$top": "999"})
    assert {row["lastUpdatedDateTime"] for row in rows} == {kept["lastUpdatedDateTime"]}
    # A reset drops the snapshot (a new tenant), the interval stays.
    report.reset()
    assert "mobilePhone" in sam_row()["methodsRegistered"]
    assert reports_api.report_refresh_seconds(report.tenant) == 3600
    with pytest.raises(ValueError, match="negative"):
        reports_api.set_report_refresh_seconds(report.tenant, -1)


def test_the_report_is_in_the_reports_throttling_class(emu: EmulatorServer, token: str) -> None:
    routes = [r for r in registered_routes() if r.pattern.pattern.startswith(REPORT)]
    assert len(routes) == 2
    assert {r.throttle_class for r in routes} == {"reports"}
    assert {r.permissions for r in routes} == {("AuditLog.Read.All",)}
    emu.throttle.configure(limits={"reports": (5, 10.0)}, enabled=True)
    statuses = [_list(emu, token, **{"$top": "1"}).status_code for _ in range(6)]
    assert statuses == [200] * 5 + [429]
