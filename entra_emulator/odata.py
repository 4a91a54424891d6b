"""A small OData query parser: ``$filter``, ``$search``, ``$select``, ``$top``, ``$count``, ...

Only what the emulated Graph slice needs, but parsed for real: a malformed expression raises
``ODataError`` (rendered as Graph's 400) instead of being ignored, so a client that builds a bad
query fails here as it would against Graph.

Supported ``$filter`` grammar::

    expr    := and ('or' and)*
    and     := unary ('and' unary)*
    unary   := 'not' unary | compare
    compare := operand (('eq'|'ne'|'gt'|'ge'|'lt'|'le') operand)?
    operand := '(' expr ')' | func '(' expr ',' expr ')'
             | path '/' ('any'|'all') '(' var ':' expr ')' | path
             | 'string' (with '' for ') | number | true | false | null | GUID | DateTimeOffset

String comparisons ignore case, as directory queries do. ``$search`` takes ``"property:text"``
terms joined by ``AND`` / ``OR`` (AND binds tighter); on ``displayName`` and ``description`` a term
matches when every token of the text begins a token of the value (Graph's tokenisation), on any
other property when the value starts with the text (see ``SearchTerm``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

Predicate = Callable[[Mapping[str, Any], dict[str, Any]], Any]


class ODataError(ValueError):
    """A query option is malformed or unsupported. ``code`` is Graph's error code."""

    def __init__(self, message: str, code: str = "Request_BadRequest") -> None:
        super().__init__(message)
        self.code = code
        self.message = message


_TOKEN_RE = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<string>'(?:[^']|'')*')
  | (?P<datetime>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:\d{2}))
  | (?P<guid>[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}(?![\w-]))
  | (?P<number>-?\d+(?:\.\d+)?(?![\w-]))
  | (?P<ident>[A-Za-z_@][\w.@#]*)
  | (?P<punct>[(),:/])
    """,
    re.VERBOSE,
)

_COMPARISONS = {"eq", "ne", "gt", "ge", "lt", "le"}
_FUNCTIONS = {"startswith", "endswith", "contains"}


@dataclass(frozen=True)
class _Token:
    kind: str
    value: Any
    pos: int


def _tokenize(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    pos = 0
    while pos < len(text):
        match = _TOKEN_RE.match(text, pos)
        if match is None:
            raise ODataError(f"Invalid filter clause: syntax error at position {pos} in '{text}'.")
        kind = match.lastgroup or ""
        raw = match.group()
        if kind == "string":
            tokens.append(_Token("literal", raw[1:-1].replace("''", "'"), pos))
        elif kind == "datetime":
            tokens.append(_Token("literal", _parse_datetime(raw), pos))
        elif kind == "guid":
            tokens.append(_Token("literal", raw.lower(), pos))
        elif kind == "number":
            tokens.append(_Token("literal", float(raw) if "." in raw else int(raw), pos))
        elif kind == "ident":
            lowered = raw.lower()
            if lowered in {"true", "false"}:
                tokens.append(_Token("literal", lowered == "true", pos))
            elif lowered == "null":
                tokens.append(_Token("literal", None, pos))
            else:
                tokens.append(_Token("ident", raw, pos))
        elif kind == "punct":
            tokens.append(_Token("punct", raw, pos))
        pos = match.end()
    return tokens


def _parse_datetime(raw: str) -> datetime:
    return datetime.fromisoformat(raw.replace("Z", "+00:00"))


def _lookup(item: Any, path: list[str]) -> Any:
    value = item
    for part in path:
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return value


def _normalise_pair(left: Any, right: Any) -> tuple[Any, Any]:
    """Make two operands comparable: datetimes parse ISO strings, strings compare caselessly."""
    if isinstance(right, datetime) and isinstance(left, str):
        try:
            left = _parse_datetime(left)
        except ValueError:
            return left, None
    elif isinstance(left, datetime) and isinstance(right, str):
        try:
            right = _parse_datetime(right)
        except ValueError:
            return None, right
    if isinstance(left, str) and isinstance(right, str):
        return left.casefold(), right.casefold()
    return left, right


def _compare(op: str, left: Any, right: Any) -> bool:
    left, right = _normalise_pair(left, right)
    if op == "eq":
        return bool(left == right)
    if op == "ne":
        return bool(left != right)
    if left is None or right is None or isinstance(left, bool) != isinstance(right, bool):
        return False
    try:
        if op == "gt":
            return bool(left > right)
        if op == "ge":
            return bool(left >= right)
        if op == "lt":
            return bool(left < right)
        return bool(left <= right)
    except TypeError:
        return False


class _FilterParser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokenize(text)
        self.index = 0
        # Names of the features an expression uses; Graph needs the advanced-query header
        # (ConsistencyLevel: eventual) for some of them on directory objects.
        self.features: set[str] = set()
        # Every property path the expression reads, from the item; "*" stands for the element
        # of the collection before it (a lambda variable), e.g. ("targetResources", "*", "id").
        self.paths: list[tuple[str, ...]] = []
        self._lambda_paths: dict[str, tuple[str, ...]] = {}

    def fail(self, what: str) -> ODataError:
        token = self.peek()
        where = f"position {token.pos}" if token else "the end"
        return ODataError(f"Invalid filter clause: {what} at {where} in '{self.text}'.")

    def peek(self) -> _Token | None:
        return self.tokens[self.index] if self.index < len(self.tokens) else None

    def take(self) -> _Token:
        token = self.peek()
        if token is None:
            raise self.fail("unexpected end of expression")
        self.index += 1
        return token

    def expect_punct(self, value: str) -> None:
        token = self.peek()
        if token is None or token.kind != "punct" or token.value != value:
            raise self.fail(f"'{value}' expected")
        self.index += 1

    def at_keyword(self, word: str) -> bool:
        token = self.peek()
        return token is not None and token.kind == "ident" and token.value.lower() == word

    def parse(self) -> Predicate:
        if not self.tokens:
            raise ODataError("Invalid filter clause: the expression is empty.")
        node = self.parse_or()
        if self.peek() is not None:
            raise self.fail("unexpected token")
        return node

    def parse_or(self) -> Predicate:
        left = self.parse_and()
        while self.at_keyword("or"):
            self.index += 1
            right = self.parse_and()
            left = (lambda a, b: lambda item, env: bool(a(item, env)) or bool(b(item, env)))(
                left, right
            )
        return left

    def parse_and(self) -> Predicate:
        left = self.parse_unary()
        while self.at_keyword("and"):
            self.index += 1
            right = self.parse_unary()
            left = (lambda a, b: lambda item, env: bool(a(item, env)) and bool(b(item, env)))(
                left, right
            )
        return left

    def parse_unary(self) -> Predicate:
        if self.at_keyword("not"):
            self.index += 1
            self.features.add("not")
            inner = self.parse_unary()
            return lambda item, env: not bool(inner(item, env))
        return self.parse_compare()

    def parse_compare(self) -> Predicate:
        left = self.parse_operand()
        token = self.peek()
        if token is not None and token.kind == "ident" and token.value.lower() in _COMPARISONS:
            op = token.value.lower()
            self.index += 1
            self.features.add(op)
            right = self.parse_operand()
            return lambda item, env: _compare(op, left(item, env), right(item, env))
        return left

    def parse_operand(self) -> Predicate:
        token = self.take()
        if token.kind == "punct" and token.value == "(":
            inner = self.parse_or()
            self.expect_punct(")")
            return inner
        if token.kind == "literal":
            value = token.value
            return lambda item, env: value
        if token.kind != "ident":
            self.index -= 1
            raise self.fail("operand expected")
        name = token.value
        if name.lower() in _FUNCTIONS and self._next_is("("):
            return self.parse_function(name.lower())
        if name.lower() in _COMPARISONS | {"and", "or", "not"}:
            self.index -= 1
            raise self.fail("operand expected")
        return self.parse_path(name)

    def _next_is(self, punct: str) -> bool:
        token = self.peek()
        return token is not None and token.kind == "punct" and token.value == punct

    def parse_function(self, name: str) -> Predicate:
        self.features.add(name)
        self.expect_punct("(")
        first = self.parse_or()
        self.expect_punct(",")
        second = self.parse_or()
        self.expect_punct(")")

        def call(item: Mapping[str, Any], env: dict[str, Any]) -> bool:
            value, prefix = first(item, env), second(item, env)
            if not isinstance(value, str) or not isinstance(prefix, str):
                return False
            value, prefix = value.casefold(), prefix.casefold()
            if name == "startswith":
                return value.startswith(prefix)
            if name == "endswith":
                return value.endswith(prefix)
            return prefix in value

        return call

    def parse_path(self, first: str) -> Predicate:
        path = [first]
        while self._next_is("/"):
            self.index += 1
            part = self.take()
            if part.kind != "ident":
                self.index -= 1
                raise self.fail("property name expected")
            if part.value.lower() in {"any", "all"} and self._next_is("("):
                return self.parse_lambda(path, part.value.lower())
            path.append(part.value)
        self.paths.append(self._from_item(path))

        def read(item: Mapping[str, Any], env: dict[str, Any]) -> Any:
            if path[0] in env:
                return _lookup(env[path[0]], path[1:])
            return _lookup(item, path)

        return read

    def _from_item(self, path: list[str]) -> tuple[str, ...]:
        """``path`` from the item: a lambda variable is replaced by its collection's path."""
        if path[0] in self._lambda_paths:
            return (*self._lambda_paths[path[0]], *path[1:])
        return tuple(path)

    def parse_lambda(self, path: list[str], kind: str) -> Predicate:
        self.features.add(kind)
        self.expect_punct("(")
        var = self.take()
        if var.kind != "ident":
            self.index -= 1
            raise self.fail("lambda variable expected")
        self.expect_punct(":")
        collection_path = self._from_item(path)
        self.paths.append(collection_path)
        outer = self._lambda_paths.get(var.value)
        self._lambda_paths[var.value] = (*collection_path, "*")
        body = self.parse_or()
        if outer is None:
            del self._lambda_paths[var.value]
        else:
            self._lambda_paths[var.value] = outer
        self.expect_punct(")")
        variable = var.value

        def collection(item: Mapping[str, Any], env: dict[str, Any]) -> bool:
            source = _lookup(env[path[0]], path[1:]) if path[0] in env else _lookup(item, path)
            if not isinstance(source, list):
                return False
            results = (bool(body(item, {**env, variable: element})) for element in source)
            return any(results) if kind == "any" else all(results)

        return collection


@dataclass
class FilterExpression:
    """A parsed ``$filter``: ``matches(item)`` evaluates it; ``features`` names what it uses;
    ``paths`` are the property paths it reads (see ``_FilterParser.paths``)."""

    text: str
    predicate: Predicate
    features: frozenset[str]
    paths: tuple[tuple[str, ...], ...] = ()

    def matches(self, item: Mapping[str, Any]) -> bool:
        return bool(self.predicate(item, {}))


def parse_filter(text: str) -> FilterExpression:
    """Parse a ``$filter`` expression; raises ODataError (400) when it is malformed."""
    parser = _FilterParser(text)
    predicate = parser.parse()
    return FilterExpression(
        text, predicate, frozenset(parser.features), tuple(dict.fromkeys(parser.paths))
    )


# --- $search ------------------------------------------------------------------------------------

_SEARCH_TOKEN_RE = re.compile(
    r'\s*(?:(?P<term>"(?:[^"\\]|\\.)*")|(?P<op>AND|OR)\b|(?P<punct>[()]))'
)
# Graph's $search on directory objects (https://learn.microsoft.com/en-us/graph/search-query-parameter,
# "Using $search on directory object collections"): "The tokenized search support works only on
# the displayName and description fields. Any field of String type can be put in $search; fields
# other than displayName and description default to $filter startswith behavior." Tokens are cut
# at spaces, at a change from lower to upper case (only that way: "HELLOworld" is one token),
# between letters, digits and symbols; words separated only by symbols are also combined
# ("hello.world" gives "helloworld"); tokens match "independently of the original casing, and
# they are matched in any order". A search token matches a value token it begins (the page's
# example: "displayName:Guthr"; "Li 李" matches "李四(David Li)").
# Docs silent: whether symbol tokens ("." in the page's example) must match; they are not
# compared here.
TOKENIZED_SEARCH_PROPERTIES = frozenset({"displayname", "description"})
_SEARCH_RUN_RE = re.compile(r"[^\W\d_]+|\d+")


def search_tokens(text: str, *, combine: bool = True) -> list[str]:
    """The words Graph's tokenised ``$search`` cuts ``text`` into, casefolded; ``combine`` adds
    the words joined across symbols (used for the values: a search for "helloworld" finds
    "hello-world"; docs silent on combining on the search side, so the search text is not)."""
    tokens: list[str] = []
    for chunk in text.split():
        words: list[str] = []
        for run in _SEARCH_RUN_RE.findall(chunk):
            start = 0
            for i in range(1, len(run)):
                if run[i - 1].islower() and run[i].isupper():
                    words.append(run[start:i])
                    start = i
            words.append(run[start:])
        tokens.extend(word.casefold() for word in words)
        if combine and len(words) > 1 and re.search(r"[^\w\s]|_", chunk):
            tokens.append("".join(words).casefold())
    return tokens


@dataclass(frozen=True)
class SearchTerm:
    """One ``"property:text"`` term of ``$search``."""

    property: str
    text: str
    # The tokens of ``text`` (what a tokenised property is matched with).
    words: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.words:
            object.__setattr__(self, "words", tuple(search_tokens(self.text, combine=False)))

    def matches(self, item: Mapping[str, Any]) -> bool:
        value = _lookup(item, self.property.split("/"))
        values = value if isinstance(value, list) else [value]
        tokenized = self.property.casefold() in TOKENIZED_SEARCH_PROPERTIES
        wanted = self.words
        prefix = self.text.casefold()
        for candidate in values:
            if not isinstance(candidate, str):
                continue
            if not tokenized:
                # Every other property: $filter startswith (case-insensitive) on the whole value.
                if candidate.casefold().startswith(prefix):
                    return True
                continue
            have = search_tokens(candidate)
            if all(any(token.startswith(w) for token in have) for w in wanted):
                return True
        return False


@dataclass
class SearchExpression:
    """A parsed ``$search``: terms in disjunctive normal form (OR of ANDs)."""

    text: str
    clauses: list[list[SearchTerm]]

    def matches(self, item: Mapping[str, Any]) -> bool:
        return any(all(term.matches(item) for term in clause) for clause in self.clauses)


def parse_search(text: str) -> SearchExpression:
    """Parse ``$search``; raises ODataError for syntax Graph would refuse."""
    pos = 0
    clauses: list[list[SearchTerm]] = [[]]
    expect_term = True
    stripped = text.strip()
    if not stripped:
        raise ODataError("Syntax error: the $search expression is empty.")
    while pos < len(text):
        if not text[pos:].strip():
            break
        match = _SEARCH_TOKEN_RE.match(text, pos)
        if match is None:
            raise ODataError(
                f"Syntax error: character '{text[pos:].lstrip()[:1]}' is not valid at position "
                f"{pos} in '{text}'."
            )
        pos = match.end()
        if match.group("punct"):
            # Grouping is legal in Graph, but the portal never sends it; refuse rather than guess.
            raise ODataError(
                "Parentheses in $search are not supported by this emulator.",
                code="Request_UnsupportedQuery",
            )
        if match.group("op"):
            if expect_term:
                raise ODataError(f"Syntax error: operator '{match.group('op')}' without a term.")
            if match.group("op") == "OR":
                clauses.append([])
            expect_term = True
            continue
        if not expect_term:
            raise ODataError(f"Syntax error: two $search terms without AND/OR in '{text}'.")
        raw = match.group("term")[1:-1]
        body = re.sub(r"\\(.)", r"\1", raw)
        prop, sep, value = body.partition(":")
        if not sep or not prop.strip():
            raise ODataError(
                'Search is only supported with property names, e.g. "displayName:value".',
                code="Request_UnsupportedQuery",
            )
        if not value.strip():
            raise ODataError(f"Syntax error: empty search value for '{prop}'.")
        term = SearchTerm(prop.strip(), value.strip())
        if term.property.casefold() in TOKENIZED_SEARCH_PROPERTIES and not term.words:
            raise ODataError(f"Syntax error: no word to search for in '{prop}'.")
        clauses[-1].append(term)
        expect_term = False
    if expect_term:
        raise ODataError(f"Syntax error: $search '{text}' ends with an operator.")
    return SearchExpression(text, clauses)


# --- the query as a whole -----------------------------------------------------------------------


@dataclass
class ODataQuery:
    """The system query options of one request, parsed.

    ``select``/``expand`` are None when absent. ``filter`` and ``search`` are parsed expressions;
    ``matches(item)`` applies both. ``skiptoken`` is the raw paging token (see graph_core).
    """

    select: list[str] | None = None
    top: int | None = None
    count: bool = False
    search: SearchExpression | None = None
    expand: list[str] | None = None
    filter: FilterExpression | None = None
    orderby: list[tuple[str, bool]] = field(default_factory=list)  # (property, descending)
    skiptoken: str | None = None

    def matches(self, item: Mapping[str, Any]) -> bool:
        if self.filter is not None and not self.filter.matches(item):
            return False
        return self.search is None or self.search.matches(item)


def _split_list(raw: str) -> list[str]:
    return [part.strip() for part in raw.split(",") if part.strip()]


def parse_query(args: Mapping[str, str]) -> ODataQuery:
    """Build an ODataQuery from decoded query-string arguments (``$`` prefix optional)."""

    def get(name: str) -> str | None:
        value = args.get(f"${name}")
        return value if value is not None else args.get(name)

    query = ODataQuery()
    if (raw := get("select")) is not None:
        query.select = _split_list(raw)
        if not query.select:
            raise ODataError("Invalid $select: no property named.")
    if (raw := get("expand")) is not None:
        query.expand = _split_list(raw)
    if (raw := get("top")) is not None:
        if not re.fullmatch(r"\d+", raw.strip()):
            raise ODataError(f"Invalid value '{raw}' for $top query option found.")
        query.top = int(raw)
    if (raw := get("count")) is not None:
        if raw.lower() not in {"true", "false"}:
            raise ODataError(f"Invalid value '{raw}' for $count query option found.")
        query.count = raw.lower() == "true"
    if (raw := get("filter")) is not None:
        query.filter = parse_filter(raw)
    if (raw := get("search")) is not None:
        query.search = parse_search(raw)
    if (raw := get("orderby")) is not None:
        for part in _split_list(raw):
            pieces = part.split()
            if len(pieces) > 2 or (len(pieces) == 2 and pieces[1].lower() not in {"asc", "desc"}):
                raise ODataError(f"Invalid $orderby clause '{part}'.")
            query.orderby.append((pieces[0], len(pieces) == 2 and pieces[1].lower() == "desc"))
    query.skiptoken = get("skiptoken")
    return query
