"""Security state of the demo tenant: methods, MFA, TAP policy, directory roles, PIM, audit history.

``seed_security(tenant, rng, now)`` is called by ``seed.build_tenant`` after people and groups
exist. Everything comes from ``rng`` (deterministic for one seed) and per-user work is O(1), so
100,000 users seed in a few seconds.

What it sets up (docs/DEVNOTES.md lists the personas):

- every member has a password method; the others get a varied set: none, phone only,
  Authenticator + phone, FIDO2, Windows Hello, email + phone, software OATH, platform credential,
  or a pending (not yet valid) Temporary Access Pass; a default method wherever one can be default;
- per-user MFA state: mostly ``disabled`` (the tenant uses Conditional Access), some ``enforced``
  (users with methods) and a few ``enabled`` (users without);
- the TAP policy: enabled, 60 min default, 10..480 min, multi-use allowed, 8 characters;
- built-in role definitions (ids are the template ids, as Graph returns them);
- holders: 2-3 Global Administrators, PAA (Aaron Agent and one more), Authentication
  Administrator (Priya Privileged), Authentication Policy Administrator, Privileged Role
  Administrator (Ana and Abel Admin), Helpdesk Administrator, Security Administrator held by the
  role-assignable group, and one PIM-eligible User Administrator whose eligibility ends in 90 days;
- 60 days of directory audit history (a few hundred events), oldest first.
"""

from __future__ import annotations

import random
import uuid
from datetime import datetime, timedelta
from typing import Any

from entra_emulator.audit_api import build_audit_event, format_timestamp, user_target
from entra_emulator.methods_api import (
    EMAIL_METHOD_ID,
    MFA_METHOD_TYPES,
    ODATA_PREFIX,
    PASSWORD_METHOD_ID,
    PASSWORD_TYPE,
    PHONE_METHOD_IDS,
    PHONE_TYPE,
    TAP_TYPE,
)
from entra_emulator.roles_api import assignment_id
from entra_emulator.roles_events import role_member_targets
from entra_emulator.seed import (
    CLIENT_ID,
    GROUP_IDS,
    PERSONAS,
    ROLE_ASSIGNABLE_GROUP,
)
from entra_emulator.tenant import Tenant

GLOBAL_ADMINISTRATOR = "62e90394-69f5-4237-9190-012177145e10"
PRIVILEGED_AUTHENTICATION_ADMINISTRATOR = "7be44c8a-adaf-4e2a-84d6-ab2649e08a13"
AUTHENTICATION_ADMINISTRATOR = "c4e39bd9-1100-46d3-8c65-fb160da0071f"
AUTHENTICATION_POLICY_ADMINISTRATOR = "0526716b-113d-4c15-b2c8-68e3c22b9f80"
HELPDESK_ADMINISTRATOR = "729827e3-9c14-49f7-bb1b-9608f156bbb8"
PRIVILEGED_ROLE_ADMINISTRATOR = "e8611ab8-c189-46e8-94e1-60213ab1f814"
USER_ADMINISTRATOR = "fe930be7-5e62-47db-91af-98c3a49a38b1"
SECURITY_ADMINISTRATOR = "194ae4cb-b126-40b2-bd5b-6091b380977d"

# Built-in roles: template id -> (display name, description, allowed resource actions (a sample)).
BUILTIN_ROLES: dict[str, tuple[str, str, tuple[str, ...]]] = {
    GLOBAL_ADMINISTRATOR: (
        "Global Administrator",
        "Can manage all aspects of Microsoft Entra ID and Microsoft services that use Microsoft "
        "Entra identities.",
        (
            "microsoft.directory/users/allProperties/allTasks",
            "microsoft.directory/roleAssignments/allProperties/allTasks",
            "microsoft.directory/users/authenticationMethods/create",
            "microsoft.directory/users/authenticationMethods/delete",
        ),
    ),
    PRIVILEGED_AUTHENTICATION_ADMINISTRATOR: (
        "Privileged Authentication Administrator",
        "Can access to view, set and reset authentication method information for any user "
        "(admin or non-admin).",
        (
            "microsoft.directory/users/authenticationMethods/create",
            "microsoft.directory/users/authenticationMethods/delete",
            "microsoft.directory/users/authenticationMethods/standard/read",
            "microsoft.directory/users/invalidateAllRefreshTokens",
            "microsoft.directory/users/strongAuthentication/update",
        ),
    ),
    AUTHENTICATION_ADMINISTRATOR: (
        "Authentication Administrator",
        "Can access to view, set and reset authentication method information for any non-admin "
        "user.",
        (
            "microsoft.directory/users/authenticationMethods/create",
            "microsoft.directory/users/authenticationMethods/delete",
            "microsoft.directory/users/authenticationMethods/standard/restrictedRead",
            "microsoft.directory/users/invalidateAllRefreshTokens",
        ),
    ),
    AUTHENTICATION_POLICY_ADMINISTRATOR: (
        "Authentication Policy Administrator",
        "Can create and manage the authentication methods policy, tenant-wide MFA settings, "
        "password protection policy, and verifiable credentials.",
        (
            "microsoft.directory/authenticationMethodPolicies/create",
            "microsoft.directory/authenticationMethodPolicies/standard/update",
            "microsoft.directory/userCredentialPolicies/standard/update",
        ),
    ),
    HELPDESK_ADMINISTRATOR: (
        "Helpdesk Administrator",
        "Can reset passwords for non-administrators and Helpdesk Administrators.",
        (
            "microsoft.directory/users/invalidateAllRefreshTokens",
            "microsoft.directory/users/password/update",
        ),
    ),
    PRIVILEGED_ROLE_ADMINISTRATOR: (
        "Privileged Role Administrator",
        "Can manage role assignments in Microsoft Entra ID, and all aspects of Privileged "
        "Identity Management.",
        (
            "microsoft.directory/roleAssignments/allProperties/allTasks",
            "microsoft.directory/roleDefinitions/allProperties/allTasks",
            "microsoft.directory/privilegedIdentityManagement/allProperties/allTasks",
        ),
    ),
    USER_ADMINISTRATOR: (
        "User Administrator",
        "Can manage all aspects of users and groups, including resetting passwords for limited "
        "admins.",
        (
            "microsoft.directory/users/create",
            "microsoft.directory/users/delete",
            "microsoft.directory/users/invalidateAllRefreshTokens",
            "microsoft.directory/users/password/update",
        ),
    ),
    SECURITY_ADMINISTRATOR: (
        "Security Administrator",
        "Can read security information and reports, and manage configuration in Microsoft Entra "
        "ID and Office 365.",
        (
            "microsoft.directory/auditLogs/allProperties/read",
            "microsoft.directory/conditionalAccessPolicies/create",
        ),
    ),
    "f2ef992c-3afb-46b9-b7cf-a126ee74c451": (
        "Global Reader",
        "Can read everything that a Global Administrator can, but not update anything.",
        ("microsoft.directory/users/allProperties/read",),
    ),
    "5d6b6bb7-de71-4623-b4af-96380a352509": (
        "Security Reader",
        "Can read security information and reports in Microsoft Entra ID and Office 365.",
        ("microsoft.directory/auditLogs/allProperties/read",),
    ),
    "4a5d8f65-41da-4de4-8968-e035b65339cf": (
        "Reports Reader",
        "Can read sign-in and audit reports.",
        (
            "microsoft.directory/auditLogs/allProperties/read",
            "microsoft.directory/signInReports/allProperties/read",
        ),
    ),
    "966707d0-3269-4727-9be2-8c3a10f19b9d": (
        "Password Administrator",
        "Can reset passwords for non-administrators and Password Administrators.",
        ("microsoft.directory/users/password/update",),
    ),
    "fdd7a751-b60b-444a-984c-02652fe8fa1c": (
        "Groups Administrator",
        "Members of this role can create/manage groups, create/manage groups settings like "
        "naming and expiration policies, and view groups activity and audit reports.",
        ("microsoft.directory/groups/create", "microsoft.directory/groups/delete"),
    ),
    "9b895d92-2cd3-44c7-9d02-a6ac2d5ea5c3": (
        "Application Administrator",
        "Can create and manage all aspects of app registrations and enterprise apps.",
        ("microsoft.directory/applications/create", "microsoft.directory/servicePrincipals/create"),
    ),
}

TAP_POLICY: dict[str, Any] = {
    "@odata.type": "#microsoft.graph.temporaryAccessPassAuthenticationMethodConfiguration",
    "id": "TemporaryAccessPass",
    "state": "enabled",
    "defaultLifetimeInMinutes": 60,
    "defaultLength": 8,
    "minimumLifetimeInMinutes": 10,
    "maximumLifetimeInMinutes": 480,
    "isUsableOnce": False,
    "excludeTargets": [],
    "includeTargets": [{"targetType": "group", "id": "all_users", "isRegistrationRequired": False}],
}

_AUTHENTICATOR_DEVICES = (
    ("iPhone 15", "6.8.11"),
    ("iPhone 13", "6.8.7"),
    ("Pixel 8", "6.2406.3817"),
    ("Galaxy S23", "6.2405.3195"),
    ("iPhone SE", "6.7.18"),
    ("Pixel 7a", "6.2404.2444"),
)
# (model, aaGuid) of common security keys.
_FIDO2_KEYS = (
    ("YubiKey 5 NFC", "cb69481e-8ff7-4039-93ec-0a2729a154a8"),
    ("YubiKey 5C NFC", "2fc0579f-8113-47ea-b116-bb5a8db9202a"),
    ("Feitian ePass FIDO2", "833b721a-ff5f-4d00-bb2e-bdda3ec01e29"),
)
# Method profiles and their weights among members: how real tenants look, roughly.
_PROFILES = (
    ("none", 10),
    ("phone", 15),
    ("authenticator_phone", 33),
    ("authenticator", 10),
    ("fido2", 8),
    ("whfb", 8),
    ("email_phone", 5),
    ("oath", 4),
    ("platform", 4),
    ("pending_tap", 3),
)
_PROFILE_NAMES = [name for name, _ in _PROFILES]
_PROFILE_WEIGHTS = [weight for _, weight in _PROFILES]
# Default-method preference among a user's methods (first present wins).
_DEFAULT_ORDER = (
    ODATA_PREFIX + "microsoftAuthenticatorAuthenticationMethod",
    PHONE_TYPE,
    ODATA_PREFIX + "fido2AuthenticationMethod",
    ODATA_PREFIX + "windowsHelloForBusinessAuthenticationMethod",
    ODATA_PREFIX + "platformCredentialAuthenticationMethod",
    ODATA_PREFIX + "softwareOathAuthenticationMethod",
)
_PERSONA_PROFILES = {
    "ada.agent": "authenticator_phone",
    "aaron.agent": "fido2",
    "leo.lead": "authenticator_phone",
    "lena.lead": "authenticator",
    "ana.admin": "fido2",
    "abel.admin": "authenticator_phone",
    "otto.outsider": "phone",
    "sam.standard": "authenticator_phone",
    "priya.privileged": "fido2",
}


def _new_id(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _phone(
    rng: random.Random, user: dict[str, Any], phone_type: str, created: str
) -> dict[str, Any]:
    # UK numbers in Ofcom's drama range (07700 900000-900999): never a real subscriber.
    number = user.get("mobilePhone") if phone_type == "mobile" else None
    return {
        "@odata.type": PHONE_TYPE,
        "id": PHONE_METHOD_IDS[phone_type],
        "createdDateTime": created,
        "phoneNumber": number or f"+44 7700 900{rng.randint(0, 999):03d}",
        "phoneType": phone_type,
        "smsSignInState": "notEnabled" if phone_type == "mobile" else "notSupported",
    }


def _authenticator(rng: random.Random, created: str) -> dict[str, Any]:
    device, version = rng.choice(_AUTHENTICATOR_DEVICES)
    return {
        "@odata.type": ODATA_PREFIX + "microsoftAuthenticatorAuthenticationMethod",
        "id": _new_id(rng),
        "createdDateTime": created,
        "displayName": device,
        "deviceTag": "SoftwareTokenActivated",
        "phoneAppVersion": version,
    }


def _fido2(rng: random.Random, created: str) -> dict[str, Any]:
    model, aaguid = rng.choice(_FIDO2_KEYS)
    return {
        "@odata.type": ODATA_PREFIX + "fido2AuthenticationMethod",
        "id": _new_id(rng),
        "createdDateTime": created,
        "displayName": model.split()[0],
        "aaGuid": aaguid,
        "model": model,
        "attestationCertificates": [f"{rng.getrandbits(160):040x}"],
        "attestationLevel": "attested",
        "passkeyType": "deviceBound",
    }


def _whfb(rng: random.Random, created: str) -> dict[str, Any]:
    return {
        "@odata.type": ODATA_PREFIX + "windowsHelloForBusinessAuthenticationMethod",
        "id": _new_id(rng),
        "createdDateTime": created,
        "displayName": f"CONTOSO-LT{rng.randint(1000, 9999)}",
        "keyStrength": "normal",
    }


def _platform(rng: random.Random, created: str) -> dict[str, Any]:
    return {
        "@odata.type": ODATA_PREFIX + "platformCredentialAuthenticationMethod",
        "id": _new_id(rng),
        "createdDateTime": created,
        "displayName": f"MacBook-Pro-{rng.randint(100, 999)}",
        "keyStrength": "normal",
        "platform": "macOS",
    }


def _oath(rng: random.Random, created: str) -> dict[str, Any]:
    return {
        "@odata.type": ODATA_PREFIX + "softwareOathAuthenticationMethod",
        "id": _new_id(rng),
        "createdDateTime": created,
        "secretKey": None,
    }


def _email(user: dict[str, Any], created: str) -> dict[str, Any]:
    others = user.get("otherMails") or []
    local = user["userPrincipalName"].split("@", 1)[0]
    return {
        "@odata.type": ODATA_PREFIX + "emailAuthenticationMethod",
        "id": EMAIL_METHOD_ID,
        "createdDateTime": created,
        "emailAddress": others[0] if others else f"{local}.recovery@example.net",
    }


def _pending_tap(rng: random.Random, now: datetime) -> dict[str, Any]:
    # Issued yesterday for an onboarding that starts tomorrow: NotYetValid until then.
    return {
        "@odata.type": TAP_TYPE,
        "id": _new_id(rng),
        "createdDateTime": format_timestamp(now - timedelta(hours=rng.randint(2, 30))),
        "startDateTime": format_timestamp(now + timedelta(hours=rng.randint(12, 48))),
        "lifetimeInMinutes": 480,
        "isUsableOnce": True,
        "temporaryAccessPass": None,
    }


def build_methods(
    rng: random.Random, user: dict[str, Any], profile: str, now: datetime
) -> list[dict[str, Any]]:
    """The method list of one member for a profile name (password first, as Graph lists it)."""
    # Registered some time after the account was created, never before.
    account_created = user.get("createdDateTime")
    start = (
        datetime.fromisoformat(account_created.replace("Z", "+00:00"))
        if account_created
        else now - timedelta(days=700)
    )
    created = format_timestamp(start + (now - start) * rng.random())
    methods: list[dict[str, Any]] = [
        {
            "@odata.type": PASSWORD_TYPE,
            "id": PASSWORD_METHOD_ID,
            "createdDateTime": user.get("createdDateTime"),
            "password": None,
        }
    ]
    if profile in {"phone", "authenticator_phone", "email_phone"}:
        methods.append(_phone(rng, user, "mobile", created))
        roll = rng.random()
        if roll < 0.08:
            methods.append(_phone(rng, user, "alternateMobile", created))
        elif roll < 0.14:
            methods.append(_phone(rng, user, "office", created))
    if profile in {"authenticator_phone", "authenticator", "fido2", "whfb", "platform"}:
        methods.append(_authenticator(rng, created))
    if profile == "fido2":
        methods.append(_fido2(rng, created))
    elif profile == "whfb":
        methods.append(_whfb(rng, created))
    elif profile == "platform":
        methods.append(_platform(rng, created))
    elif profile == "oath":
        methods.append(_oath(rng, created))
    elif profile == "email_phone":
        methods.append(_email(user, created))
    elif profile == "pending_tap":
        methods.append(_pending_tap(rng, now))
    return methods


def default_method_id(methods: list[dict[str, Any]]) -> str | None:
    """The method Entra would hold as default: the strongest usable MFA method present."""
    by_type: dict[str, dict[str, Any]] = {}
    for method in methods:
        if method["@odata.type"] in MFA_METHOD_TYPES:
            if method["@odata.type"] == PHONE_TYPE and method.get("phoneType") != "mobile":
                continue
            by_type.setdefault(method["@odata.type"], method)
    for kind in _DEFAULT_ORDER:
        if kind in by_type:
            return str(by_type[kind]["id"])
    return None


def _seed_methods(tenant: Tenant, rng: random.Random, now: datetime) -> None:
    persona_profiles = {PERSONAS[p]["id"]: prof for p, prof in _PERSONA_PROFILES.items()}
    for user_id, user in tenant.users.items():
        if user.get("userType") == "Guest":
            continue  # a guest's methods live in its home tenant
        profile = (
            persona_profiles.get(user_id)
            or rng.choices(_PROFILE_NAMES, weights=_PROFILE_WEIGHTS)[0]
        )
        methods = build_methods(rng, user, profile, now)
        tenant.methods[user_id] = methods
        default = default_method_id(methods)
        if default is not None:
            tenant.default_method[user_id] = default
        roll = rng.random()
        if default is not None and roll < 0.12:
            tenant.per_user_mfa[user_id] = "enforced"
        elif default is None and roll < 0.05:
            tenant.per_user_mfa[user_id] = "enabled"
        else:
            tenant.per_user_mfa[user_id] = "disabled"
    tenant.per_user_mfa[PERSONAS["priya.privileged"]["id"]] = "enforced"
    tenant.per_user_mfa[PERSONAS["sam.standard"]["id"]] = "disabled"


def _seed_roles(tenant: Tenant, rng: random.Random, now: datetime) -> list[str]:
    """Definitions, assignments and the PIM eligibility. Returns the ids of people holding one."""
    for template_id, (name, description, actions) in BUILTIN_ROLES.items():
        tenant.role_definitions[template_id] = {
            "id": template_id,
            "description": description,
            "displayName": name,
            "isBuiltIn": True,
            "isEnabled": True,
            "resourceScopes": ["/"],
            "templateId": template_id,
            "version": "1",
            "rolePermissions": [
                {
                    "allowedResourceActions": list(actions),
                    "condition": None,
                    "excludedResourceActions": [],
                }
            ],
        }
    persona_ids = {p["id"] for p in PERSONAS.values()}
    # People who are neither personas nor guests nor disabled, IT first: admins come from there.
    candidates = sorted(
        uid
        for uid, u in tenant.users.items()
        if uid not in persona_ids
        and u.get("userType") == "Member"
        and u.get("accountEnabled")
        and u.get("department") == "IT"
    ) or sorted(
        uid
        for uid, u in tenant.users.items()
        if uid not in persona_ids and u.get("userType") == "Member"
    )
    picked = rng.sample(candidates, k=min(len(candidates), 6))

    def take(index: int) -> str | None:
        return picked[index] if index < len(picked) else None

    holders: list[tuple[str, str | None]] = [
        (GLOBAL_ADMINISTRATOR, take(0)),
        (GLOBAL_ADMINISTRATOR, take(1)),
        (PRIVILEGED_AUTHENTICATION_ADMINISTRATOR, PERSONAS["aaron.agent"]["id"]),
        (PRIVILEGED_AUTHENTICATION_ADMINISTRATOR, take(2)),
        (AUTHENTICATION_ADMINISTRATOR, PERSONAS["priya.privileged"]["id"]),
        (AUTHENTICATION_POLICY_ADMINISTRATOR, take(3)),
        (PRIVILEGED_ROLE_ADMINISTRATOR, PERSONAS["ana.admin"]["id"]),
        (PRIVILEGED_ROLE_ADMINISTRATOR, PERSONAS["abel.admin"]["id"]),
        (HELPDESK_ADMINISTRATOR, take(4)),
        (SECURITY_ADMINISTRATOR, GROUP_IDS[ROLE_ASSIGNABLE_GROUP]),
        # The same group also holds one of the roles the portal's /roles/ page governs, so the
        # demo shows a role held through a group with its members expanded.
        (AUTHENTICATION_ADMINISTRATOR, GROUP_IDS[ROLE_ASSIGNABLE_GROUP]),
    ]
    for role_id, principal_id in holders:
        if principal_id is None:
            continue
        new_id = assignment_id(role_id, principal_id)
        tenant.role_assignments[new_id] = {
            "id": new_id,
            "principalId": principal_id,
            "roleDefinitionId": role_id,
            "directoryScopeId": "/",
            "appScopeId": None,
            "condition": None,
        }
    eligible = take(5)
    if eligible is not None:
        request_id, schedule_id = _new_id(rng), _new_id(rng)
        start = now - timedelta(days=20)
        info = {
            "startDateTime": format_timestamp(start),
            "recurrence": None,
            "expiration": {
                "type": "afterDateTime",
                "endDateTime": format_timestamp(now + timedelta(days=90)),
                "duration": None,
            },
        }
        tenant.eligibility_schedules[schedule_id] = {
            "id": schedule_id,
            "principalId": eligible,
            "roleDefinitionId": USER_ADMINISTRATOR,
            "directoryScopeId": "/",
            "appScopeId": None,
            "createdUsing": request_id,
            "createdDateTime": format_timestamp(start),
            "modifiedDateTime": None,
            "status": "Provisioned",
            "memberType": "Direct",
            "scheduleInfo": info,
        }
        tenant.eligibility_requests[request_id] = {
            "id": request_id,
            "status": "Provisioned",
            "createdDateTime": format_timestamp(start),
            "completedDateTime": format_timestamp(start),
            "approvalId": None,
            "customData": None,
            "action": "adminAssign",
            "principalId": eligible,
            "roleDefinitionId": USER_ADMINISTRATOR,
            "directoryScopeId": "/",
            "appScopeId": None,
            "isValidationOnly": False,
            "targetScheduleId": schedule_id,
            "justification": "Quarterly access for the user lifecycle project",
            "createdBy": {
                "application": None,
                "device": None,
                "user": {"id": PERSONAS["ana.admin"]["id"], "displayName": None},
            },
            "scheduleInfo": info,
            "ticketInfo": {"ticketNumber": None, "ticketSystem": None},
        }
    return [p for p in picked if p is not None]


def _user_initiator(user: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    return {
        "user": {
            "id": user["id"],
            "displayName": user.get("displayName"),
            "userPrincipalName": user.get("userPrincipalName"),
            "ipAddress": f"203.0.113.{rng.randint(1, 254)}",
        }
    }


def _seed_audit(tenant: Tenant, rng: random.Random, now: datetime, admins: list[str]) -> None:
    """About 360 events over 60 days: helpdesk actions by the portal app and by admins, users'
    own registrations, session revocations, MFA state changes and role changes."""
    app = tenant.apps[CLIENT_ID]
    app_initiator = {
        "app": {
            "appId": app.client_id,
            "displayName": app.display_name,
            "servicePrincipalId": app.service_principal_id,
        }
    }
    members = sorted(uid for uid, u in tenant.users.items() if u.get("userType") == "Member")
    if not members:
        return
    # Sample targets once; O(events), independent of the tenant size.
    targets = [tenant.users[uid] for uid in rng.choices(members, k=400)]
    admin_users = [
        tenant.users[uid] for uid in [*admins, PERSONAS["aaron.agent"]["id"]] if uid in tenant.users
    ]
    events: list[dict[str, Any]] = []

    def when() -> datetime:
        # Mostly office hours, Monday to Friday.
        day = now - timedelta(days=rng.randint(1, 60))
        while day.weekday() >= 5 and rng.random() < 0.85:
            day -= timedelta(days=1)
        return day.replace(
            hour=rng.choice((8, 9, 10, 11, 13, 14, 15, 16, 17)),
            minute=rng.randint(0, 59),
            second=rng.randint(0, 59),
            microsecond=rng.randint(0, 999999),
        )

    def add(**kwargs: Any) -> None:
        events.append(
            build_audit_event(event_id=_new_id(rng), correlation_id=_new_id(rng), **kwargs)
        )

    labels = (
        "Authenticator App",
        "Mobile Phone",
        "FIDO2 security key",
        "Email",
        "Windows Hello for Business",
        "Software OATH token",
    )
    for index, target in enumerate(targets[:360]):
        # Helpdesk history: an admin acting on someone else (an admin's change to their own
        # account is self-service, which the portal does not count as helpdesk work). Which
        # admin meets which target changes with the real date (when() draws on the weekday).
        admins_for = [u for u in admin_users if u["id"] != target["id"]]
        by_app = rng.random() < 0.6 or not admins_for
        initiator = app_initiator if by_app else _user_initiator(rng.choice(admins_for), rng)
        kind = rng.random()
        if kind < 0.35:
            add(
                initiated_by=initiator,
                category="UserManagement",
                activity="Admin deleted security info",
                target_resources=[user_target(target)],
                activity_time=when(),
                result_reason=f"Admin deleted {rng.choice(labels)} for user",
                logged_by_service="Authentication Methods",
            )
        elif kind < 0.5:
            add(
                initiated_by=initiator,
                category="UserManagement",
                activity="Admin registered security info",
                target_resources=[user_target(target)],
                activity_time=when(),
                result_reason="Admin registered temporary access pass method for user",
                logged_by_service="Authentication Methods",
            )
        elif kind < 0.7:
            add(
                initiated_by=_user_initiator(target, rng),
                category="UserManagement",
                activity="User registered security info",
                target_resources=[user_target(target)],
                activity_time=when(),
                result_reason=f"User registered {rng.choice(labels)}",
                logged_by_service="Authentication Methods",
            )
        elif kind < 0.76:
            add(
                initiated_by=_user_initiator(target, rng),
                category="UserManagement",
                activity="User deleted security info",
                target_resources=[user_target(target)],
                activity_time=when(),
                result_reason=f"User deleted {rng.choice(labels)}",
                logged_by_service="Authentication Methods",
            )
        elif kind < 0.93:
            stamp = format_timestamp(when())
            add(
                initiated_by=initiator,
                category="UserManagement",
                activity="Update StsRefreshTokenValidFrom Timestamp",
                target_resources=[
                    user_target(
                        target,
                        [
                            {
                                "displayName": "StsRefreshTokensValidFrom",
                                "oldValue": f'["{target.get("createdDateTime")}"]',
                                "newValue": f'["{stamp[:19]}Z"]',
                            }
                        ],
                    )
                ],
                activity_time=datetime.fromisoformat(stamp.replace("Z", "+00:00")),
            )
        elif kind < 0.985:
            old, new = rng.choice(
                (("disabled", "enforced"), ("enforced", "disabled"), ("disabled", "enabled"))
            )
            add(
                initiated_by=initiator,
                category="UserManagement",
                activity="Update user",
                target_resources=[
                    user_target(
                        target,
                        [
                            {
                                "displayName": "StrongAuthenticationRequirement",
                                "oldValue": f'[{{"State":"{old}"}}]',
                                "newValue": f'[{{"State":"{new}"}}]',
                            },
                            {
                                "displayName": "Included Updated Properties",
                                "oldValue": None,
                                "newValue": '"StrongAuthenticationRequirement"',
                            },
                        ],
                    )
                ],
                activity_time=when(),
            )
        else:
            definition = tenant.role_definitions[HELPDESK_ADMINISTRATOR]
            added = bool(index % 2)
            add(
                initiated_by=_user_initiator(tenant.users[PERSONAS["ana.admin"]["id"]], rng),
                category="RoleManagement",
                activity="Add member to role" if added else "Remove member from role",
                # Entra's shape: the directoryRole object as the Role target, the template id in
                # the member's Role.TemplateId (entra_emulator.roles_events).
                target_resources=role_member_targets(
                    definition,
                    {"@odata.type": "#microsoft.graph.user", **target},
                    removed=not added,
                ),
                activity_time=when(),
            )
    for schedule in tenant.eligibility_schedules.values():
        principal = tenant.users.get(schedule["principalId"])
        definition = tenant.role_definitions[schedule["roleDefinitionId"]]
        if principal is None:
            continue
        add(
            initiated_by=_user_initiator(tenant.users[PERSONAS["ana.admin"]["id"]], rng),
            category="RoleManagement",
            activity="Add eligible member to role in PIM completed (timebound)",
            target_resources=[
                {"id": definition["id"], "displayName": definition["displayName"], "type": "Role"},
                user_target(principal),
            ],
            activity_time=datetime.fromisoformat(
                schedule["createdDateTime"].replace("Z", "+00:00")
            ),
            additional_details=[("RequestId", schedule["createdUsing"])],
            logged_by_service="PIM",
        )
    events.sort(key=lambda e: e["activityDateTime"])
    tenant.audit_events.extend(events)


def seed_security(tenant: Tenant, rng: random.Random, now: datetime) -> None:
    """Fill methods, MFA state, TAP policy, roles, PIM and audit history (see module doc)."""
    tenant.tap_policy = dict(TAP_POLICY)
    _seed_methods(tenant, rng, now)
    admins = _seed_roles(tenant, rng, now)
    _seed_audit(tenant, rng, now, admins[:5])
