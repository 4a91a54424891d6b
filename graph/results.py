"""Typed results of Graph calls: frozen dataclasses built from Graph's JSON.

Public functions of this package return these, never raw dicts. Each ``from_graph`` classmethod
reads only the properties it knows and tolerates missing ones (Graph omits nulls in some answers).
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Any, Generic, TypeVar

T = TypeVar("T")

_FRACTION = re.compile(r"\.(\d{7,})")


def parse_datetime(value: Any) -> datetime | None:
    """A Graph DateTimeOffset (``2026-01-01T10:00:00.1234567Z``) as an aware datetime, or None."""
    if not isinstance(value, str) or not value:
        return None
    # Graph writes up to seven fractional digits; Python reads at most six.
    text = _FRACTION.sub(lambda m: "." + m.group(1)[:6], value)
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None


def _str(data: Mapping[str, Any], key: str) -> str:
    value = data.get(key)
    return str(value) if value is not None else ""


def _opt_str(data: Mapping[str, Any], key: str) -> str | None:
    value = data.get(key)
    return str(value) if value is not None else None


def _opt_bool(data: Mapping[str, Any], key: str) -> bool | None:
    value = data.get(key)
    return value if isinstance(value, bool) else None


def _opt_int(data: Mapping[str, Any], key: str) -> int | None:
    value = data.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _str_tuple(data: Mapping[str, Any], key: str) -> tuple[str, ...]:
    value = data.get(key)
    if not isinstance(value, list):
        return ()
    return tuple(str(item) for item in value if item is not None)


def _frozen(value: Any) -> Any:
    """A read-only deep copy of JSON, so a frozen dataclass cannot be changed through it."""
    if isinstance(value, Mapping):
        return MappingProxyType({str(k): _frozen(v) for k, v in value.items()})
    if isinstance(value, list | tuple):
        return tuple(_frozen(v) for v in value)
    return value


def thaw(value: Any) -> Any:
    """Plain JSON (dicts and lists) again from a value made by ``_frozen``: for storage."""
    if isinstance(value, Mapping):
        return {k: thaw(v) for k, v in value.items()}
    if isinstance(value, tuple | list):
        return [thaw(v) for v in value]
    return value


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of a collection. ``next_link`` is Graph's ``@odata.nextLink``, to follow verbatim;
    ``count`` is ``@odata.count`` when the request asked for it."""

    items: tuple[T, ...]
    next_link: str | None = None
    count: int | None = None


# --- directory objects --------------------------------------------------------------------------


@dataclass(frozen=True)
class User:
    """A user as the portal needs it (see ``graph.users.USER_SELECT``)."""

    id: str
    display_name: str
    user_principal_name: str
    mail: str | None = None
    job_title: str | None = None
    department: str | None = None
    account_enabled: bool | None = None
    user_type: str | None = None
    other_mails: tuple[str, ...] = ()
    sign_in_sessions_valid_from: datetime | None = None

    @classmethod
    def from_graph(cls, data: Mapping[str, Any]) -> User:
        return cls(
            id=_str(data, "id"),
            display_name=_str(data, "displayName"),
            user_principal_name=_str(data, "userPrincipalName"),
            mail=_opt_str(data, "mail"),
            job_title=_opt_str(data, "jobTitle"),
            department=_opt_str(data, "department"),
            account_enabled=_opt_bool(data, "accountEnabled"),
            user_type=_opt_str(data, "userType"),
            other_mails=_str_tuple(data, "otherMails"),
            sign_in_sessions_valid_from=parse_datetime(data.get("signInSessionsValidFromDateTime")),
        )

    @property
    def is_guest(self) -> bool:
        return self.user_type == "Guest" or "#EXT#" in self.user_principal_name


@dataclass(frozen=True)
class DirectoryObject:
    """Any directory object (user, group, directoryRole, administrativeUnit, servicePrincipal).

    ``odata_type`` is Graph's ``@odata.type`` without the leading ``#`` (``microsoft.graph.user``).
    """

    id: str
    odata_type: str
    display_name: str | None = None
    user_principal_name: str | None = None
    role_template_id: str | None = None

    @classmethod
    def from_graph(cls, data: Mapping[str, Any]) -> DirectoryObject:
        odata_type = _str(data, "@odata.type").lstrip("#")
        if odata_type == "microsoft.graph.group":
            return Group.from_graph(data)
        return cls(
            id=_str(data, "id"),
            odata_type=odata_type,
            display_name=_opt_str(data, "displayName"),
            user_principal_name=_opt_str(data, "userPrincipalName"),
            # directoryRole objects (in transitiveMemberOf) name their role by template id.
            role_template_id=_opt_str(data, "roleTemplateId"),
        )

    @property
    def is_user(self) -> bool:
        return self.odata_type == "microsoft.graph.user"

    @property
    def is_group(self) -> bool:
        return self.odata_type == "microsoft.graph.group"

    @property
    def is_directory_role(self) -> bool:
        return self.odata_type == "microsoft.graph.directoryRole"


@dataclass(frozen=True)
class Group(DirectoryObject):
    """A group; ``is_assignable_to_role`` marks the role-assignable groups that can hold roles."""

    is_assignable_to_role: bool | None = None
    security_enabled: bool | None = None
    mail_enabled: bool | None = None

    @classmethod
    def from_graph(cls, data: Mapping[str, Any]) -> Group:
        return cls(
            id=_str(data, "id"),
            odata_type="microsoft.graph.group",
            display_name=_opt_str(data, "displayName"),
            is_assignable_to_role=_opt_bool(data, "isAssignableToRole"),
            security_enabled=_opt_bool(data, "securityEnabled"),
            mail_enabled=_opt_bool(data, "mailEnabled"),
        )


# --- authentication methods ---------------------------------------------------------------------


class MethodKind(enum.Enum):
    """The kind of an authentication method, from its ``@odata.type``.

    ``collection`` is the navigation property under ``/users/{id}/authentication`` that holds
    methods of this kind (None where the method cannot be deleted through Graph).
    """

    PHONE = ("phoneAuthenticationMethod", "phoneMethods")
    MICROSOFT_AUTHENTICATOR = (
        "microsoftAuthenticatorAuthenticationMethod",
        "microsoftAuthenticatorMethods",
    )
    SOFTWARE_OATH = ("softwareOathAuthenticationMethod", "softwareOathMethods")
    FIDO2 = ("fido2AuthenticationMethod", "fido2Methods")
    EMAIL = ("emailAuthenticationMethod", "emailMethods")
    WINDOWS_HELLO_FOR_BUSINESS = (
        "windowsHelloForBusinessAuthenticationMethod",
        "windowsHelloForBusinessMethods",
    )
    TEMPORARY_ACCESS_PASS = (
        "temporaryAccessPassAuthenticationMethod",
        "temporaryAccessPassMethods",
    )
    PLATFORM_CREDENTIAL = ("platformCredentialAuthenticationMethod", "platformCredentialMethods")
    PASSWORD = ("passwordAuthenticationMethod", None)
    UNKNOWN = ("", None)

    def __init__(self, type_name: str, collection: str | None) -> None:
        self.type_name = type_name
        self.collection = collection

    @classmethod
    def from_odata_type(cls, odata_type: str) -> MethodKind:
        name = odata_type.lstrip("#").removeprefix("microsoft.graph.")
        for kind in cls:
            if kind.type_name and kind.type_name == name:
                return kind
        return cls.UNKNOWN

    @property
    def deletable(self) -> bool:
        """Whether Graph can delete methods of this kind (never the password)."""
        return self.collection is not None


def mask_phone(number: str) -> str:
    """``+1 2065551234`` becomes ``+1 ******1234``: enough for a caller to recognise it."""
    digits = [i for i, c in enumerate(number) if c.isdigit()]
    keep = set(digits[-4:])
    # Keep the country code (the digits before the first space) readable as well.
    if " " in number and number.startswith("+"):
        keep.update(i for i in digits if i < number.index(" "))
    return "".join(c if (not c.isdigit() or i in keep) else "*" for i, c in enumerate(number))


def mask_email(address: str) -> str:
    """``ann.smith@contoso.com`` becomes ``a*******@contoso.com``."""
    local, at, domain = address.partition("@")
    if not at:
        return "*" * len(address)
    return (local[:1] + "*" * max(len(local) - 1, 1)) + "@" + domain


def _method_detail(kind: MethodKind, data: Mapping[str, Any]) -> str:
    if kind is MethodKind.PHONE:
        number = mask_phone(_str(data, "phoneNumber"))
        return f"{_str(data, 'phoneType') or 'phone'} {number}".strip()
    if kind is MethodKind.EMAIL:
        return mask_email(_str(data, "emailAddress"))
    if kind in (
        MethodKind.MICROSOFT_AUTHENTICATOR,
        MethodKind.WINDOWS_HELLO_FOR_BUSINESS,
        MethodKind.PLATFORM_CREDENTIAL,
    ):
        return _str(data, "displayName") or _str(data, "deviceTag")
    if kind is MethodKind.FIDO2:
        return _str(data, "displayName") or _str(data, "model")
    if kind is MethodKind.TEMPORARY_ACCESS_PASS:
        usable = "usable" if data.get("isUsable") else "not usable"
        return f"{usable}, {_str(data, 'lifetimeInMinutes')} min"
    return ""


@dataclass(frozen=True)
class AuthenticationMethod:
    """A registered method. ``detail`` is masked (phone and email are partly hidden) so it can be
    shown to an agent and logged; ``phone_type`` is ``mobile``, ``alternateMobile`` or ``office``
    for phone methods (the deletion order depends on it)."""

    id: str
    kind: MethodKind
    odata_type: str
    detail: str
    created: datetime | None = None
    phone_type: str | None = None

    @classmethod
    def from_graph(cls, data: Mapping[str, Any]) -> AuthenticationMethod:
        odata_type = _str(data, "@odata.type").lstrip("#")
        kind = MethodKind.from_odata_type(odata_type)
        return cls(
            id=_str(data, "id"),
            kind=kind,
            odata_type=odata_type,
            detail=_method_detail(kind, data),
            created=parse_datetime(data.get("createdDateTime")),
            phone_type=_opt_str(data, "phoneType") if kind is MethodKind.PHONE else None,
        )


@dataclass(frozen=True)
class TemporaryAccessPass:
    """A freshly created TAP. ``pass_value`` is the credential: shown once, never in ``repr``."""

    id: str
    pass_value: str = field(repr=False)
    start: datetime | None
    lifetime_in_minutes: int | None
    is_usable_once: bool | None
    is_usable: bool | None = None
    method_usability_reason: str | None = None
    created: datetime | None = None

    @classmethod
    def from_graph(cls, data: Mapping[str, Any]) -> TemporaryAccessPass:
        return cls(
            id=_str(data, "id"),
            pass_value=_str(data, "temporaryAccessPass"),
            start=parse_datetime(data.get("startDateTime")),
            lifetime_in_minutes=_opt_int(data, "lifetimeInMinutes"),
            is_usable_once=_opt_bool(data, "isUsableOnce"),
            is_usable=_opt_bool(data, "isUsable"),
            method_usability_reason=_opt_str(data, "methodUsabilityReason"),
            created=parse_datetime(data.get("createdDateTime")),
        )

    def __str__(self) -> str:
        return repr(self)


@dataclass(frozen=True)
class TemporaryAccessPassPolicy:
    """The tenant's TAP policy: bounds for lifetime, length, and whether multi-use is allowed
    (``is_usable_once`` True means every pass must be one-time)."""

    state: str
    default_length: int | None
    default_lifetime_in_minutes: int | None
    minimum_lifetime_in_minutes: int | None
    maximum_lifetime_in_minutes: int | None
    is_usable_once: bool | None

    @classmethod
    def from_graph(cls, data: Mapping[str, Any]) -> TemporaryAccessPassPolicy:
        return cls(
            state=_str(data, "state"),
            default_length=_opt_int(data, "defaultLength"),
            default_lifetime_in_minutes=_opt_int(data, "defaultLifetimeInMinutes"),
            minimum_lifetime_in_minutes=_opt_int(data, "minimumLifetimeInMinutes"),
            maximum_lifetime_in_minutes=_opt_int(data, "maximumLifetimeInMinutes"),
            is_usable_once=_opt_bool(data, "isUsableOnce"),
        )

    @property
    def enabled(self) -> bool:
        return self.state == "enabled"


class PerUserMfa(enum.StrEnum):
    """Legacy per-user MFA state (beta ``strongAuthenticationRequirements.perUserMfaState``)."""

    DISABLED = "disabled"
    ENABLED = "enabled"
    ENFORCED = "enforced"


@dataclass(frozen=True)
class PerUserMfaState:
    """A user's per-user MFA state; ``raw_state`` keeps a value this client does not know."""

    user_id: str
    state: PerUserMfa | None
    raw_state: str

    @classmethod
    def from_graph(cls, user_id: str, data: Mapping[str, Any]) -> PerUserMfaState:
        raw = _str(data, "perUserMfaState")
        try:
            state: PerUserMfa | None = PerUserMfa(raw)
        except ValueError:
            state = None
        return cls(user_id=user_id, state=state, raw_state=raw)


class PreferredSecondaryMethod(enum.StrEnum):
    """A user's default second factor: beta ``userDefaultAuthenticationMethodType``.

    ``SMS`` and ``VOICE_MOBILE`` both name the mobile phone (text or call); ``OATH`` is a code
    from a software (or hardware) OATH token or from the Authenticator app.
    """

    PUSH = "push"
    OATH = "oath"
    VOICE_MOBILE = "voiceMobile"
    VOICE_ALTERNATE_MOBILE = "voiceAlternateMobile"
    VOICE_OFFICE = "voiceOffice"
    SMS = "sms"


@dataclass(frozen=True)
class SignInPreferences:
    """A user's beta ``signInPreferences``.

    ``preferred_method`` is None when the user has no default (Graph answers null; v1.0's report
    type spells it ``none``, accepted here too) or names a value this client does not know, which
    ``raw_preferred_method`` keeps. ``system_preferred_enabled`` True means Entra may prompt for
    the strongest registered method instead of the default at sign-in; the default still decides
    which method Graph refuses to delete while others remain.
    """

    user_id: str
    system_preferred_enabled: bool | None
    preferred_method: PreferredSecondaryMethod | None
    raw_preferred_method: str

    @classmethod
    def from_graph(cls, user_id: str, data: Mapping[str, Any]) -> SignInPreferences:
        raw = _str(data, "userPreferredMethodForSecondaryAuthentication")
        try:
            preferred: PreferredSecondaryMethod | None = PreferredSecondaryMethod(raw)
        except ValueError:
            preferred = None
        return cls(
            user_id=user_id,
            system_preferred_enabled=_opt_bool(
                data, "isSystemPreferredAuthenticationMethodEnabled"
            ),
            preferred_method=preferred,
            raw_preferred_method=raw,
        )


# --- role management ----------------------------------------------------------------------------


@dataclass(frozen=True)
class RoleDefinition:
    id: str
    display_name: str
    template_id: str | None
    is_built_in: bool | None
    is_enabled: bool | None
    description: str | None = None

    @classmethod
    def from_graph(cls, data: Mapping[str, Any]) -> RoleDefinition:
        return cls(
            id=_str(data, "id"),
            display_name=_str(data, "displayName"),
            template_id=_opt_str(data, "templateId"),
            is_built_in=_opt_bool(data, "isBuiltIn"),
            is_enabled=_opt_bool(data, "isEnabled"),
            description=_opt_str(data, "description"),
        )


def _principal(data: Mapping[str, Any]) -> DirectoryObject | None:
    principal = data.get("principal")
    return DirectoryObject.from_graph(principal) if isinstance(principal, Mapping) else None


@dataclass(frozen=True)
class RoleAssignment:
    """An active role assignment; ``principal`` is set when the request used ``$expand``."""

    id: str
    role_definition_id: str
    principal_id: str
    directory_scope_id: str
    principal: DirectoryObject | None = None

    @classmethod
    def from_graph(cls, data: Mapping[str, Any]) -> RoleAssignment:
        return cls(
            id=_str(data, "id"),
            role_definition_id=_str(data, "roleDefinitionId"),
            principal_id=_str(data, "principalId"),
            directory_scope_id=_str(data, "directoryScopeId"),
            principal=_principal(data),
        )


def _schedule_bounds(data: Mapping[str, Any]) -> tuple[datetime | None, datetime | None]:
    info = data.get("scheduleInfo")
    if not isinstance(info, Mapping):
        return None, None
    expiration = info.get("expiration")
    end = expiration.get("endDateTime") if isinstance(expiration, Mapping) else None
    return parse_datetime(info.get("startDateTime")), parse_datetime(end)


@dataclass(frozen=True)
class RoleEligibilitySchedule:
    """A PIM eligibility: the principal may activate the role between ``start`` and ``end``
    (``end`` None means permanently eligible)."""

    id: str
    role_definition_id: str
    principal_id: str
    directory_scope_id: str
    member_type: str | None
    status: str | None
    start: datetime | None
    end: datetime | None
    principal: DirectoryObject | None = None

    @classmethod
    def from_graph(cls, data: Mapping[str, Any]) -> RoleEligibilitySchedule:
        start, end = _schedule_bounds(data)
        return cls(
            id=_str(data, "id"),
            role_definition_id=_str(data, "roleDefinitionId"),
            principal_id=_str(data, "principalId"),
            directory_scope_id=_str(data, "directoryScopeId"),
            member_type=_opt_str(data, "memberType"),
            status=_opt_str(data, "status"),
            start=start,
            end=end,
            principal=_principal(data),
        )


@dataclass(frozen=True)
class _RoleScheduleRequest:
    """What PIM's eligibility and assignment schedule requests share: ``start``/``end`` bound the
    schedule the request asked for (``end`` None: no expiry, or a removal)."""

    id: str
    action: str
    status: str
    role_definition_id: str
    principal_id: str
    directory_scope_id: str
    justification: str | None
    created: datetime | None
    start: datetime | None
    end: datetime | None

    @staticmethod
    def _common(data: Mapping[str, Any]) -> dict[str, Any]:
        start, end = _schedule_bounds(data)
        return {
            "id": _str(data, "id"),
            "action": _str(data, "action"),
            "status": _str(data, "status"),
            "role_definition_id": _str(data, "roleDefinitionId"),
            "principal_id": _str(data, "principalId"),
            "directory_scope_id": _str(data, "directoryScopeId"),
            "justification": _opt_str(data, "justification"),
            "created": parse_datetime(data.get("createdDateTime")),
            "start": start,
            "end": end,
        }


@dataclass(frozen=True)
class RoleEligibilityScheduleRequest(_RoleScheduleRequest):
    """A PIM request for an *eligibility* (``adminAssign``, ``adminRemove``, ...)."""

    @classmethod
    def from_graph(cls, data: Mapping[str, Any]) -> RoleEligibilityScheduleRequest:
        return cls(**cls._common(data))


@dataclass(frozen=True)
class RoleAssignmentScheduleRequest(_RoleScheduleRequest):
    """A PIM request for an *active* assignment (``adminAssign``, ``adminRemove``, ...).
    ``target_schedule_id`` names the schedule (or assignment) it created or removed."""

    target_schedule_id: str | None = None

    @classmethod
    def from_graph(cls, data: Mapping[str, Any]) -> RoleAssignmentScheduleRequest:
        return cls(**cls._common(data), target_schedule_id=_opt_str(data, "targetScheduleId"))


# --- audit logs ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class AuditUser:
    id: str | None
    display_name: str | None
    user_principal_name: str | None
    ip_address: str | None

    @classmethod
    def from_graph(cls, data: Mapping[str, Any]) -> AuditUser:
        return cls(
            id=_opt_str(data, "id"),
            display_name=_opt_str(data, "displayName"),
            user_principal_name=_opt_str(data, "userPrincipalName"),
            ip_address=_opt_str(data, "ipAddress"),
        )


@dataclass(frozen=True)
class AuditApp:
    app_id: str | None
    display_name: str | None
    service_principal_id: str | None
    service_principal_name: str | None

    @classmethod
    def from_graph(cls, data: Mapping[str, Any]) -> AuditApp:
        return cls(
            app_id=_opt_str(data, "appId"),
            display_name=_opt_str(data, "displayName"),
            service_principal_id=_opt_str(data, "servicePrincipalId"),
            service_principal_name=_opt_str(data, "servicePrincipalName"),
        )


@dataclass(frozen=True)
class AuditTarget:
    id: str | None
    type: str | None
    display_name: str | None
    user_principal_name: str | None
    modified_properties: tuple[Mapping[str, Any], ...] = ()

    @classmethod
    def from_graph(cls, data: Mapping[str, Any]) -> AuditTarget:
        modified = data.get("modifiedProperties")
        return cls(
            id=_opt_str(data, "id"),
            type=_opt_str(data, "type"),
            display_name=_opt_str(data, "displayName"),
            user_principal_name=_opt_str(data, "userPrincipalName"),
            modified_properties=tuple(_frozen(m) for m in modified if isinstance(m, Mapping))
            if isinstance(modified, list)
            else (),
        )


@dataclass(frozen=True)
class DirectoryAudit:
    """One Entra directory audit event. ``initiated_by_user`` or ``initiated_by_app`` is set
    (Entra names the app when the portal acted with its own identity). ``raw`` keeps the whole
    event, read-only, for storage (``thaw(audit.raw)`` gives plain JSON)."""

    id: str
    category: str
    activity_display_name: str
    activity_date_time: datetime | None
    result: str | None
    result_reason: str | None
    operation_type: str | None
    logged_by_service: str | None
    correlation_id: str | None
    initiated_by_user: AuditUser | None
    initiated_by_app: AuditApp | None
    target_resources: tuple[AuditTarget, ...]
    additional_details: tuple[tuple[str, str], ...]
    raw: Mapping[str, Any] = field(repr=False, compare=False, hash=False)

    @classmethod
    def from_graph(cls, data: Mapping[str, Any]) -> DirectoryAudit:
        initiated = data.get("initiatedBy")
        initiated = initiated if isinstance(initiated, Mapping) else {}
        user = initiated.get("user")
        app = initiated.get("app")
        targets = data.get("targetResources")
        details = data.get("additionalDetails")
        return cls(
            id=_str(data, "id"),
            category=_str(data, "category"),
            activity_display_name=_str(data, "activityDisplayName"),
            activity_date_time=parse_datetime(data.get("activityDateTime")),
            result=_opt_str(data, "result"),
            result_reason=_opt_str(data, "resultReason"),
            operation_type=_opt_str(data, "operationType"),
            logged_by_service=_opt_str(data, "loggedByService"),
            correlation_id=_opt_str(data, "correlationId"),
            initiated_by_user=AuditUser.from_graph(user) if isinstance(user, Mapping) else None,
            initiated_by_app=AuditApp.from_graph(app) if isinstance(app, Mapping) else None,
            target_resources=tuple(
                AuditTarget.from_graph(t) for t in targets if isinstance(t, Mapping)
            )
            if isinstance(targets, list)
            else (),
            additional_details=tuple(
                (_str(d, "key"), _str(d, "value")) for d in details if isinstance(d, Mapping)
            )
            if isinstance(details, list)
            else (),
            raw=_frozen(data),
        )

    @property
    def target_ids(self) -> tuple[str, ...]:
        return tuple(t.id for t in self.target_resources if t.id)


def typed_items(values: Sequence[Any], parse: Any) -> tuple[Any, ...]:
    """Parse each JSON object of a collection's ``value`` with ``parse`` (skipping non-objects)."""
    return tuple(parse(v) for v in values if isinstance(v, Mapping))
