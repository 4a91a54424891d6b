"""The shape of the code: imports between the portal's apps point one way, and no hand-written
module grows past what one reader holds in mind.

The order (DESIGN.md, "Code layout"; docs/DEVNOTES.md) is

    preflight -> mfa -> roles -> outbox -> audit -> accounts -> graph

and an app may import only the apps to its right. Every import counts, at the top of a module or
inside a function: a lazy import is still a dependency. A lower app that must reach a higher one
does it through a signal or a registry the higher app fills in its ``AppConfig.ready()``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LAYERS = ("preflight", "bulk", "mfa", "roles", "outbox", "audit", "accounts", "graph")
# What an app may take from the project package: the process's Graph client and Celery app.
PORTAL_ALLOWED = frozenset({"portal.graph_client", "portal.celery"})
MAX_MODULE_LINES = 700


def imported_modules(source: str) -> list[tuple[int, str]]:
    """Every absolute module name ``source`` imports, with its line, wherever the import is."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
    return found


def violations(app: str, source: str) -> list[str]:
    """The imports in ``source`` (a module of ``app``) that run against the layering."""
    rank = LAYERS.index(app)
    bad: list[str] = []
    for line, module in imported_modules(source):
        top = module.split(".")[0]
        if top in LAYERS and LAYERS.index(top) < rank:
            bad.append(f"line {line}: {app} imports {module}")
        elif top == "entra_emulator":
            bad.append(f"line {line}: {app} imports the emulator ({module})")
        elif top == "portal" and app == "graph":
            bad.append(f"line {line}: graph imports {module} (graph knows no Django app)")
        elif top == "portal" and not any(
            module == allowed or module.startswith(allowed + ".") for allowed in PORTAL_ALLOWED
        ):
            bad.append(f"line {line}: {app} imports {module} from the project package")
    return bad


def app_modules(app: str) -> list[Path]:
    return sorted(p for p in (ROOT / app).rglob("*.py") if "migrations" not in p.parts)


def test_the_checker_sees_top_level_and_lazy_imports_against_the_direction() -> None:
    """The check itself can fail: an upward import, at the top or inside a function, is seen."""
    source = (
        "from outbox import engine\n"
        "import audit.models\n"
        "def later():\n"
        "    from mfa.policy import target_profile_forget\n"
        "    import roles.services\n"
    )
    assert violations("outbox", source) == [
        "line 4: outbox imports mfa.policy",
        "line 5: outbox imports roles.services",
    ]
    assert violations("mfa", source) == []
    assert violations("audit", "from portal.settings import X\n") == [
        "line 1: audit imports portal.settings from the project package"
    ]


@pytest.mark.parametrize("app", LAYERS)
def test_imports_between_apps_point_one_way(app: str) -> None:
    found = [
        f"{path.relative_to(ROOT)} {problem}"
        for path in app_modules(app)
        for problem in violations(app, path.read_text())
    ]
    assert found == [], "imports against mfa -> roles -> outbox -> audit -> accounts -> graph"


def test_the_emulator_imports_no_portal_code() -> None:
    """The emulator shares no code with graph or the apps (a misunderstanding of Graph would be
    copied into both and every test would still pass)."""
    found = [
        f"{path.relative_to(ROOT)} line {line}: {module}"
        for path in sorted((ROOT / "entra_emulator").rglob("*.py"))
        for line, module in imported_modules(path.read_text())
        if module.split(".")[0] in {*LAYERS, "portal"}
    ]
    assert found == []


@pytest.mark.parametrize("app", (*LAYERS, "portal"))
def test_no_hand_written_module_is_over_700_lines(app: str) -> None:
    long = {
        str(path.relative_to(ROOT)): n
        for path in app_modules(app)
        if (n := len(path.read_text().splitlines())) > MAX_MODULE_LINES
    }
    assert long == {}, f"split these by job (at most {MAX_MODULE_LINES} lines each)"
