"""/healthz and /readyz against the real database, the run's Redis and the emulator's token
endpoint through the real Graph client."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from django.test import Client

from portal import health
from portal.devrun import free_port
from portal.graph_client import get_graph_client, reset_graph_client


def body(response: Any) -> dict[str, Any]:
    assert response["Content-Type"] == "application/json"
    return json.loads(response.content)  # type: ignore[no-any-return]


def test_healthz_needs_no_sign_in_and_no_database(client: Client) -> None:
    # No django_db mark: pytest-django refuses any database access, so this also proves
    # that liveness does not touch the database.
    response = client.get("/healthz")
    assert response.status_code == 200
    assert body(response) == {"status": "ok"}
    assert "no-cache" in response["Cache-Control"] or "max-age=0" in response["Cache-Control"]


@pytest.mark.django_db(transaction=True)
def test_readyz_ok_when_everything_answers(client: Client, emulator: Any) -> None:
    response = client.get("/readyz")
    data = body(response)
    assert data["status"] == "ok", data
    assert response.status_code == 200
    assert set(data["checks"]) == {"database", "redis", "graph_token", "graph_budget"}
    assert all(check["ok"] for check in data["checks"].values())


@pytest.mark.django_db(transaction=True)
def test_readyz_names_a_failing_redis(client: Client, emulator: Any, settings: Any) -> None:
    # A loopback port where nothing listens: the connection is refused at once.
    settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"
    response = client.get("/readyz")
    data = body(response)
    assert response.status_code == 503
    assert data["status"] == "failing"
    assert data["checks"]["redis"]["ok"] is False
    assert "ConnectionError" in data["checks"]["redis"]["error"]
    assert data["checks"]["database"]["ok"] is True


@pytest.mark.django_db(transaction=True)
def test_readyz_names_a_failing_graph_token(client: Client, emulator_faults: Any) -> None:
    emulator_faults.faults.configure(token_endpoint_down=True)
    # A new Graph client, as in a freshly started process: nothing in its token cache.
    reset_graph_client()
    try:
        response = client.get("/readyz")
    finally:
        reset_graph_client()
    data = body(response)
    assert response.status_code == 503
    assert data["status"] == "failing"
    assert data["checks"]["graph_token"]["ok"] is False
    assert data["checks"]["graph_token"]["error"]
    assert data["checks"]["redis"]["ok"] is True


@pytest.mark.django_db(transaction=True)
def test_readyz_names_a_stalled_budget(client: Client, emulator: Any, settings: Any) -> None:
    settings.GRAPH_BUDGET_STALL_SECONDS = 0.4
    settings.GRAPH_BUDGET_REPORTS = "2/100"  # Graph's real budget is 5/10; the tests raise it
    reset_graph_client()
    try:
        budget = get_graph_client().budget
        budget.acquire("reports", tokens=2)
        # An agent's page waits its turn; nothing is granted in the class from then on.
        assert not budget.try_acquire("reports", fair_key="agent-oid", hold_seconds=30)
        assert client.get("/readyz").status_code == 200  # waiting, but not for long yet
        time.sleep(0.6)
        response = client.get("/readyz")
    finally:
        reset_graph_client()
    data = body(response)
    assert response.status_code == 503
    assert data["checks"]["graph_budget"]["ok"] is False
    assert "reports: 1 call(s) waiting and no grant" in data["checks"]["graph_budget"]["error"]
    assert data["checks"]["graph_token"]["ok"] is True


@pytest.mark.django_db(transaction=True)
def test_readyz_names_a_long_429_pause(client: Client, emulator: Any, settings: Any) -> None:
    settings.GRAPH_BUDGET_STALL_SECONDS = 30
    budget = get_graph_client().budget
    budget.record_pause("identity", 10)
    assert client.get("/readyz").status_code == 200  # a pause shorter than the threshold
    budget.record_pause("identity", 60)
    data = body(client.get("/readyz"))
    assert data["status"] == "failing"
    assert "identity: paused by a 429" in data["checks"]["graph_budget"]["error"]


def test_a_hung_check_is_cut_off_by_the_time_box(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(health, "CHECK_TIMEOUT_SECONDS", 0.3)
    started = time.monotonic()
    results = health.run_checks({"slow": lambda: time.sleep(2), "fast": lambda: None})
    assert time.monotonic() - started < 1.5
    assert results["slow"] == {"ok": False, "error": "timed out after 0.3 s", "ms": 300}
    assert results["fast"]["ok"] is True


def test_readyz_refuses_post(client: Client) -> None:
    assert client.post("/readyz").status_code == 405
