"""The named people of the tests, in one place (docs/DEVNOTES.md, "Demo people").

Each persona is a person seeded in the Entra emulator's demo tenant. Names, UPNs and roles are
fixed here; the object ids come from the constant the seed exports
(``entra_emulator.seed.persona_oid``: ``uuid5(NAMESPACE_DNS, upn)``), so they are known without a
running emulator. ``check_against(tenant)`` compares every persona with a live tenant, so a change
of the seed cannot go unnoticed (tests/test_settings.py runs it).

Use the constants (``AGENT``, ``LEAD``, ...) or the fixtures of tests/conftest.py (``personas``,
``agent``, ``lead``, ``admin``, ``outsider``, ``standard_target``, ``privileged_target``).

``portal_user(persona)`` is the persona's Django user as the real sign-in leaves it, and
``signed_in(persona)`` a test client signed in as that user: the one place that turns a persona
into a portal account.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any, Protocol

from entra_emulator.seed import DOMAIN, persona_oid
from entra_emulator.seed import PERSONAS as SEED_PERSONAS

if TYPE_CHECKING:
    from django.test import Client

PAA = "Privileged Authentication Administrator"
PRA = "Privileged Role Administrator"
AUTH_ADMIN = "Authentication Administrator"


@dataclass(frozen=True)
class Persona:
    """One person of the demo tenant.

    ``app_role`` is the portal app role Entra puts in the ``roles`` claim (None: no portal
    access); ``portal_role`` is the portal's name for it (settings.PORTAL_ROLE_CLAIMS).
    ``directory_roles`` are the Entra directory roles the seed gives the person; any of them
    makes the person a privileged target.
    """

    key: str
    display_name: str
    upn: str
    app_role: str | None
    portal_role: str | None
    directory_roles: tuple[str, ...] = ()

    @property
    def oid(self) -> str:
        """The user's object id in the demo tenant (Entra's ``oid`` claim)."""
        return persona_oid(self.upn)

    @property
    def privileged(self) -> bool:
        """True when the person holds a directory role (the portal's privileged tier)."""
        return bool(self.directory_roles)


def _person(
    key: str,
    local: str,
    display_name: str,
    app_role: str | None = None,
    directory_roles: tuple[str, ...] = (),
) -> Persona:
    portal_role = app_role.removeprefix("Helpdesk.") if app_role else None
    return Persona(key, display_name, f"{local}@{DOMAIN}", app_role, portal_role, directory_roles)


AGENT = _person("agent", "ada.agent", "Ada Agent", "Helpdesk.Agent")
PRIVILEGED_AGENT = _person(
    "privileged_agent", "aaron.agent", "Aaron Agent", "Helpdesk.Agent", (PAA,)
)
LEAD = _person("lead", "leo.lead", "Leo Lead", "Helpdesk.Lead")
OTHER_LEAD = _person("other_lead", "lena.lead", "Lena Lead", "Helpdesk.Lead")
ADMIN = _person("admin", "ana.admin", "Ana Admin", "Helpdesk.Admin", (PRA,))
OTHER_ADMIN = _person("other_admin", "abel.admin", "Abel Admin", "Helpdesk.Admin", (PRA,))
OUTSIDER = _person("outsider", "otto.outsider", "Otto Outsider")
STANDARD_TARGET = _person("standard_target", "sam.standard", "Sam Standard")
PRIVILEGED_TARGET = _person(
    "privileged_target", "priya.privileged", "Priya Privileged", None, (AUTH_ADMIN,)
)
# Incident response (issue 14): starts bulk operations; no directory role, no helpdesk role.
RESPONDER = _person("responder", "rita.responder", "Rita Responder", "Helpdesk.Responder")


@dataclass(frozen=True)
class Personas:
    """Every persona of the tests, as attributes (the ``personas`` fixture)."""

    agent: Persona = AGENT
    privileged_agent: Persona = PRIVILEGED_AGENT
    lead: Persona = LEAD
    other_lead: Persona = OTHER_LEAD
    admin: Persona = ADMIN
    other_admin: Persona = OTHER_ADMIN
    outsider: Persona = OUTSIDER
    standard_target: Persona = STANDARD_TARGET
    privileged_target: Persona = PRIVILEGED_TARGET
    responder: Persona = RESPONDER

    def all(self) -> list[Persona]:
        """Every persona, in declaration order."""
        return [getattr(self, f.name) for f in fields(self)]

    def by_upn(self, upn: str) -> Persona:
        """The persona with this UPN (case-insensitive); KeyError when there is none."""
        for persona in self.all():
            if persona.upn.lower() == upn.lower():
                return persona
        raise KeyError(upn)


PERSONAS = Personas()


class TenantLike(Protocol):
    """What ``check_against`` needs of the emulator's ``server.tenant``."""

    def find_user(self, id_or_upn: str) -> dict[str, Any] | None: ...


def check_against(tenant: TenantLike) -> list[str]:
    """Differences between the personas and a live tenant (ids, names) or the seed's table
    (app roles, directory roles), one sentence each; empty when they agree."""
    problems: list[str] = []
    for persona in PERSONAS.all():
        seeded = SEED_PERSONAS.get(persona.upn.split("@")[0], {})
        if seeded.get("app_roles") != ([persona.app_role] if persona.app_role else []):
            problems.append(f"{persona.upn}: app roles {seeded.get('app_roles')} in the seed")
        if seeded.get("directory_roles") != list(persona.directory_roles):
            problems.append(
                f"{persona.upn}: directory roles {seeded.get('directory_roles')} in the seed"
            )
        user = tenant.find_user(persona.upn)
        if user is None:
            problems.append(f"the tenant has no user {persona.upn}")
            continue
        if user.get("id") != persona.oid:
            problems.append(f"{persona.upn}: id {user.get('id')} in the tenant, {persona.oid} here")
        if user.get("displayName") != persona.display_name:
            problems.append(
                f"{persona.upn}: named {user.get('displayName')!r} in the tenant, "
                f"{persona.display_name!r} here"
            )
    return problems


def portal_user(persona: Persona) -> Any:
    """The Django user of ``persona`` as after one sign-in with its app role (created on first
    use, its portal profile rewritten on every call).

    The real sign-in (django-auth-adfs through the emulator, tests/accounts/
    test_accounts_sign_in_flow.py) names the user by the Entra object id and writes the profile
    from the token's claims with ``accounts.services.portal_profile_sync``; this does exactly that
    with the persona's claims, so role checks and the policy's "not on yourself" rule see the same
    ids as the emulator's directory.
    """
    # Imported here: the persona table above stays importable before Django is set up.
    from django.contrib.auth import get_user_model

    from accounts.services import portal_profile_sync

    user, _created = get_user_model().objects.get_or_create(username=persona.oid)
    portal_profile_sync(
        user=user,
        claims={
            "oid": persona.oid,
            "name": persona.display_name,
            "preferred_username": persona.upn,
            "roles": [persona.app_role] if persona.app_role else [],
        },
    )
    return get_user_model().objects.get(pk=user.pk)


def signed_in(persona: Persona) -> Client:
    """A fresh test client signed in as ``persona`` (its ``portal_user``)."""
    from django.test import Client

    client = Client()
    client.force_login(portal_user(persona))
    return client
