"""Finding people: the directory search of ``/users/`` and the privileged badge of each result.

Search goes to Graph's ``$search`` on display name, UPN and mail (``graph.users.search_users``,
which quotes the input): words of the display name, or the start of the UPN or mail. Graph
returns its matches in no useful order, so ``people_search`` asks for a pool of ``RANK_POOL``
and ranks them (``rank_key``): the whole UPN, mail or name typed; then a given name or surname
typed in full ("sam" -> Sam Standard before Samuel); then the start of the UPN or of a name
("o'b" -> Siobhán O'Brien); then the rest, each tier by name. Marking
results as privileged must not cost a Graph call per result: the ids of every person who holds a
directory role (active or eligible, directly or through a role-assignable group) or belongs to a
protected group are read in a few paged calls and kept in the shared Django cache for
``PRIVILEGED_CACHE_SECONDS``. The person page always decides the tier afresh through
``mfa.policy.target_profile``; the badge only helps the agent pick the right row.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from collections.abc import Iterable
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
# Graph's $search has no relevance order: one call fetches this many, ranked, and the best
# SEARCH_TOP are shown (the same single call as a page of 25 in the Graph budget).
RANK_POOL = 100
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


# --- ranking ----------------------------------------------------------------------------------
# Tiers of rank_key, best first.
EXACT = 0  # the whole UPN, mail, UPN name part or display name
WHOLE_NAME = 1  # every typed word is a whole given name or surname ("sam" for Sam Standard)
PREFIX = 2  # the UPN starts with it, or every typed word starts a name ("priya", "o'b")
OTHER = 3  # anything else Graph matched (a mail alias, a word inside a name)

_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "`": "'", "\u00b4": "'"})
_NAME_SPLIT = re.compile(r"[\s._\-,()/]+")


def _fold(text: str) -> str:
    """``text`` compared as a person would: case, accents and apostrophe kinds ignored."""
    decomposed = unicodedata.normalize("NFKD", text.translate(_APOSTROPHES))
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch)).casefold().strip()


def _words(text: str) -> list[str]:
    return [word for word in _NAME_SPLIT.split(_fold(text)) if word]


def _bare(word: str) -> str:
    """A word without its punctuation ("o'brien" -> "obrien")."""
    return "".join(ch for ch in word if ch.isalnum())


def _name_words(user: User) -> list[str]:
    """The given names and surnames of ``user``: the words of the display name and of the UPN's
    name part ("sam.standard@..." -> sam, standard)."""
    local = user.user_principal_name.split("@", 1)[0].split("#EXT#", 1)[0]
    return _words(user.display_name) + _words(local)


def _every_word(typed: list[str], names: list[str], *, whole: bool) -> bool:
    def hit(word: str, name: str) -> bool:
        if whole:
            return name == word or (bool(_bare(word)) and _bare(name) == _bare(word))
        return name.startswith(word) or (bool(_bare(word)) and _bare(name).startswith(_bare(word)))

    return bool(typed) and all(any(hit(word, name) for name in names) for word in typed)


def rank_key(user: User, text: str) -> tuple[int, str, str]:
    """Where ``user`` ranks for the search ``text``: (tier, name, UPN), lowest first."""
    typed = _fold(text)
    upn = _fold(user.user_principal_name)
    mail = _fold(user.mail or "")
    name = _fold(user.display_name)
    order = (name, upn)
    if typed in (upn, mail, upn.split("@", 1)[0], name):
        return (EXACT, *order)
    typed_words = _words(text)
    names = _name_words(user)
    if _every_word(typed_words, names, whole=True):
        return (WHOLE_NAME, *order)
    if upn.startswith(typed) or _every_word(typed_words, names, whole=False):
        return (PREFIX, *order)
    return (OTHER, *order)


def ranked(users: Iterable[User], text: str) -> list[User]:
    """``users`` best match first for ``text`` (``rank_key``)."""
    return sorted(users, key=lambda user: rank_key(user, text))


def people_search(client: GraphClient, text: str) -> SearchAnswer:
    """Up to SEARCH_TOP people matching ``text``, best match first, with their privileged flag.

    Raises ValueError for input the OData quoting refuses (control characters, too long) and
    GraphError (GraphThrottled, ...) when the search itself fails.
    """
    page = graph_users.search_users(client, text, top=RANK_POOL)
    best = ranked(page.items, text)[:SEARCH_TOP]
    privileged = privileged_ids(client) if best else frozenset()
    rows = tuple(
        SearchRow(
            user=user,
            privileged=None if privileged is None else user.id.lower() in privileged,
        )
        for user in best
    )
    count = page.count if page.count is not None else len(page.items)
    return SearchAnswer(rows=rows, count=count)
