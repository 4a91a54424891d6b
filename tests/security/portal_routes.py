"""Every URL of the portal, read from the URLconf, and real values for its path parameters.

``portal_routes()`` walks ``get_resolver().url_patterns`` recursively (includes and namespaces
too), so a URL added anywhere shows up here without anyone listing it. ``RouteObjects`` makes the
rows that path parameters point at (a request made by the agent, one waiting for approval, a role
change), through the same service functions the portal uses, and ``url_for`` fills a route's
parameters from them. A parameter nobody knows how to fill raises ``LookupError``: a new kind of
parameter must be taught here, never skipped.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from django.urls import URLPattern, URLResolver, get_resolver, reverse

from mfa import policy
from mfa.models import ActionKind, ActionRequest
from portal.graph_client import get_graph_client
from roles import services as role_services
from roles.models import HoldKind, PrincipalType, RoleChange, RoleChangeRequest
from tests.mfa.action_requests import action_request_make
from tests.personas import PERSONAS, portal_user


@dataclass(frozen=True)
class Route:
    """One URL pattern: its full route text (the key of the expectation tables), its qualified
    name for ``reverse`` and the names of its path parameters."""

    route: str
    name: str
    params: tuple[str, ...]

    @property
    def namespace(self) -> str:
        return self.name.rpartition(":")[0]


def _walk(patterns: list[Any], prefix: str, namespace: str) -> list[Route]:
    found: list[Route] = []
    for entry in patterns:
        if isinstance(entry, URLResolver):
            ns = namespace
            if entry.namespace:
                ns = f"{namespace}:{entry.namespace}" if namespace else entry.namespace
            found += _walk(entry.url_patterns, prefix + str(entry.pattern), ns)
        elif isinstance(entry, URLPattern):
            if not entry.name:
                raise AssertionError(f"URL {prefix}{entry.pattern} has no name: name it")
            name = f"{namespace}:{entry.name}" if namespace else entry.name
            converters = dict(entry.pattern.converters)
            found.append(Route(prefix + str(entry.pattern), name, tuple(converters)))
    return found


def portal_routes() -> list[Route]:
    """Every URL pattern of ``settings.ROOT_URLCONF``, in URLconf order."""
    return _walk(get_resolver().url_patterns, "", "")


@dataclass
class RouteObjects:
    """Rows the path parameters point at, made through the portal's own services.

    - ``own_tap``: a Temporary Access Pass request the agent (Ada) made for Sam, still pending
      (no worker runs); its page, cancel and reveal URLs are the requester's own.
    - ``privileged``: a request by Aaron (an agent holding PAA) on Priya, awaiting approval: what
      a lead decides; Ada is neither its requester nor an approver.
    - ``role_change``: Ana (admin) asks to make Sam a Privileged Authentication Administrator;
      it waits for a second admin.
    """

    own_tap: ActionRequest
    privileged: ActionRequest
    role_change: RoleChangeRequest
    bulk: Any

    @classmethod
    def create(cls) -> RouteObjects:
        client = get_graph_client()
        ada = portal_user(PERSONAS.agent)
        aaron = portal_user(PERSONAS.privileged_agent)
        ana = portal_user(PERSONAS.admin)
        for persona in (PERSONAS.lead, PERSONAS.outsider, PERSONAS.other_admin):
            portal_user(persona)
        sam = policy.target_profile(client, PERSONAS.standard_target.oid, use_cache=False)
        priya = policy.target_profile(client, PERSONAS.privileged_target.oid, use_cache=False)
        own_tap = action_request_make(
            ActionKind.ISSUE_TAP,
            agent=ada,
            profile=sam,
            params={"lifetime_minutes": 60, "usable_once": True},
        )
        privileged = action_request_make(
            ActionKind.REVOKE_SESSIONS,
            agent=aaron,
            profile=priya,
            reason="Laptop stolen on the train this morning, signing her out everywhere",
            ticket="INC0012346",
        )
        role_change = role_services.role_change_create(
            requester=ana,
            change=RoleChange.ADD,
            role_name="Privileged Authentication Administrator",
            principal_id=PERSONAS.standard_target.oid,
            principal_type=PrincipalType.USER,
            hold_kind=HoldKind.ACTIVE_PERMANENT,
            justification="Covering the MFA desk while the usual holder is on leave",
            ticket="INC0012347",
            idempotency_key=uuid.uuid4().hex,
        )
        from bulk import services as bulk_services

        rita = portal_user(PERSONAS.responder)
        bulk = bulk_services.plan(
            starter=rita,
            people=[PERSONAS.standard_target.upn],
            group_id=None,
            actions=["revoke_sessions"],
            reason="Phishing campaign: signing the people who clicked out everywhere",
            ticket="INC0012348",
            notify=False,
            source_label="1 pasted",
        )
        return cls(own_tap=own_tap, privileged=privileged, role_change=role_change, bulk=bulk)

    def url_for(self, route: Route) -> str:
        """``route`` with every path parameter filled; LookupError for an unknown parameter."""
        kwargs: dict[str, str] = {}
        for param in route.params:
            kwargs[param] = self._value(route, param)
        return reverse(route.name, kwargs=kwargs)

    def _value(self, route: Route, param: str) -> str:
        if param == "oid":
            return PERSONAS.standard_target.oid
        if param == "kind":
            return str(ActionKind.REVOKE_SESSIONS)
        if param == "fmt":
            return "csv"
        if param == "public_id":
            if route.namespace == "bulk":
                return str(self.bulk.public_id)
            if route.namespace == "roles":
                return str(self.role_change.public_id)
            if route.name == "mfa:approval_decide":
                return str(self.privileged.public_id)
            if route.namespace == "mfa":
                return str(self.own_tap.public_id)
        raise LookupError(
            f"{route.route} ({route.name}): no value for the path parameter {param!r}; "
            "teach tests/security/portal_routes.py one"
        )
