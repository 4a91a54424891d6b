"""OData quoting against hostile input: what goes into $filter, $search and paths."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone
from urllib.parse import unquote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from graph import odata

CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
# Printable text of any script, no control characters or surrogates, within the length limit.
clean_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cc", "Cs"), blacklist_characters="\u2028\u2029"),
    min_size=1,
    max_size=odata.MAX_LENGTH,
)


def unquote_literal(literal: str) -> str:
    """Parse an OData string literal the way a server does (inverse of odata.quote)."""
    assert literal[0] == literal[-1] == "'"
    inner = literal[1:-1]
    # Every quote inside must come in pairs: a single one would end the literal early.
    assert re.fullmatch(r"(?:[^']|'')*", inner), literal
    return inner.replace("''", "'")


def parse_search_term(term: str) -> tuple[str, str]:
    """Parse a "prop:value" $search clause with backslash escapes (inverse of search_term)."""
    assert term[0] == term[-1] == '"'
    inner = term[1:-1]
    value: list[str] = []
    i = 0
    while i < len(inner):
        char = inner[i]
        if char == "\\":
            assert i + 1 < len(inner), "dangling backslash"
            value.append(inner[i + 1])
            i += 2
            continue
        assert char != '"', "unescaped quote ends the term early"
        value.append(char)
        i += 1
    prop, _, rest = "".join(value).partition(":")
    return prop, rest


@given(clean_text)
def test_quote_round_trips_any_clean_text(value: str) -> None:
    assert unquote_literal(odata.quote(value)) == value


@given(clean_text)
def test_search_term_round_trips_any_clean_text(value: str) -> None:
    assert parse_search_term(odata.search_term("displayName", value)) == ("displayName", value)


@given(clean_text)
def test_path_segment_is_one_segment(value: str) -> None:
    if value in {".", ".."}:
        return
    encoded = odata.path_segment(value)
    assert "/" not in encoded and "#" not in encoded and "?" not in encoded
    assert unquote(encoded) == value


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("O'Brien", "'O''Brien'"),
        ("'", "''''"),
        ("a'' or 1 eq 1 or ''", "'a'''' or 1 eq 1 or '''''"),
        ("Zoë 张伟 😀", "'Zoë 张伟 😀'"),
        ("back\\slash", "'back\\slash'"),
    ],
)
def test_quote_examples(value: str, expected: str) -> None:
    assert odata.quote(value) == expected


def test_filter_injection_stays_inside_the_literal() -> None:
    hostile = "x') or startswith(displayName,'"
    filter_text = f"startswith(displayName,{odata.quote(hostile)})"
    assert filter_text == "startswith(displayName,'x'') or startswith(displayName,''')"
    assert unquote_literal(filter_text[len("startswith(displayName,") : -1]) == hostile


def test_search_escapes_quotes_and_backslashes() -> None:
    assert odata.search_term("mail", 'a"b\\c') == '"mail:a\\"b\\\\c"'
    # A value ending in a backslash must not escape the closing quote.
    assert odata.search_term("mail", "end\\") == '"mail:end\\\\"'


@pytest.mark.parametrize(
    "bad", ["a\x00b", "line\nbreak", "tab\there", "del\x7f", "c1\x85", "\u2028"]
)
def test_control_characters_are_refused(bad: str) -> None:
    for make in (odata.quote, odata.path_segment, lambda v: odata.search_term("mail", v)):
        with pytest.raises(ValueError, match="control character"):
            make(bad)


def test_length_limit_is_a_clear_value_error() -> None:
    at_limit = "a" * odata.MAX_LENGTH
    assert odata.quote(at_limit) == f"'{at_limit}'"
    for make in (odata.quote, odata.path_segment, lambda v: odata.search_term("mail", v)):
        with pytest.raises(
            ValueError, match=f"1000 characters long; the limit is {odata.MAX_LENGTH}"
        ):
            make("'" * 1000)


def test_empty_and_odd_values_are_refused() -> None:
    with pytest.raises(ValueError, match="must not be empty"):
        odata.quote("")
    with pytest.raises(ValueError, match="not allowed as a path segment"):
        odata.path_segment("..")
    with pytest.raises(ValueError, match="not a property name"):
        odata.search_term("displayName:x OR", "a")
    with pytest.raises(ValueError, match="surrogate"):
        odata.quote("\ud800")
    with pytest.raises(TypeError):
        odata.quote(5)  # type: ignore[arg-type]


def test_guest_upn_path_segment() -> None:
    upn = "ann_fabrikam.com#EXT#@contoso.onmicrosoft.com"
    assert odata.path_segment(upn) == "ann_fabrikam.com%23EXT%23@contoso.onmicrosoft.com"
    assert odata.path_segment("a/b?c%d") == "a%2Fb%3Fc%25d"


def test_datetime_literal_is_utc() -> None:
    moment = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=2)))
    assert odata.datetime_literal(moment) == "2026-01-02T01:04:05Z"
    assert odata.datetime_literal(moment.astimezone(UTC)) == "2026-01-02T01:04:05Z"
    with pytest.raises(ValueError, match="timezone-aware"):
        odata.datetime_literal(datetime(2026, 1, 1))


@given(st.text(min_size=1, max_size=odata.MAX_LENGTH))
def test_anything_is_either_refused_or_round_trips(value: str) -> None:
    try:
        literal = odata.quote(value)
    except ValueError:
        assert CONTROL.search(value) or any(0xD800 <= ord(c) <= 0xDFFF for c in value)
        return
    assert unquote_literal(literal) == value
