"""The transport against a scripted local HTTPS server: token, retries, paging, $batch.

The server (tests/graph/local_graph.py) answers MSAL's real discovery and token requests and plays
back scripted Graph answers, so these tests run the real client code end to end over TLS.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
import uuid
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from graph import methods, requirements, roles, sessions, users
from graph.batch import BatchCall, run_batch
from graph.budget import BudgetRate
from graph.errors import (
    GraphAuthError,
    GraphBadRequest,
    GraphNotFound,
    GraphPermissionDenied,
    GraphProtocolError,
    GraphThrottled,
    GraphTokenUnavailable,
    GraphTransient,
)
from graph.results import AuthenticationMethod, MethodKind
from tests.graph.conftest import MakeClient
from tests.graph.local_graph import Answer, LocalGraph, graph_error

USER = {"id": "u1", "displayName": "Sam Standard", "userPrincipalName": "sam@contoso.test"}
TAP_CREATED = {
    "id": "tap1",
    "temporaryAccessPass": "Pass+1234",
    "lifetimeInMinutes": 60,
    "isUsableOnce": True,
}


def query_of(path: str) -> dict[str, list[str]]:
    return parse_qs(urlsplit(path).query)


def test_get_user_sends_token_ids_select_and_encodes_guest_upn(
    local_graph: LocalGraph, make_client: MakeClient
) -> None:
    local_graph.script("GET", r"^/v1.0/users/[^/]+$", Answer(body=USER))
    client = make_client()
    user = users.get_user(client, "ann_fabrikam.com#EXT#@contoso.onmicrosoft.com")
    assert user.display_name == "Sam Standard"
    [request] = local_graph.graph_requests()
    assert urlsplit(request.path).path == (
        "/v1.0/users/ann_fabrikam.com%23EXT%23@contoso.onmicrosoft.com"
    )
    assert request.headers["Authorization"] == "Bearer t1"
    uuid.UUID(request.headers["client-request-id"])
    assert query_of(request.path)["$select"] == [",".join(users.USER_SELECT)]
    # MSAL asked for {graph_url}/.default with the client secret.
    token_body = parse_qs(local_graph.token_requests[0]["body"])
    assert token_body["scope"] == [f"{local_graph.base_url}/.default"]
    assert token_body["grant_type"] == ["client_credentials"]


def test_token_is_cached_and_every_call_has_its_own_client_request_id(
    local_graph: LocalGraph, make_client: MakeClient
) -> None:
    local_graph.script("GET", r"^/v1.0/users/u1$", Answer(body=USER))
    client = make_client()
    users.get_user(client, "u1")
    users.get_user(client.with_priority("sync"), "u1")
    ids = {r.headers["client-request-id"] for r in local_graph.graph_requests()}
    assert len(ids) == 2
    assert len(local_graph.token_requests) == 1


def test_429_honours_retry_after_and_pauses_the_class(
    local_graph: LocalGraph, make_client: MakeClient
) -> None:
    local_graph.script(
        "GET",
        r"^/v1.0/users/u1$",
        Answer(429, graph_error(429, "TooManyRequests"), {"Retry-After": "1"}),
        Answer(body=USER),
    )
    client = make_client()
    users.get_user(client, "u1")
    first, second = local_graph.graph_requests()
    assert second.at - first.at >= 0.95
    assert first.headers["client-request-id"] != second.headers["client-request-id"]


def test_503_without_retry_after_backs_off_and_retries(
    local_graph: LocalGraph, make_client: MakeClient
) -> None:
    local_graph.script(
        "GET",
        r"^/v1.0/users/u1$",
        Answer(503, graph_error(503, "serviceNotAvailable")),
        Answer(503, graph_error(503, "serviceNotAvailable")),
        Answer(body=USER),
    )
    assert users.get_user(make_client(), "u1").id == "u1"
    assert len(local_graph.graph_requests()) == 3


def test_retries_are_capped(local_graph: LocalGraph, make_client: MakeClient) -> None:
    local_graph.script(
        "GET", r"^/v1.0/users/u1$", Answer(500, graph_error(500, "generalException"))
    )
    with pytest.raises(GraphTransient) as caught:
        users.get_user(make_client(max_retries=2), "u1")
    assert caught.value.code == "generalException"
    assert len(local_graph.graph_requests()) == 3


def test_retry_after_beyond_max_wait_is_raised_not_slept(
    local_graph: LocalGraph, make_client: MakeClient
) -> None:
    local_graph.script(
        "GET",
        r"^/v1.0/users/u1$",
        Answer(429, graph_error(429, "TooManyRequests"), {"Retry-After": "120"}),
    )
    started = time.monotonic()
    with pytest.raises(GraphThrottled) as caught:
        users.get_user(make_client(max_retry_wait=5), "u1")
    assert time.monotonic() - started < 3
    assert caught.value.retry_after == 120
    assert len(local_graph.graph_requests()) == 1


def test_post_is_not_repeated_after_a_5xx(local_graph: LocalGraph, make_client: MakeClient) -> None:
    local_graph.script(
        "POST",
        r"/temporaryAccessPassMethods$",
        Answer(500, graph_error(500, "generalException")),
        Answer(201, TAP_CREATED),
    )
    with pytest.raises(GraphTransient) as caught:
        methods.create_temporary_access_pass(
            make_client(), "u1", lifetime_in_minutes=60, is_usable_once=True
        )
    assert caught.value.code == "OutcomeUnknown"
    assert "generalException" in caught.value.message
    assert len(local_graph.graph_requests()) == 1


def test_post_is_repeated_after_429_and_503(
    local_graph: LocalGraph, make_client: MakeClient
) -> None:
    local_graph.script(
        "POST",
        r"/temporaryAccessPassMethods$",
        Answer(429, graph_error(429, "TooManyRequests"), {"Retry-After": "0"}),
        Answer(503, graph_error(503, "serviceNotAvailable"), {"Retry-After": "0"}),
        Answer(201, TAP_CREATED),
    )
    tap = methods.create_temporary_access_pass(
        make_client(), "u1", lifetime_in_minutes=60, is_usable_once=True
    )
    assert tap.pass_value == "Pass+1234"
    posts = local_graph.graph_requests()
    assert len(posts) == 3
    assert posts[0].body == {"lifetimeInMinutes": 60, "isUsableOnce": True}


def test_dropped_connection_retries_get_but_not_patch(
    local_graph: LocalGraph, make_client: MakeClient
) -> None:
    local_graph.script("GET", r"^/v1.0/users/u1$", Answer(drop=True), Answer(body=USER))
    assert users.get_user(make_client(), "u1").id == "u1"
    local_graph.reset()
    local_graph.script("PATCH", r"/authentication/requirements$", Answer(drop=True), Answer(204))
    with pytest.raises(GraphTransient) as caught:
        requirements.set_per_user_mfa_state(make_client(), "u1", "enforced")
    assert caught.value.code == "OutcomeUnknown"
    assert len(local_graph.graph_requests()) == 1


def test_read_timeout_retries_get_but_not_post(
    local_graph: LocalGraph, make_client: MakeClient
) -> None:
    local_graph.script("GET", r"^/v1.0/users/u1$", Answer(body=USER, delay=1.5), Answer(body=USER))
    assert users.get_user(make_client(timeout=0.5), "u1").id == "u1"
    local_graph.reset()
    local_graph.script(
        "POST", r"/roleAssignments$", Answer(201, {"id": "a"}, delay=1.5), Answer(201, {"id": "a"})
    )
    with pytest.raises(GraphTransient) as caught:
        roles.create_role_assignment(
            make_client(timeout=0.5), role_definition_id="r", principal_id="p"
        )
    assert caught.value.code == "OutcomeUnknown"
    assert len(local_graph.graph_requests()) == 1


def test_known_safe_post_is_retried(local_graph: LocalGraph, make_client: MakeClient) -> None:
    local_graph.script(
        "POST",
        r"/revokeSignInSessions$",
        Answer(502, graph_error(502, "badGateway")),
        Answer(200, {"value": True}),
    )
    sessions.revoke_sign_in_sessions(make_client(), "u1")
    assert len(local_graph.graph_requests()) == 2


def test_delete_that_succeeded_before_a_broken_answer_is_success(
    local_graph: LocalGraph, make_client: MakeClient
) -> None:
    local_graph.script(
        "DELETE",
        r"/phoneMethods/",
        Answer(drop=True),
        Answer(404, graph_error(404, "Request_ResourceNotFound")),
    )
    phone = AuthenticationMethod(
        "m1", MethodKind.PHONE, "microsoft.graph.phoneAuthenticationMethod", ""
    )
    methods.delete_method(make_client(), "u1", phone)
    assert len(local_graph.graph_requests()) == 2
    # Without an earlier attempt a 404 stays an error.
    local_graph.reset()
    local_graph.script(
        "DELETE", r"/phoneMethods/", Answer(404, graph_error(404, "Request_ResourceNotFound"))
    )
    with pytest.raises(GraphNotFound):
        methods.delete_method(make_client(), "u1", phone)


def test_delete_method_picks_the_collection_and_refuses_password(
    local_graph: LocalGraph, make_client: MakeClient
) -> None:
    local_graph.script("DELETE", r"/microsoftAuthenticatorMethods/m2$", Answer(204))
    authenticator = AuthenticationMethod(
        "m2", MethodKind.MICROSOFT_AUTHENTICATOR, "microsoft.graph.x", "iPhone"
    )
    methods.delete_method(make_client(), "u1", authenticator)
    password = AuthenticationMethod("p", MethodKind.PASSWORD, "x", "")
    with pytest.raises(ValueError, match="cannot be deleted"):
        methods.delete_method(make_client(), "u1", password)
    assert len(local_graph.graph_requests()) == 1


def test_401_refreshes_the_token_once(local_graph: LocalGraph, make_client: MakeClient) -> None:
    local_graph.script(
        "GET",
        r"^/v1.0/users/u1$",
        Answer(401, graph_error(401, "InvalidAuthenticationToken")),
        Answer(body=USER),
    )
    users.get_user(make_client(), "u1")
    first, second = local_graph.graph_requests()
    assert first.headers["Authorization"] == "Bearer t1"
    assert second.headers["Authorization"] != "Bearer t1"
    local_graph.reset()
    local_graph.script(
        "GET", r"^/v1.0/users/u1$", Answer(401, graph_error(401, "InvalidAuthenticationToken"))
    )
    with pytest.raises(GraphAuthError) as caught:
        users.get_user(make_client(), "u1")
    assert caught.value.permanent and len(local_graph.graph_requests()) == 2


@pytest.mark.parametrize(
    ("status", "cls"),
    [(400, GraphBadRequest), (403, GraphPermissionDenied), (404, GraphNotFound)],
)
def test_permanent_errors_are_not_retried(
    local_graph: LocalGraph, make_client: MakeClient, status: int, cls: type[Exception]
) -> None:
    local_graph.script(
        "GET",
        r"^/v1.0/users/u1$",
        Answer(status, graph_error(status, "Code", "Message", "req-77")),
    )
    with pytest.raises(cls) as caught:
        users.get_user(make_client(), "u1")
    assert "req-77" in str(caught.value)
    assert len(local_graph.graph_requests()) == 1


def test_token_endpoint_failures_are_typed(
    local_graph: LocalGraph, make_client: MakeClient
) -> None:
    local_graph.token_answers.append(Answer(500, {"error": "server_error"}))
    with pytest.raises(GraphTokenUnavailable) as down:
        make_client().check_token()
    assert down.value.permanent is False
    local_graph.reset()
    local_graph.token_answers.append(
        Answer(
            401,
            {"error": "invalid_client", "error_description": "AADSTS7000215: bad secret\nTrace"},
        )
    )
    with pytest.raises(GraphAuthError) as refused:
        make_client().check_token()
    assert refused.value.permanent is True
    assert refused.value.code == "invalid_client"
    assert refused.value.message == "AADSTS7000215: bad secret"


def test_login_host_down_is_transient(local_graph: LocalGraph, make_client: MakeClient) -> None:
    client = make_client(login_host="127.0.0.1:9", graph_url=local_graph.base_url)
    with pytest.raises(GraphTokenUnavailable):
        client.check_token()


def test_certificate_credential(
    local_graph: LocalGraph, make_client: MakeClient, tmp_path: Path
) -> None:
    leaf = trustme.CA().issue_cert("portal-app", key_type=trustme.KeyType.RSA)
    pem = tmp_path / "app.pem"
    pem.write_bytes(leaf.private_key_and_cert_chain_pem.bytes())
    make_client(client_secret="", client_cert_path=str(pem)).check_token()
    body = parse_qs(local_graph.token_requests[0]["body"])
    assert "client_secret" not in body
    assert body["client_assertion_type"] == [
        "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
    ]
    header_b64 = body["client_assertion"][0].split(".")[0]
    ec_pem = tmp_path / "ec.pem"
    ec_pem.write_bytes(trustme.CA().issue_cert("ec").private_key_and_cert_chain_pem.bytes())
    with pytest.raises(ValueError, match="must be RSA"):
        make_client(client_secret="", client_cert_path=str(ec_pem))
    header = json.loads(base64.urlsafe_b64decode(header_b64 + "=" * (-len(header_b64) % 4)))
    certificate = x509.load_pem_x509_certificate(leaf.cert_chain_pems[0].bytes())
    der = certificate.public_bytes(Encoding.DER)
    expected = base64.urlsafe_b64encode(hashlib.sha1(der).digest()).decode().rstrip("=")
    assert header["x5t"].rstrip("=") == expected


def test_paging_follows_next_link_verbatim(
    local_graph: LocalGraph, make_client: MakeClient
) -> None:
    next_link = (
        f"{local_graph.base_url}/v1.0/users/u1/authentication/methods?$skiptoken=a%2Bb%3D%3D"
    )
    first = {
        "value": [{"@odata.type": "#microsoft.graph.passwordAuthenticationMethod", "id": "p"}],
        "@odata.nextLink": next_link,
    }
    second = {
        "value": [
            {
                "@odata.type": "#microsoft.graph.emailAuthenticationMethod",
                "id": "e",
                "emailAddress": "x@y.z",
            }
        ]
    }
    local_graph.script("GET", r"/authentication/methods$", Answer(body=first), Answer(body=second))
    found = methods.list_methods(make_client(), "u1")
    assert [m.kind for m in found] == [MethodKind.PASSWORD, MethodKind.EMAIL]
    requests_made = local_graph.graph_requests()
    assert requests_made[1].path == next_link.removeprefix(local_graph.base_url)


def test_foreign_next_link_is_refused(local_graph: LocalGraph, make_client: MakeClient) -> None:
    page = {"value": [], "@odata.nextLink": "https://evil.example/v1.0/users?$skiptoken=x"}
    local_graph.script("GET", r"/transitiveMemberOf$", Answer(body=page))
    with pytest.raises(GraphProtocolError, match="outside"):
        users.list_transitive_member_of(make_client(), "u1")
    assert len(local_graph.graph_requests()) == 1


def test_search_sends_consistency_level_on_every_page(
    local_graph: LocalGraph, make_client: MakeClient
) -> None:
    next_link = f"{local_graph.base_url}/v1.0/users?$skiptoken=abc"
    local_graph.script(
        "GET",
        r"^/v1.0/users$",
        Answer(body={"value": [USER], "@odata.count": 2, "@odata.nextLink": next_link}),
        Answer(body={"value": [USER]}),
    )
    client = make_client()
    page = users.search_users(client, 'o"brien & co', top=1)
    assert page.count == 2 and page.next_link == next_link
    users.search_users(client, "ignored", next_link=page.next_link)
    first, second = local_graph.graph_requests()
    query = query_of(first.path)
    assert query["$search"] == [
        '"displayName:o\\"brien & co" OR "userPrincipalName:o\\"brien & co" '
        'OR "mail:o\\"brien & co"'
    ]
    assert query["$count"] == ["true"] and query["$top"] == ["1"]
    assert "&co" not in first.path and "+" not in first.path
    assert first.headers["ConsistencyLevel"] == "eventual"
    assert second.headers["ConsistencyLevel"] == "eventual"


def test_startswith_filter_is_quoted(local_graph: LocalGraph, make_client: MakeClient) -> None:
    local_graph.script("GET", r"^/v1.0/users$", Answer(body={"value": []}))
    users.list_users_startswith(make_client(), "o'b")
    [request] = local_graph.graph_requests()
    assert query_of(request.path)["$filter"] == [
        "startswith(displayName,'o''b') or startswith(userPrincipalName,'o''b') "
        "or startswith(mail,'o''b')"
    ]
    assert "ConsistencyLevel" not in request.headers


def test_undeclared_body_property_fails_before_any_request(
    local_graph: LocalGraph, make_client: MakeClient
) -> None:
    from graph.methods import _CREATE_TAP

    with pytest.raises(ValueError, match="does not declare body properties"):
        make_client().call(_CREATE_TAP, path={"user_id": "u1"}, body={"temporaryAccessPass": "x"})
    with pytest.raises(ValueError, match="cannot be set by the caller"):
        make_client().call(_CREATE_TAP, path={"user_id": "u1"}, query={"$select": "id"})
    assert local_graph.graph_requests() == []


def test_batch_splits_and_maps_every_inner_status(
    local_graph: LocalGraph, make_client: MakeClient
) -> None:
    ids = [f"u{i}" for i in range(25)]

    def inner(
        i: int, status: int, body: object, headers: dict[str, str] | None = None
    ) -> dict[str, object]:
        return {"id": str(i), "status": status, "headers": headers or {}, "body": body}

    first = {
        "responses": [
            inner(i, 200, {"id": f"u{i}", "displayName": f"U{i}", "userPrincipalName": f"u{i}@x"})
            for i in range(20)
        ]
    }
    first["responses"][3] = inner(3, 404, graph_error(404, "Request_ResourceNotFound"))
    first["responses"][4] = inner(4, 403, graph_error(403, "Authorization_RequestDenied"))
    first["responses"][5] = inner(5, 429, graph_error(429, "TooManyRequests"), {"Retry-After": "0"})
    second = {
        "responses": [
            inner(i, 200, {"id": f"u{i}", "displayName": f"U{i}", "userPrincipalName": f"u{i}@x"})
            for i in range(20, 25)
        ]
    }
    retried = {
        "responses": [inner(5, 200, {"id": "u5", "displayName": "U5", "userPrincipalName": "u5@x"})]
    }
    local_graph.script(
        "POST", r"^/v1.0/\$batch$", Answer(body=first), Answer(body=second), Answer(body=retried)
    )
    result = users.get_users(make_client(), ids)
    batches = local_graph.graph_requests()
    assert [len(b.body["requests"]) for b in batches] == [20, 5, 1]
    assert batches[0].body["requests"][0] == {
        "id": "0",
        "method": "GET",
        "url": f"/users/u0?$select={','.join(users.USER_SELECT)}",
        # An agent is waiting: each inner request carries Graph's priority header.
        "headers": {"x-ms-throttle-priority": "high"},
    }
    assert isinstance(result["u3"], GraphNotFound)
    assert isinstance(result["u4"], GraphPermissionDenied)
    assert result["u5"].display_name == "U5"  # type: ignore[union-attr]
    assert all(result[f"u{i}"].display_name == f"U{i}" for i in (0, 1, 2, 6, 19, 20, 24))  # type: ignore[union-attr]


def test_batch_chunks_stay_within_the_budget_burst(
    local_graph: LocalGraph, make_client: MakeClient
) -> None:
    from graph.methods import _LIST_METHODS

    def answer_all(count: int, start: int) -> Answer:
        return Answer(
            body={
                "responses": [
                    {"id": str(i), "status": 200, "body": {"value": []}}
                    for i in range(start, start + count)
                ]
            }
        )

    local_graph.script(
        "POST", r"^/v1.0/\$batch$", answer_all(4, 0), answer_all(4, 4), answer_all(2, 8)
    )
    client = make_client(budgets={"reports": BudgetRate(5, 0.05), "identity": BudgetRate(100, 1)})
    calls = [BatchCall(_LIST_METHODS, {"user_id": f"u{i}"}) for i in range(10)]
    outcomes = run_batch(client.with_priority("sync"), calls)
    assert all(o.ok for o in outcomes)
    # Sync priority may take at most 5 - 1 (reserve) reports tokens at once.
    assert [len(b.body["requests"]) for b in local_graph.graph_requests()] == [4, 4, 2]
