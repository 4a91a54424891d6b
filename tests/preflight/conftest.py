"""Fixtures of the preflight tests: the emulator, given back after each test."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from accounts.capabilities import forget_capabilities
from tests.plugin import quiet_emulator_throttle
from tests.preflight.preflight_helpers import control


@pytest.fixture
def emulator_app(fresh_tenant: Any) -> Iterator[Any]:
    """The emulator, re-seeded before and after; its licence back to P2 after, and the cached
    capabilities forgotten both times."""
    quiet_emulator_throttle(fresh_tenant)
    forget_capabilities()
    try:
        yield fresh_tenant
    finally:
        control(fresh_tenant, "reset", {})
        control(fresh_tenant, "licence", {"licence": "p2"})
        forget_capabilities()
