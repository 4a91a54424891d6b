"""The emulated tenant's state: Graph-shaped dicts shared by every route module.

Contract (fixed between the emulator's engineers): every collection holds plain JSON-ready dicts
exactly as Graph would return them, so a route handler returns them (after ``$select``) without
translation. Every read or write of more than one field happens under ``tenant.lock``: the server
is threaded, and a `$batch` may run inner requests concurrently with other requests.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any


@dataclass
class ClientCertificate:
    """A certificate credential registered on an app (the public part only, as in Entra).

    ``sha1_thumbprint`` and ``sha256_thumbprint`` are the raw digests of the DER certificate;
    a client assertion names one of them (base64url) in its ``x5t`` / ``x5t#S256`` header.
    ``public_key`` is a ``cryptography`` public key object used to verify the assertion.
    """

    sha1_thumbprint: bytes
    sha256_thumbprint: bytes
    public_key: Any
    subject: str
    not_after_epoch: float


@dataclass
class AppRegistration:
    """An app registration with its service principal, as far as sign-in and Graph need it."""

    client_id: str
    display_name: str
    service_principal_id: str
    client_secrets: list[str] = field(default_factory=list)
    certificates: list[ClientCertificate] = field(default_factory=list)
    # Exact URIs, or patterns with ``*`` standing for a port (http://127.0.0.1:*/oauth2/callback).
    redirect_uris: list[str] = field(default_factory=list)
    # App roles the app defines (value -> app role id), assigned to users in
    # ``Tenant.app_role_assignments``.
    app_roles: dict[str, str] = field(default_factory=dict)
    # Graph application permissions granted with admin consent (the ``roles`` of app-only tokens).
    application_permissions: set[str] = field(default_factory=set)
    # Graph delegated permissions consented for the app (the ``scp`` of delegated Graph tokens).
    delegated_permissions: set[str] = field(default_factory=set)
    # The Application ID URIs of "Expose an API" (``identifierUris``); empty: the app exposes no
    # API, and a scope naming it is refused (AADSTS500011).
    identifier_uris: list[str] = field(default_factory=list)
    # ``api.requestedAccessTokenVersion`` of the app's manifest (2: v2 access tokens).
    requested_access_token_version: int | None = 2


LICENCES = ("free", "p1", "p2")


def check_licence(licence: str) -> str:
    """``licence`` in lower case when it is one of :data:`LICENCES`; ValueError otherwise."""
    value = str(licence).strip().lower()
    if value not in LICENCES:
        raise ValueError(f"licence must be one of {', '.join(LICENCES)}, not {licence!r}")
    return value


@dataclass
class Propagation:
    """How long a write takes to become visible to reads, in seconds (0: at once).

    Real Entra is eventually consistent and PIM provisions asynchronously; the emulator waits
    this long before a write shows (each behaviour's module cites its page). Off by default;
    tests that check the portal's patience switch it on (``POST /_emulator/propagation``).
    """

    pim_seconds: float = 0.0
    role_assignment_seconds: float = 0.0
    method_deletion_seconds: float = 0.0


@dataclass
class Tenant:
    """All state of the emulated tenant. See the module docstring for the locking rule."""

    tenant_id: str
    domain: str
    users: dict[str, dict[str, Any]] = field(default_factory=dict)
    managers: dict[str, str] = field(default_factory=dict)
    groups: dict[str, dict[str, Any]] = field(default_factory=dict)
    group_members: dict[str, set[str]] = field(default_factory=dict)
    apps: dict[str, AppRegistration] = field(default_factory=dict)
    app_role_assignments: dict[str, set[str]] = field(default_factory=dict)
    methods: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    default_method: dict[str, str] = field(default_factory=dict)
    # Beta signInPreferences beyond the default method itself (see methods_api): users whose
    # default mobile phone is reached by a call (voiceMobile) rather than a text (sms, the
    # default), and per-user isSystemPreferredAuthenticationMethodEnabled (absent: True, as
    # with Entra's "Microsoft managed" system-preferred MFA).
    default_mobile_voice: set[str] = field(default_factory=set)
    system_preferred_mfa: dict[str, bool] = field(default_factory=dict)
    tap_policy: dict[str, Any] = field(default_factory=dict)
    per_user_mfa: dict[str, str] = field(default_factory=dict)
    role_definitions: dict[str, dict[str, Any]] = field(default_factory=dict)
    role_assignments: dict[str, dict[str, Any]] = field(default_factory=dict)
    eligibility_schedules: dict[str, dict[str, Any]] = field(default_factory=dict)
    eligibility_requests: dict[str, dict[str, Any]] = field(default_factory=dict)
    audit_events: list[dict[str, Any]] = field(default_factory=list)
    # The tenant's Microsoft Entra ID licence: "free", "p1" or "p2" (PIM needs P2). Set by the
    # server (``EmulatorServer(licence=...)``, ``--licence``, ``POST /_emulator/licence``).
    licence: str = "p2"
    propagation: Propagation = field(default_factory=Propagation)
    lock: threading.RLock = field(default_factory=threading.RLock)
    # userPrincipalName (lower case) -> user id; kept in step with ``users`` by add_user().
    upn_index: dict[str, str] = field(default_factory=dict)

    def add_user(self, user: dict[str, Any]) -> None:
        """Insert or replace a user and keep the UPN index in step."""
        with self.lock:
            self.users[user["id"]] = user
            self.upn_index[user["userPrincipalName"].lower()] = user["id"]

    def find_user(self, id_or_upn: str) -> dict[str, Any] | None:
        """The user with this object id or userPrincipalName (case-insensitive), or None."""
        with self.lock:
            user = self.users.get(id_or_upn) or self.users.get(id_or_upn.lower())
            if user is not None:
                return user
            user_id = self.upn_index.get(id_or_upn.lower())
            return self.users.get(user_id) if user_id else None

    def transitive_group_ids(self, object_id: str) -> list[str]:
        """Ids of every group that contains ``object_id`` directly or through nested groups."""
        with self.lock:
            found: list[str] = []
            frontier = {object_id}
            seen: set[str] = set()
            while frontier:
                nxt: set[str] = set()
                for group_id, members in self.group_members.items():
                    if group_id in seen:
                        continue
                    if members & frontier:
                        seen.add(group_id)
                        found.append(group_id)
                        nxt.add(group_id)
                frontier = nxt
            return found

    def replace_with(self, other: Tenant) -> None:
        """Copy every collection of ``other`` into this object (a re-seed), under the lock.

        Callers holding a reference to this ``Tenant`` (tests, the server) keep seeing the live
        state after ``/_emulator/reset``.
        """
        with self.lock:
            for name in self.__dataclass_fields__:
                if name == "lock":
                    continue
                setattr(self, name, getattr(other, name))
