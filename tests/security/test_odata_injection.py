"""OData injection, fuzzed with hypothesis: hostile text after a seeded name, through the search
page and through the ``graph`` client, against the real HTTPS emulator.

What must hold for any input:

- the emulator receives exactly the clauses the portal means (three ``$search`` terms joined by
  OR, or three ``startswith`` calls), each carrying the typed text literally: the query string is
  recorded where the emulator parses it, and every term, unescaped, is ``property:<typed text>``;
- the answer never widens: every person found also matches the seeded name alone;
- nothing answers 5xx; the page answers 200, or 400 for input it refuses (too long, control
  characters).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any, Literal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from entra_emulator import graph_core
from entra_emulator.odata import parse_query
from graph import odata
from graph import users as graph_users
from portal.graph_client import get_graph_client
from tests.personas import PERSONAS, signed_in

pytestmark = pytest.mark.django_db

SEED = "Sam Standard"
HTMX = {"HX-Request": "true"}
SEARCH_PROPERTIES = ("displayName", "userPrincipalName", "mail")
_TERM = re.compile(r'"((?:[^"\\]|\\.)*)"')
_LITERAL = re.compile(r"'((?:[^']|'')*)'")

# Characters that mean something to OData, to $search or to a URL, and words that are operators.
HOSTILE_PIECES = [
    '"',
    "'",
    "\\",
    "''",
    '\\"',
    '" OR "displayName:a',
    "') or true or startswith(mail,'",
    " OR ",
    " AND ",
    " NOT ",
    "(",
    ")",
    ":",
    "*",
    "%",
    "%27",
    "%22",
    "&",
    "&$filter=1 eq 1",
    "#",
    "?",
    "/",
    "$",
    "$top=999",
    "eq",
    " or 1 eq 1",
    "\u202e",
    "\u00a0",
    "😀",
    "ß",
]
# Lone surrogates cannot even be sent as UTF-8 (the quoting refuses them: tests/graph).
NO_SURROGATES: tuple[Literal["Cs"]] = ("Cs",)
hostile_suffix = st.lists(
    st.one_of(
        st.sampled_from(HOSTILE_PIECES),
        st.text(
            alphabet=st.characters(blacklist_categories=NO_SURROGATES, blacklist_characters="\x00"),
            max_size=12,
        ),
    ),
    min_size=1,
    max_size=6,
).map("".join)


class QueryRecorder:
    """Wraps the emulator's query parser to record the decoded query of each Graph request."""

    def __init__(self) -> None:
        self.seen: list[dict[str, str]] = []

    def wrap(self, original: Any) -> Any:
        def recording(args: Mapping[str, str]) -> Any:
            self.seen.append(dict(args))
            return original(args)

        return recording

    def of(self, option: str) -> list[str]:
        return [args[option] for args in self.seen if option in args]


@pytest.fixture
def recorder(emulator: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[QueryRecorder]:
    # The emulator runs in this process (a server thread): the wrapper sees its requests.
    recording = QueryRecorder()
    monkeypatch.setattr(graph_core, "parse_query", recording.wrap(parse_query))
    yield recording


def _unescape_search(term: str) -> str:
    return re.sub(r"\\(.)", r"\1", term)


def _assert_search_literal(raw: str, typed: str) -> None:
    """``raw`` is three terms joined by `` OR ``, each ``property:typed`` once unescaped."""
    terms = list(_TERM.finditer(raw))
    assert len(terms) == 3, raw
    rebuilt = " OR ".join(m.group(0) for m in terms)
    assert rebuilt == raw, f"something outside the quoted terms: {raw!r}"
    for prop, match in zip(SEARCH_PROPERTIES, terms, strict=True):
        assert _unescape_search(match.group(1)) == f"{prop}:{typed}", raw


def _seed_upns() -> set[str]:
    page = graph_users.search_users(get_graph_client(), SEED, top=999)
    return {user.user_principal_name for user in page.items}


FUZZ = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@FUZZ
@given(suffix=hostile_suffix)
def test_search_page_passes_hostile_text_literally(recorder: QueryRecorder, suffix: str) -> None:
    client = signed_in(PERSONAS.agent)
    seed_upns = _seed_upns()
    assert PERSONAS.standard_target.upn in seed_upns
    typed = f"{SEED} {suffix}"
    recorder.seen.clear()
    response = client.get("/users/", {"q": typed}, headers=HTMX)
    assert response.status_code < 500, response.content[:500]
    if response.status_code == 400:
        # Refused before any request: too long or a character the quoting will not send.
        assert 'data-search-state="too-long"' in response.content.decode() or (
            'data-search-state="refused"' in response.content.decode()
        )
        assert recorder.of("$search") == []
        return
    assert response.status_code == 200
    searches = recorder.of("$search")
    assert len(searches) == 1
    _assert_search_literal(searches[0], typed.strip())
    found = set(re.findall(r"[\w.+-]+@contoso-demo\.onmicrosoft\.com", response.content.decode()))
    assert found <= seed_upns, found - seed_upns


@FUZZ
@given(suffix=hostile_suffix)
def test_graph_filter_passes_hostile_text_literally(recorder: QueryRecorder, suffix: str) -> None:
    prefix = f"{SEED}{suffix}".strip()
    recorder.seen.clear()
    try:
        page = graph_users.list_users_startswith(get_graph_client(), prefix, top=50)
    except ValueError:
        # The quoting refused it (control character, too long): nothing was sent.
        assert recorder.seen == []
        return
    (raw,) = recorder.of("$filter")
    literals = [m.group(1).replace("''", "'") for m in _LITERAL.finditer(raw)]
    assert literals == [prefix] * 3, raw
    expected = " or ".join(f"startswith({p},{odata.quote(prefix)})" for p in SEARCH_PROPERTIES)
    assert raw == expected
    for user in page.items:
        values = [user.display_name, user.user_principal_name, user.mail]
        assert any((v or "").casefold().startswith(prefix.casefold()) for v in values), user


@FUZZ
@given(suffix=hostile_suffix)
def test_graph_search_passes_hostile_text_literally(recorder: QueryRecorder, suffix: str) -> None:
    seed_upns = _seed_upns()
    typed = f"{SEED} {suffix}".strip()
    recorder.seen.clear()
    try:
        page = graph_users.search_users(get_graph_client(), typed, top=50)
    except ValueError:
        assert recorder.seen == []
        return
    (raw,) = recorder.of("$search")
    _assert_search_literal(raw, typed)
    assert {user.user_principal_name for user in page.items} <= seed_upns
