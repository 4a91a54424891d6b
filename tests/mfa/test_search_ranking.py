"""Search ranking (mfa.search.rank_key): what was typed, whole or as the start of the UPN, the
given name or the surname, comes before Graph's other matches; and the live search applies it."""

from __future__ import annotations

from typing import Any

import pytest

from graph.results import User
from mfa.search import EXACT, OTHER, PREFIX, WHOLE_NAME, rank_key, ranked
from tests.personas import PERSONAS, signed_in


def _user(name: str, upn: str, mail: str | None = None) -> User:
    return User(id=upn, display_name=name, user_principal_name=upn, mail=mail)


SAM = _user("Sam Standard", "sam.standard@contoso.example")
SAMUEL = _user("Samuel Jensen", "samuel.jensen@contoso.example")
ROSAMUND = _user("Rosamund Pike", "rpike@contoso.example", mail="sam.alias@contoso.example")
PRIYA = _user("Priya Privileged", "priya.privileged@contoso.example")
PRIYANKA = _user("Priyanka Hall", "priyanka.hall@contoso.example")
SIOBHAN = _user("Siobhán O\u2019Brien", "siobhan.obrien@contoso.example")
BENJAMIN = _user("Benjamin O'Connor", "benjamin.oconnor@contoso.example")


def test_tiers() -> None:
    assert rank_key(SAM, "sam.standard@contoso.example")[0] == EXACT
    assert rank_key(SAM, "SAM.STANDARD")[0] == EXACT
    assert rank_key(SAM, "Sam Standard")[0] == EXACT
    assert rank_key(SAM, "sam")[0] == WHOLE_NAME
    assert rank_key(SAM, "standard")[0] == WHOLE_NAME
    assert rank_key(SAMUEL, "sam")[0] == PREFIX
    assert rank_key(SAM, "sam.st")[0] == PREFIX
    assert rank_key(ROSAMUND, "sam")[0] == OTHER


def test_accents_and_apostrophes_are_ignored() -> None:
    assert rank_key(SIOBHAN, "o'b")[0] == PREFIX
    assert rank_key(SIOBHAN, "siobhan")[0] == WHOLE_NAME
    assert rank_key(SIOBHAN, "obrien")[0] == WHOLE_NAME
    assert rank_key(BENJAMIN, "o'b")[0] == OTHER


@pytest.mark.parametrize(
    ("typed", "people", "first"),
    [
        ("sam", [ROSAMUND, SAMUEL, SAM], SAM),
        ("priya", [PRIYANKA, PRIYA], PRIYA),
        ("o'b", [BENJAMIN, SIOBHAN], SIOBHAN),
    ],
)
def test_the_best_match_comes_first(typed: str, people: list[User], first: User) -> None:
    assert ranked(people, typed)[0] == first


def test_ties_go_by_name() -> None:
    other = _user("Samuel Adams", "samuel.adams@contoso.example")
    assert ranked([SAMUEL, other], "sam") == [other, SAMUEL]


@pytest.mark.django_db
def test_the_live_search_ranks_against_the_emulator(emulator: Any) -> None:
    client = signed_in(PERSONAS.agent)
    for typed, first in (("sam", "Sam Standard"), ("priya", "Priya Privileged")):
        html = client.get("/users/", {"q": typed}, HTTP_HX_REQUEST="true").content.decode()
        names = [part.split("<", 1)[0] for part in html.split('class="result__name">')[1:]]
        assert names and names[0] == first, (typed, names)
