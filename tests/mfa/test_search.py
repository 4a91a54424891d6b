"""``/users/?q=``: the live search, against the real HTTPS emulator and the real Graph client."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from pytest_django.fixtures import Settings

from portal.graph_client import reset_graph_client
from tests.personas import PERSONAS, signed_in

pytestmark = pytest.mark.django_db

HTMX = {"HTTP_HX_REQUEST": "true"}


@pytest.fixture
def agent_client(emulator: Any) -> Any:
    return signed_in(PERSONAS.agent)


@pytest.fixture
def no_retries(settings: Settings) -> Iterator[None]:
    """A client that gives up on the first failure, so a failing search answers at once."""
    settings.GRAPH_MAX_RETRIES = 0
    reset_graph_client()
    yield
    reset_graph_client()


def test_page_without_a_query_invites_typing(agent_client: Any) -> None:
    response = agent_client.get("/users/")
    assert response.status_code == 200
    html = response.content.decode()
    assert 'hx-trigger="input changed delay:250ms, search"' in html
    assert 'hx-sync="this:replace"' in html
    assert 'data-search-state="empty-query"' in html


def test_search_finds_people_by_name_upn_and_mail(agent_client: Any) -> None:
    by_name = agent_client.get("/users/", {"q": "Sam Standard"}, **HTMX)
    assert by_name.status_code == 200
    html = by_name.content.decode()
    assert "<html" not in html  # the fragment only
    assert PERSONAS.standard_target.upn in html
    assert f"/users/{PERSONAS.standard_target.oid}/" in html
    assert "Enabled" in html and "Sales" in html

    by_upn = agent_client.get("/users/", {"q": "sam.standard"}, **HTMX)
    assert PERSONAS.standard_target.display_name in by_upn.content.decode()


def test_privileged_people_carry_the_badge(agent_client: Any) -> None:
    response = agent_client.get("/users/", {"q": "Priya"}, **HTMX)
    html = response.content.decode()
    assert PERSONAS.privileged_target.upn in html
    row = html.split(PERSONAS.privileged_target.upn, 1)[1].split("</a>", 1)[0]
    assert "Privileged" in row

    sam = agent_client.get("/users/", {"q": "sam.standard"}, **HTMX).content.decode()
    sam_row = sam.split(PERSONAS.standard_target.upn, 1)[1].split("</a>", 1)[0]
    assert "Privileged" not in sam_row


def test_no_match_says_so(agent_client: Any) -> None:
    response = agent_client.get("/users/", {"q": "zzqxnobody"}, **HTMX)
    assert response.status_code == 200
    assert 'data-search-state="no-match"' in response.content.decode()


def test_too_long_input_is_a_400_with_a_message(agent_client: Any) -> None:
    response = agent_client.get("/users/", {"q": "a" * 121}, **HTMX)
    assert response.status_code == 400
    html = response.content.decode()
    assert 'data-search-state="too-long"' in html and "at most 120 characters" in html


def test_hostile_input_is_quoted_not_obeyed(agent_client: Any, emulator: Any) -> None:
    # Quote characters and OData syntax are searched for as text: no error, no widened match.
    for text in ['" OR "displayName:a', "O'Brien') or (1 eq 1", 'sam\\" or "x']:
        response = agent_client.get("/users/", {"q": text}, **HTMX)
        assert response.status_code == 200, text
        html = response.content.decode()
        assert 'data-search-state="failed"' not in html
        assert PERSONAS.privileged_target.upn not in html
    # A control character never reaches Graph: the quoting refuses it.
    refused = agent_client.get("/users/", {"q": "sam\x00"}, **HTMX)
    assert refused.status_code == 400
    assert 'data-search-state="refused"' in refused.content.decode()


def test_throttled_search_says_when_to_try_again(
    agent_client: Any, emulator_faults: Any, no_retries: None
) -> None:
    emulator_faults.faults.add_fail_next(
        "GET", r"^/v1\.0/users$", 429, "TooManyRequests", "Too many requests", count=1
    )
    response = agent_client.get("/users/", {"q": "sam"}, **HTMX)
    assert response.status_code == 503
    html = response.content.decode()
    assert 'data-search-state="throttled"' in html
    assert "TooManyRequests" in html and "Request-id" in html


def test_failed_search_shows_graph_code_and_request_id(
    agent_client: Any, emulator_faults: Any, no_retries: None
) -> None:
    emulator_faults.faults.add_fail_next(
        "GET", r"^/v1\.0/users$", 403, "Authorization_RequestDenied", "Insufficient privileges"
    )
    response = agent_client.get("/users/", {"q": "sam"})
    assert response.status_code == 502
    html = response.content.decode()
    assert "<html" in html  # a full page for a plain request
    assert 'data-search-state="failed"' in html
    assert "Authorization_RequestDenied" in html and "Insufficient privileges" in html
    request_id = html.split("Request-id <code", 1)[1].split(">", 1)[1].split("<", 1)[0]
    assert len(request_id) >= 32  # the emulator's GUID, not "none"
