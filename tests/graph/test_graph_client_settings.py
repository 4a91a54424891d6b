"""portal/graph_client.py: the process's GraphClient from Django settings."""

from __future__ import annotations

from typing import Any

import pytest

from graph import BudgetRate
from portal.config import ConfigError
from portal.graph_client import get_graph_client, graph_config_from_settings, reset_graph_client


def test_config_follows_the_settings(settings: Any) -> None:
    settings.GRAPH_BUDGET_REPORTS = "4/8"
    settings.GRAPH_INTERACTIVE_RESERVE = 2
    config = graph_config_from_settings()
    assert config.budgets["reports"] == BudgetRate(4, 8.0)
    assert config.interactive_reserve == 2
    assert config.graph_url == settings.GRAPH_URL
    assert config.ca_bundle == settings.ENTRA_CA_BUNDLE
    assert settings.ENTRA_TENANT_ID in config.budget_prefix


def test_malformed_budget_names_the_setting(settings: Any) -> None:
    settings.GRAPH_BUDGET_IDENTITY = "lots"
    with pytest.raises(ConfigError, match=r"^GRAPH_BUDGET_IDENTITY"):
        graph_config_from_settings()


def test_one_client_per_process() -> None:
    reset_graph_client()
    try:
        first = get_graph_client()
        assert get_graph_client() is first
        sync = first.with_priority("sync")
        assert sync.budget is first.budget and sync.priority == "sync"
    finally:
        reset_graph_client()
