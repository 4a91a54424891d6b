"""Contract test: everything the client can send exists in Microsoft Graph's v1.0 metadata.

The operations are enumerated from the code (graph.operations.REGISTRY, filled by importing every
module of the package), and GraphClient accepts nothing but a registered operation, so a new
function cannot add a request that escapes this test. Checked against tests/data/
graph_csdl_subset.xml (extracted from Microsoft's CSDL by tests/graph/csdl.py).
"""

from __future__ import annotations

import ast
import inspect
import pkgutil
from pathlib import Path

import pytest

import graph
from graph.beta import BETA_PATHS
from graph.operations import Operation
from tests.graph.csdl import (
    SUBSET_PATH,
    ContractError,
    Metadata,
    all_operations,
    build_subset,
    check_operation,
)

FULL_CSDL = Path("/work/shared/graph/v1.0.csdl")
OPERATIONS = all_operations()
V1_OPERATIONS = sorted(
    (op for op in OPERATIONS.values() if isinstance(op, Operation) and op.version == "v1.0"),
    key=lambda op: op.name,
)


@pytest.fixture(scope="module")
def metadata() -> Metadata:
    return Metadata.load(SUBSET_PATH)


def test_subset_keeps_its_attribution() -> None:
    text = SUBSET_PATH.read_text()
    for needle in (
        "msgraph-metadata",
        "schemas/v1.0-Prod.csdl",
        "f54f11b60956ea7b185ca0447b2b80805836ec7b",
        "MIT",
        "Copyright (c) 2018 Microsoft Graph",
    ):
        assert needle in text


@pytest.mark.parametrize("op", V1_OPERATIONS, ids=lambda op: op.name)
def test_operation_resolves_against_the_metadata(metadata: Metadata, op: Operation) -> None:
    check_operation(metadata, op)


def test_every_operation_is_v1_or_listed_beta() -> None:
    beta_ops = {op.path for op in OPERATIONS.values() if isinstance(op, Operation)} - {
        op.path for op in V1_OPERATIONS
    }
    assert all(path.startswith("/beta/") for path in beta_ops)
    listed = {path for path, why in BETA_PATHS if why.strip()}
    assert beta_ops == listed, "graph/beta.py must list exactly the beta paths in use, with why"


def test_the_checker_can_fail(metadata: Metadata) -> None:
    cases = [
        Operation("bad.segment", "GET", "/v1.0/users/{user_id}/authentication/phoneMethod", "x"),
        Operation("bad.select", "GET", "/v1.0/users/{user_id}", "x", select=("displayNam",)),
        Operation("bad.key", "GET", "/v1.0/users/{user_id}/{other_id}", "x"),
        Operation(
            "bad.body",
            "POST",
            "/v1.0/roleManagement/directory/roleAssignments",
            "x",
            body=("principalId", "scheduleInfo.expiration.type"),
        ),
        Operation(
            "bad.filter",
            "GET",
            "/v1.0/auditLogs/directoryAudits",
            "x",
            filter_properties=("initiatedBy/user/upn",),
        ),
        Operation(
            "bad.expand",
            "GET",
            "/v1.0/roleManagement/directory/roleAssignments",
            "x",
            expand=("principals",),
        ),
        Operation("bad.action", "POST", "/v1.0/groups/{group_id}/revokeSignInSessions", "x"),
        Operation(
            "bad.alternate_key",
            "GET",
            "/v1.0/servicePrincipals(displayName='{name}')/appRoleAssignedTo",
            "x",
        ),
    ]
    for op in cases:
        with pytest.raises(ContractError):
            check_operation(metadata, op)


@pytest.mark.skipif(not FULL_CSDL.is_file(), reason="Microsoft's full CSDL is not on this machine")
def test_subset_is_current() -> None:
    """Regenerate with: .venv/bin/python -m tests.graph.csdl /work/shared/graph/v1.0.csdl"""
    assert build_subset(Metadata.load(FULL_CSDL)) == SUBSET_PATH.read_text()


_REFERENCED_MODULES = {
    "users",
    "groups",
    "methods",
    "sessions",
    "requirements",
    "roles",
    "audit_logs",
    "reports",
    "applications",
}
OPERATION_MODULES = [
    m.name for m in pkgutil.iter_modules(graph.__path__) if m.name in _REFERENCED_MODULES
]


@pytest.mark.parametrize("module_name", OPERATION_MODULES)
def test_every_public_function_names_its_reference(module_name: str) -> None:
    module = __import__(f"graph.{module_name}", fromlist=["_"])
    tree = ast.parse(inspect.getsource(module))
    source = inspect.getsource(module).splitlines()
    functions = [
        node
        for node in tree.body
        if isinstance(node, ast.FunctionDef)
        and not node.name.startswith("_")
        and "client" in [a.arg for a in node.args.args]
    ]
    assert functions, module_name
    for node in functions:
        body = "\n".join(source[node.lineno - 1 : node.end_lineno])
        assert "# Reference: https://learn.microsoft.com/" in body, f"{module_name}.{node.name}"


def test_no_module_outside_graph_imports_requests_or_msal() -> None:
    root = Path(graph.__file__).resolve().parents[1]
    offenders = []
    for path in root.rglob("*.py"):
        relative = path.relative_to(root)
        if relative.parts[0] in {"graph", "tests", ".venv", "entra_emulator", "bench", "var"}:
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            if any(n.split(".")[0] in {"requests", "msal"} for n in names):
                offenders.append(str(relative))
    assert offenders == []
