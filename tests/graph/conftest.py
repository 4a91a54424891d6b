"""Fixtures of the graph package's tests: a scripted local HTTPS server and clients for it."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from graph import BudgetRate, GraphClient, GraphConfig
from tests.graph.local_graph import CLIENT_ID, CLIENT_SECRET, TENANT, LocalGraph


@pytest.fixture(scope="session")
def _local_graph_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalGraph]:
    server = LocalGraph(Path(tmp_path_factory.mktemp("local-graph")))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def local_graph(_local_graph_server: LocalGraph) -> LocalGraph:
    """The scripted server, with no scripts and no recorded requests."""
    _local_graph_server.reset()
    return _local_graph_server


@pytest.fixture
def budget_prefix() -> str:
    """Redis key prefix of one test's budget (Redis is also emptied before each test)."""
    return f"test:budget:{uuid.uuid4().hex}"


MakeClient = Callable[..., GraphClient]


@pytest.fixture
def make_client(local_graph: LocalGraph, budget_prefix: str) -> MakeClient:
    """``make_client(**overrides)``: a GraphClient for the local server, with fast retries."""

    def make(**overrides: Any) -> GraphClient:
        host = local_graph.base_url.removeprefix("https://")
        values: dict[str, Any] = {
            "tenant_id": TENANT,
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "login_host": host,
            "graph_url": local_graph.base_url,
            "ca_bundle": str(local_graph.ca_path),
            "timeout": 2.0,
            "max_retries": 3,
            "max_retry_wait": 5.0,
            "redis_url": os.environ["REDIS_URL"],
            "budgets": {"reports": BudgetRate(1000, 1), "identity": BudgetRate(1000, 1)},
            "budget_prefix": budget_prefix,
            "backoff_base": 0.01,
        }
        values.update(overrides)
        return GraphClient(GraphConfig(**values))

    return make
