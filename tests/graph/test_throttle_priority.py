"""``x-ms-throttle-priority: high`` on the calls an agent is waiting on.

Graph documents the request header for the identity and access class ("We recommend setting
priority to high only for the requests initiated by the user"; absent means normal):
https://learn.microsoft.com/en-us/graph/throttling-limits (Identity and access service limits,
"Other headers"). The portal's interactive view (``get_graph_client()``) sends it; the background
views (``with_priority("sync")`` / ``"bulk"``) send none, and so stay normal.
"""

from __future__ import annotations

import pytest

from graph import methods, users
from graph.client import THROTTLE_PRIORITY_HEADER
from tests.graph.conftest import MakeClient
from tests.graph.local_graph import Answer, LocalGraph, Recorded

USER = {"id": "u1", "displayName": "Sam Standard", "userPrincipalName": "sam@contoso.test"}


def _priority(request: Recorded) -> str | None:
    found = {k.lower(): v for k, v in request.headers.items()}
    return found.get(THROTTLE_PRIORITY_HEADER)


def test_interactive_identity_calls_carry_high_priority(
    local_graph: LocalGraph, make_client: MakeClient
) -> None:
    local_graph.script("GET", r"^/v1.0/users/[^/]+$", Answer(body=USER))
    client = make_client()
    users.get_user(client, "u1")
    [request] = local_graph.graph_requests()
    assert _priority(request) == "high"


@pytest.mark.parametrize("priority", ["sync", "bulk"])
def test_background_calls_carry_no_priority(
    local_graph: LocalGraph, make_client: MakeClient, priority: str
) -> None:
    local_graph.script("GET", r"^/v1.0/users/[^/]+$", Answer(body=USER))
    client = make_client().with_priority(priority)
    users.get_user(client, "u1")
    [request] = local_graph.graph_requests()
    assert _priority(request) is None


def test_the_header_is_only_sent_in_the_identity_and_access_class(
    local_graph: LocalGraph, make_client: MakeClient
) -> None:
    # Authentication methods are throttled as "identity and access reports", for which the
    # header is not documented.
    local_graph.script("GET", r"/authentication/methods$", Answer(body={"value": []}))
    methods.list_methods(make_client(), "u1")
    [request] = local_graph.graph_requests()
    assert _priority(request) is None


def test_the_token_request_carries_no_priority(
    local_graph: LocalGraph, make_client: MakeClient
) -> None:
    make_client().check_token()
    [token] = local_graph.token_requests
    assert THROTTLE_PRIORITY_HEADER not in {k.lower() for k in token["headers"]}


def test_batch_inner_requests_carry_the_priority(
    local_graph: LocalGraph, make_client: MakeClient
) -> None:
    """Graph throttles each inner request of a $batch on its own: each one carries the header."""
    answer = {
        "responses": [
            {"id": str(i), "status": 200, "body": {**USER, "id": f"u{i}"}} for i in range(2)
        ]
    }
    local_graph.script("POST", r"^/v1.0/\$batch$", Answer(body=answer))
    users.get_users(make_client(), ["u0", "u1"])
    [request] = local_graph.graph_requests()
    assert _priority(request) == "high"
    assert isinstance(request.body, dict)
    inner = [
        {k.lower(): v for k, v in (item.get("headers") or {}).items()}
        for item in request.body["requests"]
    ]
    assert [h.get(THROTTLE_PRIORITY_HEADER) for h in inner] == ["high", "high"]

    local_graph.reset()
    local_graph.script("POST", r"^/v1.0/\$batch$", Answer(body=answer))
    users.get_users(make_client().with_priority("sync"), ["u0", "u1"])
    [request] = local_graph.graph_requests()
    assert _priority(request) is None
    assert isinstance(request.body, dict)
    assert all(
        THROTTLE_PRIORITY_HEADER not in {k.lower() for k in (item.get("headers") or {})}
        for item in request.body["requests"]
    )
