"""JSON batching: limits, dependsOn, and inner statuses (429 inside a 200 batch)."""

from __future__ import annotations

from typing import Any

import pytest

from entra_emulator.batch_api import execution_order, validate_batch
from entra_emulator.graph_core import GraphHttpError
from entra_emulator.methods_api import PHONE_METHOD_IDS
from entra_emulator.seed import PERSONAS
from tests.emulator.graph_caller import GraphCaller, app_token

SAM = PERSONAS["sam.standard"]["id"]


def _request(request_id: str, url: str = "/users", **extra: Any) -> dict[str, Any]:
    return {"id": request_id, "method": "GET", "url": url, **extra}


def test_batch_limits_and_ids() -> None:
    assert len(validate_batch({"requests": [_request(str(i)) for i in range(20)]})) == 20
    bad_bodies: list[dict[str, Any]] = [
        {"requests": [_request(str(i)) for i in range(21)]},
        {"requests": [_request("1"), _request("1")]},
        {"requests": []},
        {"requests": [{"id": "1", "method": "GET"}]},
        {"requests": [_request("1", dependsOn=["2"])]},
        {"requests": [{"id": "1", "method": "POST", "url": "/x", "body": {}}]},
    ]
    for bad in bad_bodies:
        with pytest.raises(GraphHttpError) as refused:
            validate_batch(bad)
        assert refused.value.status == 400


def test_depends_on_orders_execution_and_cycles_are_refused() -> None:
    requests = validate_batch(
        {"requests": [_request("a", dependsOn=["c"]), _request("b"), _request("c")]}
    )
    assert [r["id"] for r in execution_order(requests)] == ["c", "a", "b"]
    cyclic = validate_batch(
        {"requests": [_request("a", dependsOn=["b"]), _request("b", dependsOn=["a"])]}
    )
    with pytest.raises(GraphHttpError):
        execution_order(cyclic)


@pytest.fixture
def graph(fresh_tenant: Any) -> GraphCaller:
    return GraphCaller(fresh_tenant, app_token(fresh_tenant))


def test_batch_answers_each_inner_request(graph: GraphCaller) -> None:
    graph.server.throttle.configure(enabled=False)
    answer = graph.post(
        "/$batch",
        json={
            "requests": [
                _request("1", f"/users/{SAM}/authentication/methods"),
                _request("2", "/users/no-such-user/authentication/methods"),
                {
                    "id": "3",
                    "method": "DELETE",
                    "dependsOn": ["2"],
                    "url": f"/users/{SAM}/authentication/phoneMethods/{PHONE_METHOD_IDS['mobile']}",
                },
            ]
        },
    )
    assert answer.status_code == 200, answer.text
    by_id = {r["id"]: r for r in answer.json()["responses"]}
    assert [r["id"] for r in answer.json()["responses"]] == ["1", "2", "3"]
    assert by_id["1"]["status"] == 200 and by_id["1"]["body"]["value"]
    assert by_id["2"]["status"] == 404
    assert by_id["3"]["status"] == 424  # its dependency failed, so it never ran
    assert any(m["id"] == PHONE_METHOD_IDS["mobile"] for m in by_id["1"]["body"]["value"])
    too_many = graph.post("/$batch", json={"requests": [_request(str(i)) for i in range(21)]})
    assert too_many.status_code == 400


def test_inner_requests_are_throttled_one_by_one(graph: GraphCaller) -> None:
    graph.server.throttle.configure(limits={"reports": (2, 60.0)}, enabled=True)
    answer = graph.post(
        "/$batch",
        json={
            "requests": [_request(str(i), f"/users/{SAM}/authentication/methods") for i in range(4)]
        },
    )
    assert answer.status_code == 200, answer.text
    statuses = [r["status"] for r in answer.json()["responses"]]
    assert statuses == [200, 200, 429, 429]
    throttled = answer.json()["responses"][2]
    assert int(throttled["headers"]["Retry-After"]) >= 1
    assert throttled["body"]["error"]["code"] == "TooManyRequests"


def test_batch_needs_a_valid_token(fresh_tenant: Any) -> None:
    anonymous = GraphCaller(fresh_tenant, "not-a-token")
    assert anonymous.post("/$batch", json={"requests": [_request("1")]}).status_code == 401
