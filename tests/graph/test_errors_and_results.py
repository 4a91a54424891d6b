"""Graph error parsing, and the typed results built from Graph's JSON."""

from __future__ import annotations

import pickle
from datetime import UTC, datetime

import pytest

from graph.errors import (
    GraphAuthError,
    GraphBadRequest,
    GraphError,
    GraphNotFound,
    GraphPermissionDenied,
    GraphThrottled,
    GraphTokenUnavailable,
    GraphTransient,
    error_from_parts,
)
from graph.results import (
    AuthenticationMethod,
    DirectoryAudit,
    DirectoryObject,
    Group,
    MethodKind,
    PerUserMfa,
    PerUserMfaState,
    RoleAssignment,
    TemporaryAccessPass,
    parse_datetime,
    thaw,
)


def graph_body(code: str, message: str, request_id: str = "r-1") -> dict[str, object]:
    return {
        "error": {
            "code": code,
            "message": message,
            "innerError": {"request-id": request_id, "client-request-id": "c-1", "date": "d"},
        }
    }


@pytest.mark.parametrize(
    ("status", "cls", "permanent"),
    [
        (400, GraphBadRequest, True),
        (401, GraphAuthError, True),
        (403, GraphPermissionDenied, True),
        (404, GraphNotFound, True),
        (409, GraphBadRequest, True),
        (412, GraphBadRequest, True),
        (429, GraphThrottled, False),
        (500, GraphTransient, False),
        (503, GraphTransient, False),
    ],
)
def test_status_maps_to_type(status: int, cls: type[GraphError], permanent: bool) -> None:
    error = error_from_parts(status, graph_body("SomeCode", "Some message"), {})
    assert type(error) is cls
    assert error.permanent is permanent
    assert (error.status, error.code, error.message) == (status, "SomeCode", "Some message")
    assert (error.request_id, error.client_request_id) == ("r-1", "c-1")


def test_str_shows_code_message_and_request_id() -> None:
    error = error_from_parts(
        403, graph_body("Authorization_RequestDenied", "Insufficient privileges", "abc-123"), {}
    )
    assert str(error) == (
        "HTTP 403 Authorization_RequestDenied: Insufficient privileges (request-id abc-123)"
    )


def test_falls_back_to_headers_when_body_is_not_graphs() -> None:
    error = error_from_parts(
        502, "<html>bad gateway</html>", {"Request-Id": "hdr-1", "client-request-id": "c-9"}
    )
    assert isinstance(error, GraphTransient)
    assert (error.code, error.request_id, error.client_request_id) == ("HTTP502", "hdr-1", "c-9")
    assert "502" in error.message


def test_throttled_reads_retry_after() -> None:
    error = error_from_parts(429, graph_body("TooManyRequests", "slow down"), {"Retry-After": "7"})
    assert isinstance(error, GraphThrottled) and error.retry_after == 7.0
    odd = error_from_parts(429, None, {"Retry-After": "soon"})
    assert isinstance(odd, GraphThrottled) and odd.retry_after is None


def test_errors_survive_pickling() -> None:
    error = error_from_parts(429, graph_body("TooManyRequests", "m"), {"Retry-After": "3"})
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is GraphThrottled
    assert (copy.code, copy.retry_after, copy.request_id, str(copy)) == (
        "TooManyRequests",
        3.0,
        "r-1",
        str(error),
    )
    unavailable = GraphTokenUnavailable(0, "TokenEndpointUnavailable", "down")
    assert isinstance(unavailable, GraphAuthError) and isinstance(unavailable, GraphTransient)
    assert unavailable.permanent is False


def test_method_kinds_from_odata_type() -> None:
    phone = AuthenticationMethod.from_graph(
        {
            "@odata.type": "#microsoft.graph.phoneAuthenticationMethod",
            "id": "3179e48a-750b-4051-897c-87b9720928f7",
            "phoneNumber": "+1 2065551234",
            "phoneType": "mobile",
        }
    )
    assert phone.kind is MethodKind.PHONE and phone.kind.collection == "phoneMethods"
    assert phone.detail == "mobile +1 ******1234"
    assert phone.phone_type == "mobile"
    email = AuthenticationMethod.from_graph(
        {
            "@odata.type": "#microsoft.graph.emailAuthenticationMethod",
            "id": "e",
            "emailAddress": "ann.smith@contoso.com",
        }
    )
    assert email.detail == "a********@contoso.com"
    password = AuthenticationMethod.from_graph(
        {"@odata.type": "#microsoft.graph.passwordAuthenticationMethod", "id": "p"}
    )
    assert password.kind is MethodKind.PASSWORD and not password.kind.deletable
    future = AuthenticationMethod.from_graph(
        {"@odata.type": "#microsoft.graph.qrCodePinAuthenticationMethod", "id": "q"}
    )
    assert future.kind is MethodKind.UNKNOWN and not future.kind.deletable


def test_tap_value_never_in_repr_or_str() -> None:
    tap = TemporaryAccessPass.from_graph(
        {
            "id": "t",
            "temporaryAccessPass": "Secret+Pass9",
            "lifetimeInMinutes": 60,
            "isUsableOnce": True,
            "startDateTime": "2026-01-01T10:00:00Z",
        }
    )
    assert tap.pass_value == "Secret+Pass9"
    assert "Secret+Pass9" not in repr(tap)
    assert "Secret+Pass9" not in str(tap)
    assert "Secret+Pass9" not in f"{tap}"


def test_directory_objects_and_assignment_principal() -> None:
    group = DirectoryObject.from_graph(
        {
            "@odata.type": "#microsoft.graph.group",
            "id": "g",
            "displayName": "Admins",
            "isAssignableToRole": True,
        }
    )
    assert isinstance(group, Group) and group.is_assignable_to_role is True
    assignment = RoleAssignment.from_graph(
        {
            "id": "a",
            "roleDefinitionId": "r",
            "principalId": "u",
            "directoryScopeId": "/",
            "principal": {
                "@odata.type": "#microsoft.graph.user",
                "id": "u",
                "userPrincipalName": "u@x",
            },
        }
    )
    assert assignment.principal is not None and assignment.principal.is_user
    bare = RoleAssignment.from_graph({"id": "a", "roleDefinitionId": "r", "principalId": "u"})
    assert bare.principal is None


def test_directory_audit_keeps_raw_read_only() -> None:
    data = {
        "id": "Directory_1",
        "category": "UserManagement",
        "activityDisplayName": "Admin deleted security info",
        "activityDateTime": "2026-02-03T04:05:06.1234567Z",
        "result": "success",
        "correlationId": "corr",
        "initiatedBy": {"app": {"appId": "app-1", "displayName": "Portal"}, "user": None},
        "targetResources": [
            {
                "id": "u1",
                "type": "User",
                "userPrincipalName": "sam@x",
                "modifiedProperties": [{"displayName": "p"}],
            }
        ],
        "additionalDetails": [{"key": "k", "value": "v"}],
    }
    audit = DirectoryAudit.from_graph(data)
    assert audit.activity_date_time == datetime(2026, 2, 3, 4, 5, 6, 123456, tzinfo=UTC)
    assert audit.initiated_by_user is None
    assert audit.initiated_by_app is not None and audit.initiated_by_app.app_id == "app-1"
    assert audit.target_ids == ("u1",)
    assert audit.additional_details == (("k", "v"),)
    assert thaw(audit.raw) == data
    with pytest.raises(TypeError):
        audit.raw["id"] = "changed"  # type: ignore[index]


def test_per_user_mfa_state_and_dates() -> None:
    assert (
        PerUserMfaState.from_graph("u", {"perUserMfaState": "enforced"}).state
        is PerUserMfa.ENFORCED
    )
    odd = PerUserMfaState.from_graph("u", {"perUserMfaState": "unknownFutureValue"})
    assert odd.state is None and odd.raw_state == "unknownFutureValue"
    assert parse_datetime("not a date") is None
    assert parse_datetime("2026-01-01T00:00:00") is None  # no zone: not Graph's format
