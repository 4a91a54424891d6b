"""A user's authentication methods: list, read, delete, and Temporary Access Pass creation.

Graph calls served here (v1.0, throttling class "reports", i.e. identity and access reports):

- ``GET /users/{id}/authentication/methods`` and ``.../methods/{methodId}``
- ``GET /users/{id}/authentication/{collection}`` and ``.../{collection}/{methodId}`` for every
  typed collection (``phoneMethods``, ``microsoftAuthenticatorMethods``, ``softwareOathMethods``,
  ``fido2Methods``, ``emailMethods``, ``windowsHelloForBusinessMethods``,
  ``temporaryAccessPassMethods``, ``platformCredentialMethods``, ``passwordMethods``)
- ``DELETE /users/{id}/authentication/{collection}/{methodId}`` (not ``passwordMethods``)
- ``POST /users/{id}/authentication/temporaryAccessPassMethods``
- ``GET /policies/authenticationMethodsPolicy/authenticationMethodConfigurations/``
  ``TemporaryAccessPass``
- beta only: ``GET`` / ``PATCH /users/{id}/authentication/signInPreferences`` (the user's default
  MFA method as ``userPreferredMethodForSecondaryAuthentication``, derived from
  ``tenant.default_method``; see ``preferred_method_value``)

Rules Graph enforces and this module reproduces (the pure ``check_*`` / ``plan_*`` functions carry
them so they can be tested without a server):

- the password method cannot be deleted;
- the default sign-in method cannot be deleted while another deletable method remains (400
  ``badRequest`` with Graph's own message); once it is deleted the user has no default;
- ``alternateMobile`` must be deleted before ``mobile``;
- phone method ids are fixed per phone type;
- a new Temporary Access Pass replaces the user's existing one (a user holds at most one); the
  pass is returned in clear in the 201 answer only and never stored.

References: https://learn.microsoft.com/graph/api/resources/authenticationmethods-overview,
https://learn.microsoft.com/graph/api/phoneauthenticationmethod-delete,
https://learn.microsoft.com/graph/api/authentication-post-temporaryaccesspassmethods,
https://learn.microsoft.com/graph/api/resources/temporaryaccesspassauthenticationmethodconfiguration,
https://learn.microsoft.com/graph/api/resources/signinpreferences?view=graph-rest-beta,
https://learn.microsoft.com/graph/api/authentication-get?view=graph-rest-beta
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from werkzeug import Response

from entra_emulator.audit_api import (
    format_timestamp,
    method_deletion_activity,
    record_audit,
    user_target,
)
from entra_emulator.graph_core import (
    GraphContext,
    GraphHttpError,
    collection_response,
    graph_route,
    json_response,
    no_content,
)
from entra_emulator.tenant import Tenant

READ_PERMISSIONS = ("UserAuthenticationMethod.Read.All", "UserAuthenticationMethod.ReadWrite.All")
WRITE_PERMISSIONS = ("UserAuthenticationMethod.ReadWrite.All",)
# Reading the TAP policy: least privileged Policy.Read.AuthenticationMethod, higher
# Policy.ReadWrite.AuthenticationMethod; the page lists no other (Policy.Read.All is not one).
# https://learn.microsoft.com/graph/api/temporaryaccesspassauthenticationmethodconfiguration-get
POLICY_READ_PERMISSIONS = (
    "Policy.Read.AuthenticationMethod",
    "Policy.ReadWrite.AuthenticationMethod",
)

ODATA_PREFIX = "#microsoft.graph."
PHONE_TYPE = ODATA_PREFIX + "phoneAuthenticationMethod"
PASSWORD_TYPE = ODATA_PREFIX + "passwordAuthenticationMethod"
TAP_TYPE = ODATA_PREFIX + "temporaryAccessPassAuthenticationMethod"

# Navigation property of ``authentication`` -> the @odata.type of its members (v1.0 CSDL).
COLLECTION_TYPES: dict[str, str] = {
    "phoneMethods": PHONE_TYPE,
    "microsoftAuthenticatorMethods": ODATA_PREFIX + "microsoftAuthenticatorAuthenticationMethod",
    "softwareOathMethods": ODATA_PREFIX + "softwareOathAuthenticationMethod",
    "fido2Methods": ODATA_PREFIX + "fido2AuthenticationMethod",
    "emailMethods": ODATA_PREFIX + "emailAuthenticationMethod",
    "windowsHelloForBusinessMethods": ODATA_PREFIX + "windowsHelloForBusinessAuthenticationMethod",
    "temporaryAccessPassMethods": TAP_TYPE,
    "platformCredentialMethods": ODATA_PREFIX + "platformCredentialAuthenticationMethod",
    "passwordMethods": PASSWORD_TYPE,
}
_COLLECTION_PATTERN = "|".join(COLLECTION_TYPES)

# Fixed ids Entra gives these methods in every tenant.
PHONE_METHOD_IDS: dict[str, str] = {
    "mobile": "3179e48a-750b-4051-897c-87b9720928f7",
    "alternateMobile": "b6332ec1-7057-4abe-9331-3d72feddfe41",
    "office": "e37fc753-ff3b-4958-9484-eaa9425c82bc",
}
PASSWORD_METHOD_ID = "28c10230-6103-485e-b985-444c60001490"
EMAIL_METHOD_ID = "3ddfcfc8-9383-446f-83cc-3ab9be4be18f"

# Method types that satisfy an MFA prompt (email and TAP do not count; password is the first
# factor). Used by per-user MFA: "enabled" becomes "enforced" once one of these is registered.
MFA_METHOD_TYPES = frozenset(
    {
        PHONE_TYPE,
        ODATA_PREFIX + "microsoftAuthenticatorAuthenticationMethod",
        ODATA_PREFIX + "softwareOathAuthenticationMethod",
        ODATA_PREFIX + "fido2AuthenticationMethod",
        ODATA_PREFIX + "windowsHelloForBusinessAuthenticationMethod",
        ODATA_PREFIX + "platformCredentialAuthenticationMethod",
    }
)

# Wording for audit resultReason, close to what Entra writes ("Admin deleted ... for user").
_METHOD_LABELS: dict[str, str] = {
    ODATA_PREFIX + "microsoftAuthenticatorAuthenticationMethod": "Authenticator App",
    ODATA_PREFIX + "softwareOathAuthenticationMethod": "Software OATH token",
    ODATA_PREFIX + "fido2AuthenticationMethod": "FIDO2 security key",
    ODATA_PREFIX + "emailAuthenticationMethod": "Email",
    ODATA_PREFIX + "windowsHelloForBusinessAuthenticationMethod": "Windows Hello for Business",
    TAP_TYPE: "temporary access pass",
    ODATA_PREFIX + "platformCredentialAuthenticationMethod": "Platform Credential",
}
_PHONE_LABELS = {
    "mobile": "Mobile Phone",
    "alternateMobile": "Alternate Mobile Phone",
    "office": "Office Phone",
}

DEFAULT_METHOD_MESSAGE = (
    "Cannot delete default method with other methods configured. "
    "Please change default method before deletion."
)

# userDefaultAuthenticationMethodType (beta signInPreferences): the values for a mobile phone
# depend on how it is used (text or call); the other kinds have one value each. FIDO2, Windows
# Hello, platform credentials, email and TAP have none: Entra cannot hold them as the default
# second factor, so a default of those kinds is answered as null.
_PHONE_PREFERENCES = {"alternateMobile": "voiceAlternateMobile", "office": "voiceOffice"}
_KIND_PREFERENCES = {
    ODATA_PREFIX + "microsoftAuthenticatorAuthenticationMethod": "push",
    ODATA_PREFIX + "softwareOathAuthenticationMethod": "oath",
}
PREFERRED_METHOD_VALUES = (
    "push",
    "oath",
    "voiceMobile",
    "voiceAlternateMobile",
    "voiceOffice",
    "sms",
)
_SIGN_IN_PREFERENCE_PROPERTIES = frozenset(
    {
        "@odata.type",
        "isSystemPreferredAuthenticationMethodEnabled",
        "userPreferredMethodForSecondaryAuthentication",
    }
)

# Characters of a generated pass: letters, digits and a few symbols, as Entra's passes have.
_TAP_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789+=%#@$&*!?"
_TAP_CREATE_PROPERTIES = frozenset(
    {"@odata.type", "startDateTime", "lifetimeInMinutes", "isUsableOnce"}
)


def method_label(method: Mapping[str, Any]) -> str:
    """Human wording of a method for audit reasons ("Mobile Phone", "Authenticator App", ...)."""
    kind = str(method["@odata.type"])
    if kind == PHONE_TYPE:
        return _PHONE_LABELS.get(str(method.get("phoneType", "")), "Phone")
    return _METHOD_LABELS.get(kind, kind.removeprefix(ODATA_PREFIX))


def is_deletable(method: Mapping[str, Any]) -> bool:
    """Every method but the password can be deleted through Graph."""
    return bool(method["@odata.type"] != PASSWORD_TYPE)


def not_found(resource_id: str) -> GraphHttpError:
    """Graph's 404 for a directory object that does not exist."""
    return GraphHttpError(
        404,
        "Request_ResourceNotFound",
        f"Resource '{resource_id}' does not exist or one of its queried reference-property "
        "objects are not present.",
    )


def require_user(tenant: Tenant, id_or_upn: str) -> dict[str, Any]:
    """The user named by object id or UPN; raises Graph's 404 when there is none."""
    user = tenant.find_user(id_or_upn)
    if user is None:
        raise not_found(id_or_upn)
    return user


# --- pure rules ---------------------------------------------------------------------------------


def tap_usability(method: Mapping[str, Any], now: datetime) -> tuple[bool, str]:
    """``(isUsable, methodUsabilityReason)`` of a stored Temporary Access Pass at ``now``."""
    start = datetime.fromisoformat(method["startDateTime"].replace("Z", "+00:00"))
    end = start + timedelta(minutes=int(method["lifetimeInMinutes"]))
    if now < start:
        return False, "NotYetValid"
    if now >= end:
        return False, "Expired"
    if method.get("_used") and method.get("isUsableOnce"):
        return False, "OneTimeUsed"
    return True, "EnabledByPolicy"


def render_method(method: Mapping[str, Any], now: datetime) -> dict[str, Any]:
    """The Graph JSON of a stored method: private keys dropped, TAP state computed for ``now``.

    A stored pass never holds its clear text, so ``temporaryAccessPass`` is always null here.
    """
    body = {key: value for key, value in method.items() if not key.startswith("_")}
    if method["@odata.type"] == TAP_TYPE:
        body["isUsable"], body["methodUsabilityReason"] = tap_usability(method, now)
        body["temporaryAccessPass"] = None
    return body


def check_delete(
    methods: list[dict[str, Any]], default_method_id: str | None, collection: str, method_id: str
) -> dict[str, Any]:
    """Return the method a DELETE on ``{collection}/{method_id}`` removes, or raise as Graph does.

    Raises GraphHttpError: 400 for the password method, for ``mobile`` while ``alternateMobile``
    exists, and for the default method while other deletable methods remain; 404 when the
    collection holds no such method.
    """
    expected_type = COLLECTION_TYPES[collection]
    if expected_type == PASSWORD_TYPE:
        raise GraphHttpError(
            400, "badRequest", "The password authentication method cannot be deleted."
        )
    target = next(
        (m for m in methods if m["id"] == method_id and m["@odata.type"] == expected_type), None
    )
    if target is None:
        raise GraphHttpError(
            404, "itemNotFound", f"The authentication method '{method_id}' was not found."
        )
    if (
        expected_type == PHONE_TYPE
        and target.get("phoneType") == "mobile"
        and any(
            m["@odata.type"] == PHONE_TYPE and m.get("phoneType") == "alternateMobile"
            for m in methods
        )
    ):
        raise GraphHttpError(
            400,
            "badRequest",
            "A user can't have an alternateMobile number without a mobile number. "
            "Delete the alternateMobile number before the mobile number.",
        )
    others = [m for m in methods if m is not target and is_deletable(m)]
    if method_id == default_method_id and others:
        raise GraphHttpError(400, "badRequest", DEFAULT_METHOD_MESSAGE)
    return target


def preferred_method_value(method: Mapping[str, Any] | None, *, mobile_voice: bool) -> str | None:
    """``userPreferredMethodForSecondaryAuthentication`` for a user whose default is ``method``.

    Authenticator -> ``push``, software OATH -> ``oath``, mobile phone -> ``sms`` (``voiceMobile``
    when ``mobile_voice``), alternate mobile -> ``voiceAlternateMobile``, office ->
    ``voiceOffice``. None (JSON null) when there is no default or it has no value in the enum:
    the beta type ``userDefaultAuthenticationMethodType`` has no ``none`` member (only v1.0's
    report type ``userDefaultAuthenticationMethod`` does).
    """
    if method is None:
        return None
    kind = str(method["@odata.type"])
    if kind == PHONE_TYPE:
        phone_type = str(method.get("phoneType", ""))
        if phone_type == "mobile":
            return "voiceMobile" if mobile_voice else "sms"
        return _PHONE_PREFERENCES.get(phone_type)
    return _KIND_PREFERENCES.get(kind)


def method_for_preference(methods: list[dict[str, Any]], value: Any) -> dict[str, Any]:
    """The registered method a PATCH of ``userPreferredMethodForSecondaryAuthentication`` to
    ``value`` makes the default; raises GraphHttpError(400) for an unknown value or when the user
    has no method of that kind (Entra refuses a default the user cannot use)."""
    if not isinstance(value, str) or value not in PREFERRED_METHOD_VALUES:
        raise GraphHttpError(
            400,
            "badRequest",
            f"Invalid value '{value}' for userPreferredMethodForSecondaryAuthentication.",
        )
    for method in methods:
        # The mobile phone serves both sms and voiceMobile; compare with either reading of it.
        if value in {
            preferred_method_value(method, mobile_voice=False),
            preferred_method_value(method, mobile_voice=True),
        }:
            return method
    raise GraphHttpError(
        400,
        "badRequest",
        f"The user has no registered method that can be used as '{value}'.",
    )


def plan_tap(policy: Mapping[str, Any], body: Mapping[str, Any], now: datetime) -> dict[str, Any]:
    """Validate a TAP create body against the tenant policy; return the method to store.

    The returned dict is the stored method (no clear pass). Raises GraphHttpError(400) when the
    policy is disabled, a property is unknown or mistyped, the lifetime is outside the policy's
    [minimumLifetimeInMinutes, maximumLifetimeInMinutes], or a multi-use pass is asked for while
    the policy forces one-time passes.
    """
    if policy.get("state") != "enabled":
        raise GraphHttpError(
            400,
            "badRequest",
            "Temporary Access Pass is disabled by the authentication methods policy of the tenant.",
        )
    unknown = sorted(set(body) - _TAP_CREATE_PROPERTIES)
    if unknown:
        raise GraphHttpError(
            400, "badRequest", f"Invalid property '{unknown[0]}' in the request body."
        )
    minimum = int(policy["minimumLifetimeInMinutes"])
    maximum = int(policy["maximumLifetimeInMinutes"])
    lifetime = body.get("lifetimeInMinutes", policy["defaultLifetimeInMinutes"])
    if isinstance(lifetime, bool) or not isinstance(lifetime, int):
        raise GraphHttpError(400, "badRequest", "lifetimeInMinutes must be an integer.")
    if not minimum <= lifetime <= maximum:
        raise GraphHttpError(
            400,
            "badRequest",
            f"The lifetime of the Temporary Access Pass must be between {minimum} and {maximum} "
            "minutes, as set by the Temporary Access Pass policy.",
        )
    usable_once = body.get("isUsableOnce", bool(policy.get("isUsableOnce", False)))
    if not isinstance(usable_once, bool):
        raise GraphHttpError(400, "badRequest", "isUsableOnce must be a boolean.")
    if policy.get("isUsableOnce") and not usable_once:
        raise GraphHttpError(
            400,
            "badRequest",
            "The Temporary Access Pass policy only allows one-time use passes "
            "(isUsableOnce must be true).",
        )
    raw_start = body.get("startDateTime")
    if raw_start is None:
        start = now
    else:
        try:
            start = datetime.fromisoformat(str(raw_start).replace("Z", "+00:00"))
        except ValueError as exc:
            raise GraphHttpError(
                400, "badRequest", f"Invalid startDateTime '{raw_start}'."
            ) from exc
        if start.tzinfo is None:
            start = start.replace(tzinfo=UTC)
    return {
        "@odata.type": TAP_TYPE,
        "id": str(uuid.uuid4()),
        "createdDateTime": format_timestamp(now),
        "startDateTime": format_timestamp(start),
        "lifetimeInMinutes": lifetime,
        "isUsableOnce": usable_once,
        "temporaryAccessPass": None,
    }


def generate_pass(length: int) -> str:
    """A fresh random pass of ``length`` characters (the policy's defaultLength, 8..48)."""
    return "".join(secrets.choice(_TAP_ALPHABET) for _ in range(max(8, min(48, length))))


# --- read-after-write lag of deletions (Tenant.propagation.method_deletion_seconds) -------------
#
# Entra's directory is eventually consistent: "A successful write to Microsoft Entra does not
# guarantee that an immediate read will reflect that change" (Microsoft's identity blog,
# https://devblogs.microsoft.com/identity/designing-for-eventual-consistency-for-microsoft-entra/;
# the authentication methods pages give no bound). With the delay on, a deleted method goes on
# being listed (and read by id) for that long; writes see the truth at once, so deleting it again
# is 404 (docs silent on the answer of a second delete). Kept beside the tenant, keyed by its
# identity: the Tenant's fields are fixed, and a deleted method is no longer the user's.
_DELETED_STILL_LISTED: dict[int, dict[str, list[tuple[dict[str, Any], float]]]] = {}


def forget_deleted(tenant: Tenant) -> None:
    """Drop what reads still show of deleted methods (the tenant was re-seeded: its deletions
    belong to the directory that was replaced, and a seeded method with the same id is new)."""
    _DELETED_STILL_LISTED.pop(id(tenant), None)


def _still_listed(tenant: Tenant, user_id: str, now: datetime) -> list[dict[str, Any]]:
    """The user's deleted methods that reads still show at ``now`` (caller holds the lock)."""
    per_user = _DELETED_STILL_LISTED.get(id(tenant))
    if not per_user or user_id not in per_user:
        return []
    kept = [(m, until) for m, until in per_user[user_id] if until > now.timestamp()]
    per_user[user_id] = kept
    if tenant.propagation.method_deletion_seconds <= 0:
        return []
    return [m for m, _until in kept]


def _remember_deleted(tenant: Tenant, user_id: str, method: dict[str, Any], now: datetime) -> None:
    seconds = tenant.propagation.method_deletion_seconds
    if seconds > 0:
        _DELETED_STILL_LISTED.setdefault(id(tenant), {}).setdefault(user_id, []).append(
            (dict(method), now.timestamp() + seconds)
        )


def _methods_read(tenant: Tenant, user_id: str, now: datetime) -> list[dict[str, Any]]:
    """What reads list for the user at ``now``: the methods, and those deleted but still shown."""
    return [*tenant.methods.get(user_id, []), *_still_listed(tenant, user_id, now)]


def _self_service(ctx: GraphContext, user_id: str) -> bool:
    """A delegated caller acting on their own methods (Entra then says "User ..." not "Admin")."""
    return not ctx.token.is_app and ctx.token.oid == user_id


# --- routes -------------------------------------------------------------------------------------


def _context(user_id: str, tail: str) -> str:
    return f"users('{user_id}')/authentication/{tail}"


@graph_route(
    "GET",
    r"/users/(?P<user_id>[^/]+)/authentication/methods",
    throttle_class="reports",
    permissions=READ_PERMISSIONS,
)
def list_methods(ctx: GraphContext) -> Response:
    """Every registered method of the user, each with its ``@odata.type``."""
    user = require_user(ctx.tenant, ctx.params["user_id"])
    now = ctx.now()
    with ctx.tenant.lock:
        items = [render_method(m, now) for m in _methods_read(ctx.tenant, user["id"], now)]
    return collection_response(ctx, items, context=_context(ctx.params["user_id"], "methods"))


@graph_route(
    "GET",
    r"/users/(?P<user_id>[^/]+)/authentication/methods/(?P<method_id>[^/]+)",
    throttle_class="reports",
    permissions=READ_PERMISSIONS,
)
def get_method(ctx: GraphContext) -> Response:
    """One method of any type by id."""
    user = require_user(ctx.tenant, ctx.params["user_id"])
    method_id = ctx.params["method_id"]
    with ctx.tenant.lock:
        found = next(
            (m for m in _methods_read(ctx.tenant, user["id"], ctx.now()) if m["id"] == method_id),
            None,
        )
        if found is None:
            raise GraphHttpError(
                404, "itemNotFound", f"The authentication method '{method_id}' was not found."
            )
        body = render_method(found, ctx.now())
    context = ctx.context_url(_context(ctx.params["user_id"], "methods/$entity"))
    return json_response(ctx, {"@odata.context": context, **body})


@graph_route(
    "GET",
    rf"/users/(?P<user_id>[^/]+)/authentication/(?P<collection>{_COLLECTION_PATTERN})",
    throttle_class="reports",
    permissions=READ_PERMISSIONS,
)
def list_typed_methods(ctx: GraphContext) -> Response:
    """The user's methods of one type (``phoneMethods``, ``fido2Methods``, ...)."""
    user = require_user(ctx.tenant, ctx.params["user_id"])
    collection = ctx.params["collection"]
    wanted = COLLECTION_TYPES[collection]
    now = ctx.now()
    with ctx.tenant.lock:
        items = [
            render_method(m, now)
            for m in _methods_read(ctx.tenant, user["id"], now)
            if m["@odata.type"] == wanted
        ]
    # A typed collection's members carry no @odata.type in Graph: the context names the type.
    for item in items:
        item.pop("@odata.type", None)
    return collection_response(ctx, items, context=_context(ctx.params["user_id"], collection))


@graph_route(
    "GET",
    rf"/users/(?P<user_id>[^/]+)/authentication/(?P<collection>{_COLLECTION_PATTERN})"
    r"/(?P<method_id>[^/]+)",
    throttle_class="reports",
    permissions=READ_PERMISSIONS,
)
def get_typed_method(ctx: GraphContext) -> Response:
    """One method of one type; 404 when the user has no such method of that type."""
    user = require_user(ctx.tenant, ctx.params["user_id"])
    collection, method_id = ctx.params["collection"], ctx.params["method_id"]
    wanted = COLLECTION_TYPES[collection]
    with ctx.tenant.lock:
        found = next(
            (
                m
                for m in _methods_read(ctx.tenant, user["id"], ctx.now())
                if m["id"] == method_id and m["@odata.type"] == wanted
            ),
            None,
        )
        if found is None:
            raise GraphHttpError(
                404, "itemNotFound", f"The authentication method '{method_id}' was not found."
            )
        body = render_method(found, ctx.now())
    body.pop("@odata.type", None)
    context = ctx.context_url(_context(ctx.params["user_id"], f"{collection}/$entity"))
    return json_response(ctx, {"@odata.context": context, **body})


@graph_route(
    "DELETE",
    rf"/users/(?P<user_id>[^/]+)/authentication/(?P<collection>{_COLLECTION_PATTERN})"
    r"/(?P<method_id>[^/]+)",
    throttle_class="reports",
    permissions=WRITE_PERMISSIONS,
)
def delete_method(ctx: GraphContext) -> Response:
    """Delete one method (rules in ``check_delete``); 204, and one audit event, on success."""
    user = require_user(ctx.tenant, ctx.params["user_id"])
    user_id = user["id"]
    with ctx.tenant.lock:
        methods = ctx.tenant.methods.get(user_id, [])
        target = check_delete(
            methods,
            ctx.tenant.default_method.get(user_id),
            ctx.params["collection"],
            ctx.params["method_id"],
        )
        ctx.tenant.methods[user_id] = [m for m in methods if m is not target]
        _remember_deleted(ctx.tenant, user_id, target, ctx.now())
        if ctx.tenant.default_method.get(user_id) == target["id"]:
            del ctx.tenant.default_method[user_id]
            ctx.tenant.default_mobile_voice.discard(user_id)
    who = "User" if _self_service(ctx, user_id) else "Admin"
    # The reference's name and service for this method's deletion (audit_api explains).
    activity, service = method_deletion_activity(str(target["@odata.type"]), who)
    record_audit(
        ctx,
        category="UserManagement",
        activity=activity,
        target_resources=[user_target(user)],
        result_reason=f"{who} deleted {method_label(target)} for user",
        logged_by_service=service,
    )
    return no_content(ctx)


@graph_route(
    "POST",
    r"/users/(?P<user_id>[^/]+)/authentication/temporaryAccessPassMethods",
    throttle_class="reports",
    permissions=WRITE_PERMISSIONS,
)
def create_temporary_access_pass(ctx: GraphContext) -> Response:
    """Create a TAP; 201 with the pass in clear, which is not kept anywhere afterwards.

    A pass the user already holds is deleted first: Graph documents that a new pass replaces
    the current one, so a user never holds two.
    """
    user = require_user(ctx.tenant, ctx.params["user_id"])
    body = ctx.json()
    now = ctx.now()
    with ctx.tenant.lock:
        method = plan_tap(ctx.tenant.tap_policy, body, now)
        clear = generate_pass(int(ctx.tenant.tap_policy.get("defaultLength", 8)))
        kept = [m for m in ctx.tenant.methods.get(user["id"], []) if m["@odata.type"] != TAP_TYPE]
        ctx.tenant.methods[user["id"]] = [*kept, method]
        answer = render_method(method, now)
    answer["temporaryAccessPass"] = clear
    who = "User" if _self_service(ctx, user["id"]) else "Admin"
    record_audit(
        ctx,
        category="UserManagement",
        activity=f"{who} registered security info",
        target_resources=[user_target(user)],
        result_reason=f"{who} registered temporary access pass method for user",
        logged_by_service="Authentication Methods",
    )
    context = ctx.context_url(_context(ctx.params["user_id"], "temporaryAccessPassMethods/$entity"))
    return json_response(ctx, {"@odata.context": context, **answer}, status=201)


_SIGN_IN_PREFERENCES_PATH = r"/users/(?P<user_id>[^/]+)/authentication/signInPreferences"


def _sign_in_preferences(tenant: Tenant, user_id: str) -> dict[str, Any]:
    """The signInPreferences of ``user_id`` from the tenant state; the caller holds the lock."""
    default_id = tenant.default_method.get(user_id)
    default = next((m for m in tenant.methods.get(user_id, []) if m["id"] == default_id), None)
    return {
        "isSystemPreferredAuthenticationMethodEnabled": tenant.system_preferred_mfa.get(
            user_id, True
        ),
        "userPreferredMethodForSecondaryAuthentication": preferred_method_value(
            default, mobile_voice=user_id in tenant.default_mobile_voice
        ),
    }


@graph_route(
    "GET",
    _SIGN_IN_PREFERENCES_PATH,
    throttle_class="reports",
    permissions=READ_PERMISSIONS,
    versions=("beta",),
)
def get_sign_in_preferences(ctx: GraphContext) -> Response:
    """The user's signInPreferences (beta): system-preferred MFA and the default method."""
    user = require_user(ctx.tenant, ctx.params["user_id"])
    with ctx.tenant.lock:
        body = _sign_in_preferences(ctx.tenant, user["id"])
    context = ctx.context_url(_context(ctx.params["user_id"], "signInPreferences"))
    return json_response(ctx, {"@odata.context": context, **body})


@graph_route(
    "PATCH",
    _SIGN_IN_PREFERENCES_PATH,
    throttle_class="reports",
    permissions=WRITE_PERMISSIONS,
    versions=("beta",),
)
def update_sign_in_preferences(ctx: GraphContext) -> Response:
    """Change the default method and/or system-preferred MFA; 204.

    No Entra audit event is written: the activity Entra records for an admin changing a user's
    default method is not documented, and inventing one would mislead the audit tests.
    """
    user = require_user(ctx.tenant, ctx.params["user_id"])
    body = ctx.json()
    unknown = sorted(set(body) - _SIGN_IN_PREFERENCE_PROPERTIES)
    if unknown:
        raise GraphHttpError(400, "badRequest", f"Invalid property '{unknown[0]}'.")
    system = body.get("isSystemPreferredAuthenticationMethodEnabled")
    if system is not None and not isinstance(system, bool):
        raise GraphHttpError(
            400, "badRequest", "isSystemPreferredAuthenticationMethodEnabled must be a boolean."
        )
    user_id = user["id"]
    with ctx.tenant.lock:
        if "userPreferredMethodForSecondaryAuthentication" in body:
            value = body["userPreferredMethodForSecondaryAuthentication"]
            method = method_for_preference(ctx.tenant.methods.get(user_id, []), value)
            ctx.tenant.default_method[user_id] = str(method["id"])
            if value == "voiceMobile":
                ctx.tenant.default_mobile_voice.add(user_id)
            else:
                ctx.tenant.default_mobile_voice.discard(user_id)
        if system is not None:
            ctx.tenant.system_preferred_mfa[user_id] = system
    return no_content(ctx)


@graph_route(
    "GET",
    r"/policies/authenticationMethodsPolicy/authenticationMethodConfigurations/"
    r"TemporaryAccessPass",
    throttle_class="identity",
    permissions=POLICY_READ_PERMISSIONS,
)
def get_tap_policy(ctx: GraphContext) -> Response:
    """The tenant's temporaryAccessPassAuthenticationMethodConfiguration."""
    with ctx.tenant.lock:
        policy = dict(ctx.tenant.tap_policy)
    context = ctx.context_url(
        "policies/authenticationMethodsPolicy/authenticationMethodConfigurations/$entity"
    )
    return json_response(ctx, {"@odata.context": context, **policy})
