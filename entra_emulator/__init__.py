"""A local stand-in for login.microsoftonline.com and graph.microsoft.com (demo and tests only).

Never imported by portal code, and it imports nothing from the portal's packages: the emulator
encodes its own reading of Graph so that a misunderstanding in ``graph/`` is not copied here.
Start it with ``python -m entra_emulator`` or ``EmulatorServer(...).start()``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from entra_emulator.server import EmulatorServer

__all__ = ["EmulatorServer"]


def __getattr__(name: str) -> Any:
    # Lazy, so that ``import entra_emulator.seed`` (constants only) stays light.
    if name == "EmulatorServer":
        from entra_emulator.server import EmulatorServer

        return EmulatorServer
    raise AttributeError(name)
