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
