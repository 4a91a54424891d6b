"""Authentication methods, Temporary Access Pass, session revocation and per-user MFA.

Pure rules first (no server), then the same behaviour over real HTTPS against the emulator.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from entra_emulator.graph_core import GraphHttpError
from entra_emulator.methods_api import (
    DEFAULT_METHOD_MESSAGE,
    PASSWORD_METHOD_ID,
    PHONE_METHOD_IDS,
    check_delete,
    method_for_preference,
    plan_tap,
    preferred_method_value,
    render_method,
    tap_usability,
)
from entra_emulator.requirements_api import resolve_state
from entra_emulator.seed import CLIENT_ID, PERSONAS
from entra_emulator.seed_security import TAP_POLICY
from tests.emulator.graph_caller import GraphCaller, app_token, delegated_token

NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
PHONE = "#microsoft.graph.phoneAuthenticationMethod"
AUTHENTICATOR = "#microsoft.graph.microsoftAuthenticatorAuthenticationMethod"
PASSWORD = "#microsoft.graph.passwordAuthenticationMethod"
SAM = PERSONAS["sam.standard"]["id"]
AARON = PERSONAS["aaron.agent"]["id"]


def _password() -> dict[str, Any]:
    return {"@odata.type": PASSWORD, "id": PASSWORD_METHOD_ID}


def _phone(kind: str) -> dict[str, Any]:
    return {
        "@odata.type": PHONE,
        "id": PHONE_METHOD_IDS[kind],
        "phoneType": kind,
        "phoneNumber": "+44 7700 900001",
    }


def _authenticator() -> dict[str, Any]:
    return {"@odata.type": AUTHENTICATOR, "id": "a1", "displayName": "iPhone"}


# --- pure rules ---------------------------------------------------------------------------------


def test_default_method_cannot_be_deleted_while_another_remains() -> None:
    methods = [_password(), _phone("mobile"), _authenticator()]
    with pytest.raises(GraphHttpError) as refused:
        check_delete(methods, "a1", "microsoftAuthenticatorMethods", "a1")
    assert (refused.value.status, refused.value.code) == (400, "badRequest")
    assert refused.value.message == DEFAULT_METHOD_MESSAGE
    # The other one first, then the default (the password does not count as "another").
    assert (
        check_delete(methods, "a1", "phoneMethods", PHONE_METHOD_IDS["mobile"])["id"]
        == (PHONE_METHOD_IDS["mobile"])
    )
    assert (
        check_delete([_password(), _authenticator()], "a1", "microsoftAuthenticatorMethods", "a1")[
            "id"
        ]
        == "a1"
    )


def test_mobile_cannot_go_before_alternate_mobile() -> None:
    methods = [_password(), _phone("mobile"), _phone("alternateMobile")]
    with pytest.raises(GraphHttpError) as refused:
        check_delete(methods, None, "phoneMethods", PHONE_METHOD_IDS["mobile"])
    assert refused.value.status == 400
    assert (
        check_delete(methods, None, "phoneMethods", PHONE_METHOD_IDS["alternateMobile"])[
            "phoneType"
        ]
        == "alternateMobile"
    )


def test_password_is_not_deletable_and_missing_methods_are_404() -> None:
    methods = [_password(), _authenticator()]
    with pytest.raises(GraphHttpError) as password:
        check_delete(methods, None, "passwordMethods", PASSWORD_METHOD_ID)
    assert password.value.status == 400
    # Right id, wrong collection: Graph finds nothing there.
    with pytest.raises(GraphHttpError) as missing:
        check_delete(methods, None, "fido2Methods", "a1")
    assert missing.value.status == 404


def test_tap_lifetime_must_respect_the_policy() -> None:
    policy = dict(TAP_POLICY)
    for lifetime in (9, 481, 43200):
        with pytest.raises(GraphHttpError) as refused:
            plan_tap(policy, {"lifetimeInMinutes": lifetime}, NOW)
        assert refused.value.status == 400
    stored = plan_tap(policy, {}, NOW)
    assert stored["lifetimeInMinutes"] == policy["defaultLifetimeInMinutes"]
    assert stored["isUsableOnce"] is False and stored["temporaryAccessPass"] is None
    assert (
        plan_tap(policy, {"lifetimeInMinutes": 480, "isUsableOnce": True}, NOW)["isUsableOnce"]
        is True
    )


def test_tap_policy_can_force_one_time_passes_or_disable_them() -> None:
    one_time = {**TAP_POLICY, "isUsableOnce": True}
    with pytest.raises(GraphHttpError):
        plan_tap(one_time, {"isUsableOnce": False}, NOW)
    assert plan_tap(one_time, {}, NOW)["isUsableOnce"] is True
    with pytest.raises(GraphHttpError):
        plan_tap({**TAP_POLICY, "state": "disabled"}, {}, NOW)
    with pytest.raises(GraphHttpError):
        plan_tap(TAP_POLICY, {"temporaryAccessPass": "chosen"}, NOW)


def test_tap_usability_follows_its_window() -> None:
    start = NOW + timedelta(hours=1)
    method = plan_tap(
        TAP_POLICY, {"startDateTime": start.isoformat(), "lifetimeInMinutes": 60}, NOW
    )
    assert tap_usability(method, NOW) == (False, "NotYetValid")
    assert tap_usability(method, start + timedelta(minutes=1)) == (True, "EnabledByPolicy")
    assert tap_usability(method, start + timedelta(minutes=61)) == (False, "Expired")
    assert render_method(method, NOW)["temporaryAccessPass"] is None


def test_enabled_becomes_enforced_when_the_user_has_mfa_methods() -> None:
    assert resolve_state("enabled", [_password(), _authenticator()]) == "enforced"
    assert resolve_state("enabled", [_password()]) == "enabled"
    assert resolve_state("disabled", [_authenticator()]) == "disabled"
    with pytest.raises(GraphHttpError):
        resolve_state("on", [])


def test_default_method_maps_to_the_sign_in_preference_enum() -> None:
    oath = {"@odata.type": "#microsoft.graph.softwareOathAuthenticationMethod", "id": "o1"}
    fido2 = {"@odata.type": "#microsoft.graph.fido2AuthenticationMethod", "id": "f1"}
    cases = [
        (_authenticator(), False, "push"),
        (oath, False, "oath"),
        (_phone("mobile"), False, "sms"),
        (_phone("mobile"), True, "voiceMobile"),
        (_phone("alternateMobile"), False, "voiceAlternateMobile"),
        (_phone("office"), False, "voiceOffice"),
        (fido2, False, None),  # not a value of userDefaultAuthenticationMethodType
        (None, False, None),
    ]
    for method, voice, expected in cases:
        assert preferred_method_value(method, mobile_voice=voice) == expected, (method, voice)
    methods = [_password(), _phone("mobile"), _phone("office"), _authenticator()]
    assert method_for_preference(methods, "voiceMobile")["phoneType"] == "mobile"
    assert method_for_preference(methods, "voiceOffice")["phoneType"] == "office"
    assert method_for_preference(methods, "push")["id"] == "a1"
    for refused in ("oath", "none", "fido2", 3):
        with pytest.raises(GraphHttpError) as error:
            method_for_preference(methods, refused)
        assert error.value.status == 400


# --- over HTTPS ---------------------------------------------------------------------------------


@pytest.fixture
def server(fresh_tenant: Any) -> Any:
    """A freshly seeded emulator with throttling off (these tests make many report calls)."""
    fresh_tenant.throttle.configure(enabled=False)
    return fresh_tenant


@pytest.fixture
def graph(server: Any) -> GraphCaller:
    return GraphCaller(server, app_token(server))


def _audits(server: Any, activity: str) -> list[dict[str, Any]]:
    return [e for e in server.tenant.audit_events if e["activityDisplayName"] == activity]


def test_list_methods_returns_every_type_with_its_properties(graph: GraphCaller) -> None:
    answer = graph.get(f"/users/{SAM}/authentication/methods")
    assert answer.status_code == 200, answer.text
    methods = {m["@odata.type"]: m for m in answer.json()["value"]}
    assert set(methods) == {PASSWORD, PHONE, AUTHENTICATOR}
    assert methods[PHONE]["id"] == PHONE_METHOD_IDS["mobile"]
    assert methods[PHONE]["phoneType"] == "mobile" and methods[PHONE]["phoneNumber"]
    assert methods[AUTHENTICATOR]["displayName"] and "phoneAppVersion" in methods[AUTHENTICATOR]
    typed = graph.get(f"/users/{SAM}/authentication/phoneMethods").json()["value"]
    assert [m["id"] for m in typed] == [PHONE_METHOD_IDS["mobile"]]


def test_reregistration_deletes_the_default_last_and_audits_each_delete(
    server: Any, graph: GraphCaller
) -> None:
    default = server.tenant.default_method[SAM]
    methods = graph.get(f"/users/{SAM}/authentication/methods").json()["value"]
    authenticator = next(m for m in methods if m["@odata.type"] == AUTHENTICATOR)
    assert default == authenticator["id"]
    before = len(_audits(server, "Admin deleted security info"))

    first = graph.delete(f"/users/{SAM}/authentication/microsoftAuthenticatorMethods/{default}")
    assert first.status_code == 400
    assert first.json()["error"]["message"] == DEFAULT_METHOD_MESSAGE
    assert first.json()["error"]["innerError"]["request-id"]
    phone = graph.delete(f"/users/{SAM}/authentication/phoneMethods/{PHONE_METHOD_IDS['mobile']}")
    assert phone.status_code == 204
    last = graph.delete(f"/users/{SAM}/authentication/microsoftAuthenticatorMethods/{default}")
    assert last.status_code == 204
    again = graph.delete(f"/users/{SAM}/authentication/microsoftAuthenticatorMethods/{default}")
    assert again.status_code == 404

    remaining = graph.get(f"/users/{SAM}/authentication/methods").json()["value"]
    assert [m["@odata.type"] for m in remaining] == [PASSWORD]
    assert SAM not in server.tenant.default_method
    deletes = _audits(server, "Admin deleted security info")[before:]
    assert len(deletes) == 2  # the refused delete wrote nothing
    for event in deletes:
        assert event["initiatedBy"]["app"]["appId"] == CLIENT_ID
        assert event["initiatedBy"]["user"] is None
        assert event["targetResources"][0]["id"] == SAM
        assert event["loggedByService"] == "Authentication Methods"


def test_phone_order_and_password_over_https(server: Any, graph: GraphCaller) -> None:
    with server.tenant.lock:
        server.tenant.methods[SAM] = [_password(), _phone("mobile"), _phone("alternateMobile")]
        server.tenant.default_method.pop(SAM, None)
    base = f"/users/{SAM}/authentication"
    assert graph.delete(f"{base}/phoneMethods/{PHONE_METHOD_IDS['mobile']}").status_code == 400
    assert graph.delete(f"{base}/passwordMethods/{PASSWORD_METHOD_ID}").status_code == 400
    assert (
        graph.delete(f"{base}/phoneMethods/{PHONE_METHOD_IDS['alternateMobile']}").status_code
        == 204
    )
    assert graph.delete(f"{base}/phoneMethods/{PHONE_METHOD_IDS['mobile']}").status_code == 204


def test_tap_is_shown_once_and_replaces_the_previous_one(server: Any, graph: GraphCaller) -> None:
    path = f"/users/{SAM}/authentication/temporaryAccessPassMethods"
    created = graph.post(path, json={"lifetimeInMinutes": 60, "isUsableOnce": True})
    assert created.status_code == 201, created.text
    body = created.json()
    assert len(body["temporaryAccessPass"]) == TAP_POLICY["defaultLength"]
    assert body["isUsable"] is True and body["methodUsabilityReason"] == "EnabledByPolicy"

    listed = graph.get(path).json()["value"]
    assert [m["id"] for m in listed] == [body["id"]]
    assert listed[0]["temporaryAccessPass"] is None
    assert body["temporaryAccessPass"] not in repr(server.tenant.methods[SAM])

    second = graph.post(path, json={})
    assert second.status_code == 201
    listed = graph.get(path).json()["value"]
    assert [m["id"] for m in listed] == [second.json()["id"]]
    assert graph.post(path, json={"lifetimeInMinutes": 5}).status_code == 400
    assert graph.post(path, json={"lifetimeInMinutes": 481}).status_code == 400
    registered = _audits(server, "Admin registered security info")[-2:]
    assert all(e["targetResources"][0]["id"] == SAM for e in registered)
    policy = graph.get(
        "/policies/authenticationMethodsPolicy/authenticationMethodConfigurations/"
        "TemporaryAccessPass"
    ).json()
    assert policy["maximumLifetimeInMinutes"] == TAP_POLICY["maximumLifetimeInMinutes"]


def test_revoke_sign_in_sessions_resets_the_timestamp(server: Any, graph: GraphCaller) -> None:
    before = server.tenant.users[SAM]["signInSessionsValidFromDateTime"]
    answer = graph.post(f"/users/{SAM}/revokeSignInSessions")
    assert answer.status_code == 200
    assert answer.json()["value"] is True
    assert answer.json()["@odata.context"].endswith("$metadata#Edm.Boolean")
    after = server.tenant.users[SAM]["signInSessionsValidFromDateTime"]
    assert after > before
    event = _audits(server, "Update StsRefreshTokenValidFrom Timestamp")[-1]
    assert event["category"] == "UserManagement"
    assert event["targetResources"][0]["modifiedProperties"][0]["newValue"] == f'["{after}"]'
    assert graph.post("/users/no-such-user/revokeSignInSessions").status_code == 404


def test_per_user_mfa_is_beta_only_and_enabled_turns_enforced(
    server: Any, graph: GraphCaller
) -> None:
    path = f"/users/{SAM}/authentication/requirements"
    assert graph.get(path, version="beta").json()["perUserMfaState"] == "disabled"
    assert graph.patch(path, version="beta", json={"perUserMfaState": "enabled"}).status_code == (
        204
    )
    assert graph.get(path, version="beta").json()["perUserMfaState"] == "enforced"
    assert graph.patch(path, version="beta", json={"perUserMfaState": "on"}).status_code == 400
    assert graph.get(path).status_code == 400  # no such segment in v1.0
    # The audit activity reference's per-user MFA row (Authentication Methods).
    event = _audits(server, "Update per-user multifactor authentication state")[-1]
    assert (event["category"], event["loggedByService"]) == (
        "UserManagement",
        "Authentication Methods",
    )
    assert event["targetResources"][0]["id"] == SAM


def test_delegated_calls_are_audited_with_the_signed_in_user(server: Any) -> None:
    token = delegated_token(server, AARON, ["UserAuthenticationMethod.ReadWrite.All"])
    agent = GraphCaller(server, token)
    created = agent.post(f"/users/{SAM}/authentication/temporaryAccessPassMethods", json={})
    assert created.status_code == 201
    event = _audits(server, "Admin registered security info")[-1]
    assert event["initiatedBy"]["user"]["id"] == AARON
    assert event["initiatedBy"]["user"]["userPrincipalName"] == PERSONAS["aaron.agent"]["upn"]
    assert event["initiatedBy"]["app"] is None
    # A delegated token without the scope is refused before anything changes.
    reader = GraphCaller(server, delegated_token(server, AARON, ["User.Read"]))
    assert (
        reader.delete(
            f"/users/{SAM}/authentication/phoneMethods/{PHONE_METHOD_IDS['mobile']}"
        ).status_code
        == 403
    )


def test_sign_in_preferences_follow_the_default_method(server: Any, graph: GraphCaller) -> None:
    path = f"/users/{SAM}/authentication/signInPreferences"
    body = graph.get(path, version="beta").json()
    assert body["@odata.context"].endswith(
        f"$metadata#users('{SAM}')/authentication/signInPreferences"
    )
    assert body["userPreferredMethodForSecondaryAuthentication"] == "push"
    assert body["isSystemPreferredAuthenticationMethodEnabled"] is True
    assert graph.get(path).status_code == 400  # beta only

    # The default moves to the mobile phone, reached by a call: the delete rule follows it.
    assert (
        graph.patch(
            path,
            version="beta",
            json={
                "userPreferredMethodForSecondaryAuthentication": "voiceMobile",
                "isSystemPreferredAuthenticationMethodEnabled": False,
            },
        ).status_code
        == 204
    )
    body = graph.get(path, version="beta").json()
    assert body["userPreferredMethodForSecondaryAuthentication"] == "voiceMobile"
    assert body["isSystemPreferredAuthenticationMethodEnabled"] is False
    assert server.tenant.default_method[SAM] == PHONE_METHOD_IDS["mobile"]
    base = f"/users/{SAM}/authentication"
    assert graph.delete(f"{base}/phoneMethods/{PHONE_METHOD_IDS['mobile']}").status_code == 400
    authenticator = next(
        m["id"] for m in server.tenant.methods[SAM] if m["@odata.type"] == AUTHENTICATOR
    )
    assert graph.delete(f"{base}/microsoftAuthenticatorMethods/{authenticator}").status_code == (
        204
    )
    assert graph.delete(f"{base}/phoneMethods/{PHONE_METHOD_IDS['mobile']}").status_code == 204
    # No default left: null (the beta enum has no "none").
    after = graph.get(path, version="beta").json()
    assert after["userPreferredMethodForSecondaryAuthentication"] is None

    assert (
        graph.patch(
            path, version="beta", json={"userPreferredMethodForSecondaryAuthentication": "push"}
        ).status_code
        == 400
    )
    assert graph.patch(path, version="beta", json={"colour": "blue"}).status_code == 400
    assert (
        graph.get(
            "/users/no-such-user/authentication/signInPreferences", version="beta"
        ).status_code
        == 404
    )
    reader = GraphCaller(server, delegated_token(server, AARON, ["User.Read"]))
    assert reader.get(path, version="beta").status_code == 403


def test_sign_in_preferences_draw_on_the_reports_budget(server: Any, graph: GraphCaller) -> None:
    server.throttle.configure(limits={"reports": (2, 60.0), "identity": (3500, 10.0)}, enabled=True)
    path = f"/users/{SAM}/authentication/signInPreferences"
    assert [graph.get(path, version="beta").status_code for _ in range(3)] == [200, 200, 429]
    # The reports window is spent for the methods list as well, not for users.
    assert graph.get(f"/users/{SAM}/authentication/methods").status_code == 429
    assert graph.get(f"/users/{SAM}").status_code == 200
