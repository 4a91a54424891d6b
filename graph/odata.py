"""OData quoting: the only way user input enters a Graph URL.

* :func:`quote` makes a string literal for ``$filter`` (``'`` doubled, wrapped in ``'``).
* :func:`search_term` makes one ``"property:value"`` clause for ``$search`` (``"`` and ``\\``
  escaped with a backslash).
* :func:`path_segment` URL-encodes one path segment (an id or a guest UPN with ``#EXT#``).

All three reject control characters and values longer than :data:`MAX_LENGTH` with a
``ValueError`` whose message says what was wrong, so a hostile or broken input fails before a
request is made instead of producing a query that means something else.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import UTC, datetime
from urllib.parse import quote as _url_quote

# Graph rejects very long URLs (about 2,000 characters for the whole query is safe); a single
# literal longer than this is never a legitimate search term, id or UPN.
MAX_LENGTH = 256

# Cc (C0, DEL, C1) plus the Unicode line and paragraph separators, which some parsers treat as
# line breaks.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def _check(value: str, what: str, *, allow_empty: bool = False) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a str, not {type(value).__name__}")
    if not value and not allow_empty:
        raise ValueError(f"{what} must not be empty")
    if len(value) > MAX_LENGTH:
        raise ValueError(f"{what} is {len(value)} characters long; the limit is {MAX_LENGTH}")
    match = _CONTROL.search(value)
    if match:
        raise ValueError(
            f"{what} contains a control character (U+{ord(match.group()):04X}) at "
            f"position {match.start()}"
        )
    for char in value:
        # Lone surrogates cannot be encoded as UTF-8 and would fail later, deep inside requests.
        if unicodedata.category(char) == "Cs":
            raise ValueError(f"{what} contains an unpaired surrogate (U+{ord(char):04X})")
    return value


def quote(value: str) -> str:
    """An OData string literal for ``$filter``: ``O'Brien`` becomes ``'O''Brien'``.

    Raises ValueError for an empty value, control characters or more than MAX_LENGTH characters.
    """
    _check(value, "a $filter string literal")
    return "'" + value.replace("'", "''") + "'"


_SEARCH_PROPERTY = re.compile(r"^[A-Za-z][A-Za-z0-9]*$")


def search_term(prop: str, value: str) -> str:
    """One ``$search`` clause ``"prop:value"`` with ``\\`` and ``"`` escaped by a backslash.

    Graph's ``$search`` matches tokenised words, so the value is passed as typed (no wildcard).
    Raises ValueError for a malformed property name, an empty value, control characters or
    more than MAX_LENGTH characters.
    """
    if not _SEARCH_PROPERTY.match(prop):
        raise ValueError(f"{prop!r} is not a property name")
    _check(value, "a $search value")
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{prop}:{escaped}"'


def path_segment(value: str) -> str:
    """``value`` URL-encoded as one path segment (``/`` ``#`` ``?`` ``%`` and all else escaped).

    A guest UPN ``ann_contoso.com#EXT#@tenant.onmicrosoft.com`` must not end the path at ``#``.
    Raises ValueError for an empty value, ``.`` or ``..``, control characters or more than
    MAX_LENGTH characters.
    """
    _check(value, "a path segment")
    if value in {".", ".."}:
        raise ValueError(f"{value!r} is not allowed as a path segment")
    return _url_quote(value, safe="@")


def datetime_literal(value: datetime) -> str:
    """An OData DateTimeOffset literal (UTC, ``Z``) for ``$filter`` from an aware datetime."""
    if not isinstance(value, datetime) or value.tzinfo is None:
        raise ValueError("a $filter date must be a timezone-aware datetime")
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
