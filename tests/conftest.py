"""Fixtures shared by every test package: the personas (tests/personas.py) and ``tenant``.

The infrastructure fixtures (``emulator``, ``emulator_faults``, ``fresh_tenant``,
``real_graph_budget``, ``celery_worker``, ``redis_client``) live in tests/plugin.py, loaded with
``-p tests.plugin``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from tests.personas import PERSONAS, Persona, Personas
from tests.plugin import quiet_emulator_throttle

if TYPE_CHECKING:
    from entra_emulator.server import EmulatorServer


@pytest.fixture
def tenant(fresh_tenant: EmulatorServer, db: None) -> EmulatorServer:
    """The emulator with a freshly seeded tenant and its own throttle off, for a test that
    changes directory data through the portal (faults, throttle and the seed are restored
    afterwards by ``fresh_tenant``). Gives the test a database too."""
    quiet_emulator_throttle(fresh_tenant)
    return fresh_tenant


@pytest.fixture
def personas() -> Personas:
    """Every persona (``personas.agent``, ``personas.privileged_target``, ...)."""
    return PERSONAS


@pytest.fixture
def agent() -> Persona:
    """Ada Agent: Helpdesk.Agent, no directory role."""
    return PERSONAS.agent


@pytest.fixture
def lead() -> Persona:
    """Leo Lead: Helpdesk.Lead, no directory role."""
    return PERSONAS.lead


@pytest.fixture
def admin() -> Persona:
    """Ana Admin: Helpdesk.Admin, Privileged Role Administrator."""
    return PERSONAS.admin


@pytest.fixture
def outsider() -> Persona:
    """Otto Outsider: signs in to the tenant but holds no portal role."""
    return PERSONAS.outsider


@pytest.fixture
def standard_target() -> Persona:
    """Sam Standard: a standard target (Authenticator and phone registered)."""
    return PERSONAS.standard_target


@pytest.fixture
def privileged_target() -> Persona:
    """Priya Privileged: a privileged target (Authentication Administrator)."""
    return PERSONAS.privileged_target
