"""The default MFA method: beta signInPreferences through the real client, and the pure match of
a preference to a registered method."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import pytest

from graph import BudgetRate, GraphClient, GraphNotFound, methods, requirements
from graph.results import (
    AuthenticationMethod,
    MethodKind,
    PreferredSecondaryMethod,
    SignInPreferences,
)
from portal.graph_client import graph_config_from_settings
from tests.personas import PERSONAS

if TYPE_CHECKING:
    from entra_emulator.server import EmulatorServer

SAM = PERSONAS.standard_target


def _method(
    kind: MethodKind, method_id: str, phone_type: str | None = None
) -> AuthenticationMethod:
    return AuthenticationMethod(
        id=method_id,
        kind=kind,
        odata_type=f"microsoft.graph.{kind.type_name}",
        detail="",
        phone_type=phone_type,
    )


def _prefs(value: str | None) -> SignInPreferences:
    body = {"userPreferredMethodForSecondaryAuthentication": value}
    return SignInPreferences.from_graph("u1", body)


PASSWORD = _method(MethodKind.PASSWORD, "pw")
AUTHENTICATOR = _method(MethodKind.MICROSOFT_AUTHENTICATOR, "app")
MOBILE = _method(MethodKind.PHONE, "mob", "mobile")
ALTERNATE = _method(MethodKind.PHONE, "alt", "alternateMobile")
OFFICE = _method(MethodKind.PHONE, "off", "office")
OATH = _method(MethodKind.SOFTWARE_OATH, "oath")
FIDO2 = _method(MethodKind.FIDO2, "key")
EVERYTHING = [PASSWORD, AUTHENTICATOR, MOBILE, ALTERNATE, OFFICE, OATH, FIDO2]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("push", "app"),
        ("oath", "oath"),
        ("sms", "mob"),
        ("voiceMobile", "mob"),
        ("voiceAlternateMobile", "alt"),
        ("voiceOffice", "off"),
        (None, None),
        ("none", None),  # v1.0's report spelling of "no default"
        ("somethingNew", None),
    ],
)
def test_default_method_id_matches_the_preference(value: str | None, expected: str | None) -> None:
    assert requirements.default_method_id(EVERYTHING, _prefs(value)) == expected


def test_default_method_id_refuses_to_guess() -> None:
    assert requirements.default_method_id(EVERYTHING, None) is None
    # The preference names a kind the user no longer has.
    assert requirements.default_method_id([PASSWORD, AUTHENTICATOR], _prefs("sms")) is None
    # Two Authenticator devices: Graph does not say which one.
    second = _method(MethodKind.MICROSOFT_AUTHENTICATOR, "app2")
    assert requirements.default_method_id([AUTHENTICATOR, second], _prefs("push")) is None
    # A code without an OATH token comes from the Authenticator app.
    assert requirements.default_method_id([PASSWORD, AUTHENTICATOR], _prefs("oath")) == "app"


def test_sign_in_preferences_parse_unknown_values() -> None:
    prefs = SignInPreferences.from_graph(
        "u1",
        {
            "isSystemPreferredAuthenticationMethodEnabled": False,
            "userPreferredMethodForSecondaryAuthentication": "unknownFutureValue",
        },
    )
    assert prefs.system_preferred_enabled is False
    assert prefs.preferred_method is None
    assert prefs.raw_preferred_method == "unknownFutureValue"
    assert _prefs("voiceOffice").preferred_method is PreferredSecondaryMethod.VOICE_OFFICE


def test_sign_in_preferences_from_the_emulator(fresh_tenant: EmulatorServer) -> None:
    fresh_tenant.throttle.configure(limits={"reports": (50, 10.0)})
    config = dataclasses.replace(
        graph_config_from_settings(),
        budgets={"reports": BudgetRate(50, 10), "identity": BudgetRate(3500, 10)},
    )
    client = GraphClient(config)
    prefs = requirements.get_sign_in_preferences(client, SAM.oid)
    assert prefs.preferred_method is PreferredSecondaryMethod.PUSH
    assert prefs.system_preferred_enabled is True
    found = methods.list_methods(client, SAM.oid)
    default = requirements.default_method_id(found, prefs)
    assert default == fresh_tenant.tenant.default_method[SAM.oid]
    assert next(m for m in found if m.id == default).kind is MethodKind.MICROSOFT_AUTHENTICATOR
    with pytest.raises(GraphNotFound):
        requirements.get_sign_in_preferences(client, "00000000-0000-0000-0000-000000000000")
