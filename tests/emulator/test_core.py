"""The Graph request framework: OData parsing, token checks, errors, throttling, faults, control."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest
import requests
from cryptography.hazmat.primitives.asymmetric import rsa
from werkzeug.wrappers import Response

from entra_emulator.graph_core import GraphContext, dispatch_inner, graph_route, json_response
from entra_emulator.odata import ODataError, parse_filter, parse_query, parse_search
from entra_emulator.seed import CLIENT_ID, PERSONAS, TENANT_ID
from entra_emulator.server import EmulatorServer
from tests.emulator.conftest import app_token, graph_get, http, reader_token

SAM = PERSONAS["sam.standard"]

# --- OData, without a server --------------------------------------------------------------------

ITEM = {
    "displayName": "Seán O'Brien",
    "accountEnabled": True,
    "age": 41,
    "activityDateTime": "2026-03-01T10:00:00Z",
    "initiatedBy": {"user": {"id": "a1"}},
    "targetResources": [{"id": "t1", "type": "User"}, {"id": "t2", "type": "Group"}],
    "mail": None,
}


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("startswith(displayName,'seá')", True),
        ("startswith(displayName,'Seán O''B')", True),
        ("endswith(displayName,'brien')", True),
        ("displayName eq 'SEÁN O''BRIEN'", True),
        ("displayName ne 'x' and accountEnabled eq true", True),
        ("not (accountEnabled eq true)", False),
        ("accountEnabled eq false or age gt 40", True),
        ("age ge 41 and age lt 42 and age le 41", True),
        ("mail eq null", True),
        ("activityDateTime ge 2026-03-01T00:00:00Z", True),
        ("activityDateTime lt 2026-03-01T09:59:59+00:00", False),
        ("initiatedBy/user/id eq 'a1'", True),
        ("targetResources/any(t:t/id eq 't2')", True),
        ("targetResources/any(t:t/id eq 't3')", False),
        ("targetResources/all(t:t/type ne 'Role')", True),
        ("(age eq 1 or age eq 41) and not(mail ne null)", True),
    ],
)
def test_filter_semantics(expression: str, expected: bool) -> None:
    assert parse_filter(expression).matches(ITEM) is expected


def test_filter_guid_literals_compare_with_string_ids() -> None:
    item = {"roleDefinitionId": "7be44c8a-adaf-4e2a-84d6-ab2649e08a13"}
    assert parse_filter("roleDefinitionId eq '7be44c8a-adaf-4e2a-84d6-ab2649e08a13'").matches(item)
    assert parse_filter("roleDefinitionId eq 7BE44C8A-ADAF-4E2A-84D6-AB2649E08A13").matches(item)


@pytest.mark.parametrize(
    "expression",
    [
        "",
        "displayName eq",
        "startswith(displayName 'a')",
        "displayName eq 'open",
        "(age eq 1",
        "age eq 1 age eq 2",
        "eq 1",
        "targetResources/any(t t/id eq 'x')",
        "displayName % 'a'",
        "and",
    ],
)
def test_malformed_filters_are_refused(expression: str) -> None:
    with pytest.raises(ODataError):
        parse_filter(expression)


def test_search_terms_and_operators() -> None:
    search = parse_search('"displayName:seán bri" OR "mail:zz" AND "displayName:x"')
    assert search.matches(ITEM)
    assert not parse_search('"displayName:brien" AND "displayName:x"').matches(ITEM)
    assert parse_search(r'"displayName:o\"brien"').clauses[0][0].words == ("o", "brien")
    for bad in ['"displayName:a" OR', "displayName:a", '"a" "b"', 'OR "displayName:a"']:
        with pytest.raises(ODataError):
            parse_search(bad)


def test_query_options_are_validated() -> None:
    query = parse_query(
        {
            "$select": "id, displayName",
            "$top": "5",
            "$count": "true",
            "$orderby": "displayName desc",
        }
    )
    assert query.select == ["id", "displayName"] and query.top == 5 and query.count
    assert query.orderby == [("displayName", True)]
    for bad in ({"$top": "ten"}, {"$count": "yes"}, {"$orderby": "a b c"}, {"$select": ","}):
        with pytest.raises(ODataError):
            parse_query(bad)


# --- token validation over HTTPS ----------------------------------------------------------------


def assert_graph_error(answer: requests.Response, status: int, code: str) -> dict[str, Any]:
    assert answer.status_code == status, answer.text
    error = answer.json()["error"]
    assert error["code"] == code
    assert error["innerError"]["request-id"] == answer.headers["request-id"]
    assert error["innerError"]["client-request-id"] == answer.headers["client-request-id"]
    assert error["innerError"]["date"]
    return dict(error)


def forged(server: EmulatorServer, **overrides: Any) -> str:
    now = int(time.time())
    claims = {
        "aud": "https://graph.microsoft.com",
        "iss": server.issuer,
        "tid": TENANT_ID,
        "iat": now,
        "nbf": now,
        "exp": now + 600,
        "azp": CLIENT_ID,
        "idtyp": "app",
        "roles": ["User.Read.All"],
        "oid": "x",
        "sub": "x",
        "ver": "2.0",
    }
    claims.update(overrides)
    return server.tokens.sign(claims)


def test_missing_and_malformed_tokens_are_401(emu: EmulatorServer) -> None:
    bare = http(emu).get(f"{emu.base_url}/v1.0/users", timeout=10)
    assert_graph_error(bare, 401, "InvalidAuthenticationToken")
    junk = graph_get(emu, "/users", "not-a-jwt")
    assert_graph_error(junk, 401, "InvalidAuthenticationToken")


def test_token_signed_by_another_key_is_401(emu: EmulatorServer) -> None:
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    good = jwt.decode(app_token(emu), options={"verify_signature": False})
    fake = jwt.encode(good, other, algorithm="RS256", headers={"kid": emu.tokens.kid})
    error = assert_graph_error(graph_get(emu, "/users", fake), 401, "InvalidAuthenticationToken")
    assert "signature" in error["message"].lower()


def test_expired_wrong_audience_and_wrong_issuer_are_401(emu: EmulatorServer) -> None:
    past = int(time.time()) - 7200
    expired = forged(emu, iat=past, nbf=past, exp=past + 3600)
    error = assert_graph_error(graph_get(emu, "/users", expired), 401, "InvalidAuthenticationToken")
    assert "expired" in error["message"]
    portal_audience = forged(emu, aud=CLIENT_ID)
    error = assert_graph_error(
        graph_get(emu, "/users", portal_audience), 401, "InvalidAuthenticationToken"
    )
    assert "audience" in error["message"].lower()
    other_issuer = forged(emu, iss="https://login.microsoftonline.com/other/v2.0")
    assert_graph_error(graph_get(emu, "/users", other_issuer), 401, "InvalidAuthenticationToken")
    # The emulator's own base URL is an accepted Graph audience too (GRAPH_URL in the demo).
    assert (
        graph_get(emu, "/users", forged(emu, aud=emu.base_url), params={"$top": "1"}).status_code
        == 200
    )


def test_missing_permission_is_403_for_apps_and_delegated_callers(emu: EmulatorServer) -> None:
    answer = graph_get(emu, f"/users/{SAM['id']}/transitiveMemberOf", reader_token(emu))
    assert_graph_error(answer, 403, "Authorization_RequestDenied")
    delegated = emu.tokens.issue_user_access_token(
        client_id=CLIENT_ID,
        user=emu.tenant.users[SAM["id"]],
        audience="https://graph.microsoft.com",
        scopes=["User.Read"],
    )
    assert graph_get(emu, "/me", delegated).status_code == 200
    assert_graph_error(graph_get(emu, "/users", delegated), 403, "Authorization_RequestDenied")


def test_request_ids_and_client_request_id_echo(emu: EmulatorServer) -> None:
    answer = graph_get(
        emu, f"/users/{SAM['id']}", app_token(emu), headers={"client-request-id": "abc-123"}
    )
    assert answer.status_code == 200
    assert answer.headers["client-request-id"] == "abc-123"
    assert len(answer.headers["request-id"]) == 36
    other = graph_get(emu, f"/users/{SAM['id']}", app_token(emu))
    assert other.headers["request-id"] != answer.headers["request-id"]


def test_unknown_segment_and_wrong_method(emu: EmulatorServer) -> None:
    token = app_token(emu)
    assert_graph_error(graph_get(emu, "/nothingHere", token), 400, "BadRequest")
    answer = http(emu).delete(
        f"{emu.base_url}/v1.0/users", headers={"Authorization": f"Bearer {token}"}, timeout=10
    )
    assert answer.status_code == 405


# --- throttling ---------------------------------------------------------------------------------


def test_identity_throttling_answers_429_with_retry_after_per_app(emu: EmulatorServer) -> None:
    emu.throttle.configure(limits={"identity": (3, 10.0)})
    token = app_token(emu)
    statuses = [graph_get(emu, f"/users/{SAM['id']}", token).status_code for _ in range(3)]
    assert statuses == [200, 200, 200]
    throttled = graph_get(emu, f"/users/{SAM['id']}", token)
    assert_graph_error(throttled, 429, "TooManyRequests")
    retry_after = int(throttled.headers["Retry-After"])
    assert 1 <= retry_after <= 10
    # The budget is per app: another app still gets through.
    assert graph_get(emu, f"/users/{SAM['id']}", reader_token(emu)).status_code == 200


def test_reports_budget_refills_over_time() -> None:
    clock = [0.0]
    from entra_emulator.throttle import Throttle

    throttle = Throttle({"reports": (5, 10.0)}, clock=lambda: clock[0])
    assert [throttle.take("app", "reports") for _ in range(5)] == [None] * 5
    assert throttle.take("app", "reports") == 2  # one token per 2 s
    clock[0] += 2.0
    assert throttle.take("app", "reports") is None
    assert throttle.take("app", "identity") is None
    throttle.configure(enabled=False)
    assert all(throttle.take("app", "reports") is None for _ in range(20))


# --- faults -------------------------------------------------------------------------------------


def test_fail_next_fails_only_the_matching_request_count_times(emu: EmulatorServer) -> None:
    token = app_token(emu)
    emu.faults.configure(
        fail_next=[
            {
                "method": "GET",
                "path_regex": f"/users/{SAM['id']}$",
                "status": 503,
                "code": "serviceNotAvailable",
                "message": "try later",
                "count": 2,
            }
        ]
    )
    other = PERSONAS["ada.agent"]["id"]
    assert graph_get(emu, f"/users/{other}", token).status_code == 200
    first = graph_get(emu, f"/users/{SAM['id']}", token)
    error = assert_graph_error(first, 503, "serviceNotAvailable")
    assert error["message"] == "try later" and first.headers["Retry-After"] == "1"
    assert graph_get(emu, f"/users/{SAM['id']}", token).status_code == 503
    assert graph_get(emu, f"/users/{SAM['id']}", token).status_code == 200
    assert emu.faults.snapshot()["fail_next"] == []


def test_error_rate_latency_and_timeouts(emu: EmulatorServer) -> None:
    token = app_token(emu)
    emu.faults.configure(error_rate=1.0, error_status=500)
    assert_graph_error(graph_get(emu, "/users", token), 500, "generalException")
    emu.faults.configure(error_status=503)
    answer = graph_get(emu, "/users", token)
    assert_graph_error(answer, 503, "serviceNotAvailable")
    assert int(answer.headers["Retry-After"]) >= 1
    emu.faults.configure(error_rate=0.0, latency_ms=300)
    started = time.monotonic()
    assert graph_get(emu, f"/users/{SAM['id']}", token).status_code == 200
    assert time.monotonic() - started >= 0.3
    emu.faults.configure(latency_ms=0, timeout_rate=1.0, timeout_seconds=2.0)
    with pytest.raises(requests.Timeout):
        graph_get(emu, f"/users/{SAM['id']}", token, timeout=0.5)


def test_seeded_error_rate_is_deterministic() -> None:
    from entra_emulator.faults import Faults

    def pattern() -> list[bool]:
        faults = Faults(seed=7)
        faults.configure(error_rate=0.5)
        return [faults.pick("GET", "/v1.0/users") is not None for _ in range(40)]

    first = pattern()
    assert first == pattern() and 5 < sum(first) < 35


# --- control API --------------------------------------------------------------------------------


def test_control_api(emu: EmulatorServer) -> None:
    session = http(emu)
    base = f"{emu.base_url}/_emulator"
    faults = session.post(
        f"{base}/faults",
        json={
            "latency_ms": 5,
            "fail_next": [
                {
                    "method": "delete",
                    "path_regex": "/authentication/",
                    "status": 400,
                    "code": "badRequest",
                    "message": "no",
                    "count": 1,
                }
            ],
        },
        timeout=10,
    ).json()
    assert faults["latency_ms"] == 5 and faults["fail_next"][0]["method"] == "DELETE"
    assert session.get(f"{base}/faults", timeout=10).json() == faults
    bad = session.post(f"{base}/faults", json={"error_rate": 2}, timeout=10)
    assert bad.status_code == 400 and "error_rate" in bad.json()["error"]
    assert session.post(f"{base}/faults", json={"nonsense": 1}, timeout=10).status_code == 400
    throttle = session.post(
        f"{base}/throttle", json={"reports": [2, 5], "enabled": False}, timeout=10
    ).json()
    assert throttle["reports"] == [2, 5.0] and throttle["enabled"] is False
    assert (
        session.post(f"{base}/throttle", json={"identity": [0, 5]}, timeout=10).status_code == 400
    )
    # reset re-seeds the tenant and clears faults.
    emu.tenant.users[SAM["id"]]["displayName"] = "Changed"
    assert session.post(f"{base}/reset", timeout=10).json()["status"] == "reset"
    assert emu.tenant.users[SAM["id"]]["displayName"] == "Sam Standard"
    assert session.get(f"{base}/faults", timeout=10).json()["latency_ms"] == 0
    audit = session.get(f"{base}/audit", timeout=10).json()["value"]
    assert audit == emu.tenant.audit_events


# --- $batch plumbing ----------------------------------------------------------------------------


@graph_route(
    "GET",
    r"/emulatorSelfTest/inner",
    throttle_class="identity",
    permissions=("User.Read.All",),
    versions=("beta",),
)
def _inner_probe(ctx: GraphContext) -> Response:
    status, headers, body = dispatch_inner(
        ctx,
        method="GET",
        url=f"users/{SAM['id']}?$select=id,displayName",
        headers={"client-request-id": "inner-1"},
        body=None,
    )
    missing = dispatch_inner(
        ctx, method="GET", url="/users/nobody@nowhere", headers=None, body=None
    )
    return json_response(
        ctx,
        {
            "status": status,
            "headers": headers,
            "body": body,
            "missing": [missing[0], missing[2]],
        },
    )


def test_dispatch_inner_runs_the_whole_pipeline_with_the_outer_token(emu: EmulatorServer) -> None:
    token = app_token(emu)
    answer = http(emu).get(
        f"{emu.base_url}/beta/emulatorSelfTest/inner",
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    assert answer.status_code == 200, answer.text
    result = answer.json()
    assert result["status"] == 200
    assert result["body"]["displayName"] == "Sam Standard" and "mail" not in result["body"]
    assert result["headers"]["client-request-id"] == "inner-1"
    assert result["missing"][0] == 404
    assert result["missing"][1]["error"]["code"] == "Request_ResourceNotFound"
    # Inner requests count against the throttle on their own.
    emu.throttle.configure(limits={"identity": (1, 10.0)})  # the outer request takes it
    answer = http(emu).get(
        f"{emu.base_url}/beta/emulatorSelfTest/inner",
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    assert answer.json()["status"] == 429


def test_data_clock_can_be_pinned(tmp_path: Any) -> None:
    pinned = datetime(2026, 1, 15, 9, 0, tzinfo=UTC)
    server = EmulatorServer(state_dir=tmp_path, port=0, users=30, now=pinned)
    try:
        assert server.now() == pinned
        created = max(u["createdDateTime"] for u in server.tenant.users.values())
        assert created <= (pinned - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    finally:
        server.stop()
