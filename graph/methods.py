"""Authentication methods: list, delete one, issue a Temporary Access Pass, read the TAP policy.

Every call here draws on the small "identity and access reports" budget (5 per 10 s).
"""

from __future__ import annotations

from datetime import datetime

from graph import odata
from graph.client import GraphClient
from graph.operations import operation
from graph.results import (
    AuthenticationMethod,
    MethodKind,
    TemporaryAccessPass,
    TemporaryAccessPassPolicy,
)

# Graph's own bounds for lifetimeInMinutes; the tenant policy may narrow them.
TAP_MIN_LIFETIME = 10
TAP_MAX_LIFETIME = 43200

_LIST_METHODS = operation(
    "methods.list",
    "GET",
    "/v1.0/users/{user_id}/authentication/methods",
    reference="https://learn.microsoft.com/graph/api/authentication-list-methods",
    paged=True,
)
_DELETE_METHOD = {
    kind: operation(
        f"methods.delete.{kind.collection}",
        "DELETE",
        f"/v1.0/users/{{user_id}}/authentication/{kind.collection}/{{method_id}}",
        reference=reference,
    )
    for kind, reference in (
        (
            MethodKind.PHONE,
            "https://learn.microsoft.com/graph/api/phoneauthenticationmethod-delete",
        ),
        (
            MethodKind.MICROSOFT_AUTHENTICATOR,
            "https://learn.microsoft.com/graph/api/microsoftauthenticatorauthenticationmethod-delete",
        ),
        (
            MethodKind.SOFTWARE_OATH,
            "https://learn.microsoft.com/graph/api/softwareoathauthenticationmethod-delete",
        ),
        (
            MethodKind.FIDO2,
            "https://learn.microsoft.com/graph/api/fido2authenticationmethod-delete",
        ),
        (
            MethodKind.EMAIL,
            "https://learn.microsoft.com/graph/api/emailauthenticationmethod-delete",
        ),
        (
            MethodKind.WINDOWS_HELLO_FOR_BUSINESS,
            "https://learn.microsoft.com/graph/api/windowshelloforbusinessauthenticationmethod-delete",
        ),
        (
            MethodKind.TEMPORARY_ACCESS_PASS,
            "https://learn.microsoft.com/graph/api/temporaryaccesspassauthenticationmethod-delete",
        ),
        (
            MethodKind.PLATFORM_CREDENTIAL,
            "https://learn.microsoft.com/graph/api/platformcredentialauthenticationmethod-delete",
        ),
    )
}
_CREATE_TAP = operation(
    "methods.create_tap",
    "POST",
    "/v1.0/users/{user_id}/authentication/temporaryAccessPassMethods",
    reference="https://learn.microsoft.com/graph/api/authentication-post-temporaryaccesspassmethods",
    body=("startDateTime", "lifetimeInMinutes", "isUsableOnce"),
)
_GET_TAP_POLICY = operation(
    "methods.tap_policy",
    "GET",
    "/v1.0/policies/authenticationMethodsPolicy/authenticationMethodConfigurations/{method}",
    reference="https://learn.microsoft.com/graph/api/temporaryaccesspassauthenticationmethodconfiguration-get",
)


def list_methods(client: GraphClient, user_id: str) -> list[AuthenticationMethod]:
    """Every method the user has registered (the password included)."""
    # Reference: https://learn.microsoft.com/graph/api/authentication-list-methods
    return [
        AuthenticationMethod.from_graph(item)
        for item in client.iterate(_LIST_METHODS, path={"user_id": user_id})
    ]


def delete_method(client: GraphClient, user_id: str, method: AuthenticationMethod) -> None:
    """Delete one method through the collection of its kind (``phoneMethods``, ...).

    Raises ValueError for the password or a kind this client does not know, GraphBadRequest when
    Graph refuses (the default method while others remain), GraphNotFound when it is gone.
    The caller decides the order (GRAPH.md: alternateMobile before mobile, default last).
    """
    # Reference: https://learn.microsoft.com/graph/api/authentication-list-methods
    # (each kind's delete page is named on its operation in _DELETE_METHOD)
    op = _DELETE_METHOD.get(method.kind)
    if op is None:
        raise ValueError(f"a {method.odata_type or 'method of unknown kind'} cannot be deleted")
    client.call(op, path={"user_id": user_id, "method_id": method.id})


def create_temporary_access_pass(
    client: GraphClient,
    user_id: str,
    *,
    lifetime_in_minutes: int,
    is_usable_once: bool,
    start: datetime | None = None,
) -> TemporaryAccessPass:
    """Issue a TAP. The result holds the pass in clear text, once: never log or store it.

    Raises ValueError for a lifetime outside 10..43200 minutes, GraphBadRequest when the tenant
    policy refuses it (or the user already holds one). Not repeated after a lost answer (POST).
    """
    # Reference: https://learn.microsoft.com/graph/api/authentication-post-temporaryaccesspassmethods
    if not TAP_MIN_LIFETIME <= lifetime_in_minutes <= TAP_MAX_LIFETIME:
        raise ValueError(
            f"lifetime_in_minutes must be {TAP_MIN_LIFETIME}..{TAP_MAX_LIFETIME}, "
            f"not {lifetime_in_minutes}"
        )
    body: dict[str, object] = {
        "lifetimeInMinutes": lifetime_in_minutes,
        "isUsableOnce": is_usable_once,
    }
    if start is not None:
        body["startDateTime"] = odata.datetime_literal(start)
    response = client.call(_CREATE_TAP, path={"user_id": user_id}, body=body)
    return TemporaryAccessPass.from_graph(response.data)


def get_tap_policy(client: GraphClient) -> TemporaryAccessPassPolicy:
    """The tenant's Temporary Access Pass policy (enabled state, lifetime and length bounds)."""
    # Reference: https://learn.microsoft.com/graph/api/temporaryaccesspassauthenticationmethodconfiguration-get
    response = client.call(_GET_TAP_POLICY, path={"method": "TemporaryAccessPass"})
    return TemporaryAccessPassPolicy.from_graph(response.data)
