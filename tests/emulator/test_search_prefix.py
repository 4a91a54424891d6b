"""``$search`` on users as Graph does it: tokenised on displayName (and description), "startswith"
on every other property (userPrincipalName, mail, ...).

https://learn.microsoft.com/en-us/graph/search-query-parameter, "Using $search on directory
object collections": "The tokenized search support works only on the displayName and description
fields. Any field of String type can be put in $search; fields other than displayName and
description default to $filter startswith behavior."
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from entra_emulator.odata import parse_search, search_tokens
from entra_emulator.server import EmulatorServer
from tests.emulator.conftest import app_token, graph_get

EVENTUAL = {"ConsistencyLevel": "eventual"}
PERSON = {
    "displayName": "Noor van der Berg-Okafor",
    "userPrincipalName": "nberg.okafor@contoso.test",
    "mail": "Noor.Okafor@contoso.test",
}


@pytest.fixture
def person(emu: EmulatorServer) -> Iterator[str]:
    user_id = str(uuid.uuid4())
    emu.tenant.add_user(
        {"id": user_id, "accountEnabled": True, "userType": "Member", "otherMails": [], **PERSON}
    )
    yield user_id


def _found(emu: EmulatorServer, search: str) -> set[str]:
    answer = graph_get(
        emu,
        "/users",
        app_token(emu),
        params={"$search": search, "$select": "id", "$top": "999"},
        headers=EVENTUAL,
    )
    assert answer.status_code == 200, answer.text
    return {u["id"] for u in answer.json()["value"]}


@pytest.mark.parametrize(
    "search",
    [
        '"userPrincipalName:nberg"',
        '"userPrincipalName:NBERG.okafor@"',
        '"mail:noor.ok"',
        '"displayName:okafor"',  # a token after a hyphen
        '"displayName:Berg Noor"',  # tokens in any order
        '"displayName:oka"',  # a token's start
        '"displayName:bergokafor"',  # words joined across a symbol
    ],
)
def test_matches(emu: EmulatorServer, person: str, search: str) -> None:
    assert person in _found(emu, search)


@pytest.mark.parametrize(
    "search",
    [
        '"userPrincipalName:okafor"',  # a word inside the UPN, not its start
        '"userPrincipalName:contoso"',
        '"mail:okafor"',
        '"mail:contoso.test"',
        '"displayName:kafor"',  # inside a token, not its start
        '"displayName:noor smith"',  # every token must match
    ],
)
def test_does_not_match_inside_a_upn_or_mail(emu: EmulatorServer, person: str, search: str) -> None:
    assert person not in _found(emu, search)


def test_the_portal_search_clauses_find_by_name_word_or_address_start(
    emu: EmulatorServer, person: str
) -> None:
    """graph.users.search_users ORs displayName, userPrincipalName and mail."""

    def portal(text: str) -> str:
        return " OR ".join(f'"{p}:{text}"' for p in ("displayName", "userPrincipalName", "mail"))

    assert person in _found(emu, portal("okafor"))  # by the name's words
    assert person in _found(emu, portal("noor.okafor@contoso.test"))  # by the whole address
    assert person not in _found(emu, portal("contoso.test"))  # not by the domain


@pytest.mark.parametrize(
    ("text", "tokens"),
    [
        # The page's own examples.
        ("hello world", ["hello", "world"]),
        ("HelloWorld", ["hello", "world"]),
        ("helloWORLD", ["hello", "world"]),
        ("HELLOworld", ["helloworld"]),
        ("HelloWORld", ["hello", "world"]),
        ("hello.world", ["hello", "world", "helloworld"]),
        ("hello123world", ["hello", "123", "world"]),
    ],
)
def test_tokenisation_follows_the_documented_examples(text: str, tokens: list[str]) -> None:
    assert search_tokens(text) == tokens


def test_documented_example_with_mixed_scripts() -> None:
    # 'displayName 李四(David Li) will match search strings such as 李四(David Li), 李四, David,
    # Li, David), (李四, Li 李'
    item = {"displayName": "李四(David Li)"}
    for text in ["李四(David Li)", "李四", "David", "Li", "David)", "(李四", "Li 李"]:
        assert parse_search(f'"displayName:{text}"').matches(item), text
