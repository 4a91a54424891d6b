"""The one door to Microsoft Graph: token (MSAL), session, retries, paging, $batch, typed errors,
the shared request budget, OData quoting and typed results. No Django; nothing else in the
project imports ``requests`` or ``msal``.

Operation modules: :mod:`graph.users`, :mod:`graph.groups`, :mod:`graph.methods`,
:mod:`graph.sessions`, :mod:`graph.requirements` (beta), :mod:`graph.roles`,
:mod:`graph.audit_logs`. Each function takes a :class:`GraphClient` first.
"""

from __future__ import annotations

from graph.budget import BudgetRate, Priority, RequestBudget, classify_path
from graph.client import GraphClient, GraphConfig
from graph.errors import (
    GraphAuthError,
    GraphBadRequest,
    GraphError,
    GraphNotFound,
    GraphPermissionDenied,
    GraphProtocolError,
    GraphThrottled,
    GraphTokenUnavailable,
    GraphTransient,
)

__all__ = [
    "BudgetRate",
    "GraphAuthError",
    "GraphBadRequest",
    "GraphClient",
    "GraphConfig",
    "GraphError",
    "GraphNotFound",
    "GraphPermissionDenied",
    "GraphProtocolError",
    "GraphThrottled",
    "GraphTokenUnavailable",
    "GraphTransient",
    "Priority",
    "RequestBudget",
    "classify_path",
]
