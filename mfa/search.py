"""Finding people: the directory search of ``/users/`` and the privileged badge of each result.

Search goes to Graph's ``$search`` on display name, UPN and mail (``graph.users.search_users``,
which quotes the input): words of the display name, or the start of the UPN or mail. Marking
results as privileged must not cost a Graph call per result: the ids of every person who holds a
directory role (active or eligible, directly or through a role-assignable group) or belongs to a
protected group are read in a few paged calls and kept in the shared Django cache for
``PRIVILEGED_CACHE_SECONDS``. The person page always decides the tier afresh through
``mfa.policy.target_profile``; the badge only helps the agent pick the right row.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import cache

from accounts.capabilities import is_licence_refusal, note_pim_refused, tenant_capabilities
from graph import GraphClient
from graph import groups as graph_groups
from graph import roles as graph_roles
from graph import users as graph_users
from graph.errors import GraphError
from graph.results import DirectoryObject, User

logger = logging.getLogger(__name__)

SEARCH_TOP = 25
PRIVILEGED_CACHE_SECONDS = 300
_PRIVILEGED_KEY = "mfa:privileged-ids:v1"


@dataclass(frozen=True)
class SearchRow:
    """One result: the person, and whether they are privileged (None when unknown)."""

    user: User
    privileged: bool | None


@dataclass(frozen=True)
class SearchAnswer:
    rows: tuple[SearchRow, ...]
    count: int | None


def _people_of(
    client: GraphClient, principal: DirectoryObject | None, principal_id: str, into: set[str]
) -> None:
    if principal is not None and principal.is_group:
        into.update(
            m.id.lower()
            for m in graph_groups.list_transitive_members(client, principal.id)
            if m.is_user
        )
    else:
        # A user (or a service principal, harmless in a set of user ids).
        into.add(principal_id.lower())


def privileged_ids(client: GraphClient) -> frozenset[str] | None:
    """Lower-cased object ids of every privileged person, from the cache or Graph.

    Returns None (and logs) when Graph cannot answer: the search still works without badges.
    """
    cached = cache.get(_PRIVILEGED_KEY)
    if isinstance(cached, frozenset):
        return cached
    found: set[str] = set()
    try:
        for assignment in graph_roles.list_all_role_assignments(client):
            _people_of(client, assignment.principal, assignment.principal_id, found)
        if tenant_capabilities(client).pim:
            try:
                schedules = graph_roles.list_all_role_eligibility_schedules(client)
            except GraphError as exc:
                if not is_licence_refusal(exc):
                    raise
                note_pim_refused(exc)  # the tenant lost PIM since the last probe
                schedules = []
            for schedule in schedules:
                _people_of(client, schedule.principal, schedule.principal_id, found)
        for group_id in settings.PORTAL_PROTECTED_GROUP_IDS:
            found.update(
                m.id.lower()
                for m in graph_groups.list_transitive_members(client, group_id)
                if m.is_user
            )
    except GraphError as exc:
        logger.warning("privileged ids unavailable: %s", exc)
        return None
    ids = frozenset(found)
    cache.set(_PRIVILEGED_KEY, ids, timeout=PRIVILEGED_CACHE_SECONDS)
    return ids


def people_search(client: GraphClient, text: str) -> SearchAnswer:
    """Up to SEARCH_TOP people matching ``text`` with their privileged flag.

    Raises ValueError for input the OData quoting refuses (control characters, too long) and
    GraphError (GraphThrottled, ...) when the search itself fails.
    """
    page = graph_users.search_users(client, text, top=SEARCH_TOP)
    privileged = privileged_ids(client) if page.items else frozenset()
    rows = tuple(
        SearchRow(
            user=user,
            privileged=None if privileged is None else user.id.lower() in privileged,
        )
        for user in page.items
    )
    return SearchAnswer(rows=rows, count=page.count)
