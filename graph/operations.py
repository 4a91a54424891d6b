"""The registry of every Graph request this package can make.

Each Graph operation is declared once, at import time of its module, as an :class:`Operation`:
method, path template, the fixed ``$select`` / ``$expand`` lists, the properties its ``$filter``
or ``$search`` may name, and the request-body properties it may send. :class:`graph.client.
GraphClient` accepts nothing else (no free-form paths), and refuses a body property that the
operation did not declare, so the contract test (tests/graph/test_contract.py), which checks every
declaration against Microsoft's CSDL, covers everything the client can produce.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from graph import odata
from graph.budget import classify_path

_PLACEHOLDER = re.compile(r"\{([a-z_]+)\}")

REGISTRY: dict[str, Operation] = {}

# POSTs that are safe to repeat (the second call changes nothing the first did not).
_IDEMPOTENT_METHODS = {"GET", "DELETE", "PUT"}


@dataclass(frozen=True)
class Operation:
    """One kind of Graph request.

    ``path`` is a template such as ``/v1.0/users/{user_id}/authentication/methods``; each
    ``{name}`` is filled with :func:`graph.odata.path_segment`. ``body`` lists the request-body
    properties as dotted paths (``scheduleInfo.expiration.endDateTime``). ``idempotent`` says
    whether the call may be repeated after it may have reached Graph (POST and PATCH are not,
    unless declared so). ``reference`` is the learn.microsoft.com page of the operation.
    """

    name: str
    method: str
    path: str
    reference: str
    select: tuple[str, ...] = ()
    expand: tuple[str, ...] = ()
    filter_properties: tuple[str, ...] = ()
    search_properties: tuple[str, ...] = ()
    orderby: tuple[str, ...] = ()
    body: tuple[str, ...] = ()
    headers: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    idempotent: bool = False
    paged: bool = False

    @property
    def version(self) -> str:
        return self.path.split("/")[1]

    @property
    def throttle_class(self) -> str:
        return classify_path(self.path)

    @property
    def placeholders(self) -> tuple[str, ...]:
        return tuple(_PLACEHOLDER.findall(self.path))

    def fill(self, values: Mapping[str, str]) -> str:
        """The path with every placeholder replaced by its URL-encoded value.

        Raises ValueError for a missing or extra value, or a value ``odata.path_segment`` refuses.
        """
        wanted = set(self.placeholders)
        if set(values) != wanted:
            raise ValueError(
                f"{self.name} needs path values {sorted(wanted)}, got {sorted(values)}"
            )
        return _PLACEHOLDER.sub(lambda m: odata.path_segment(values[m.group(1)]), self.path)

    def check_body(self, body: Any) -> None:
        """Raises ValueError when ``body`` holds a property this operation did not declare."""
        if body is None:
            return
        sent = set(flatten_body(body))
        undeclared = sorted(p for p in sent if p not in self.body)
        if undeclared:
            raise ValueError(f"{self.name} does not declare body properties {undeclared}")


def flatten_body(body: Any, prefix: str = "") -> list[str]:
    """Dotted property paths of a JSON body: ``{"a": {"b": 1}}`` gives ``["a.b"]``."""
    if not isinstance(body, Mapping):
        raise ValueError("a request body must be a JSON object")
    paths: list[str] = []
    for key, value in body.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            paths.extend(flatten_body(value, f"{path}."))
        else:
            paths.append(path)
    return paths


def operation(
    name: str,
    method: str,
    path: str,
    *,
    reference: str,
    select: tuple[str, ...] = (),
    expand: tuple[str, ...] = (),
    filter_properties: tuple[str, ...] = (),
    search_properties: tuple[str, ...] = (),
    orderby: tuple[str, ...] = (),
    body: tuple[str, ...] = (),
    headers: Mapping[str, str] | None = None,
    idempotent: bool | None = None,
    paged: bool = False,
) -> Operation:
    """Declare and register an operation. Raises ValueError for a duplicate name, a path outside
    ``/v1.0`` and ``/beta``, a path with no throttling class, or a reference not on learn."""
    if name in REGISTRY:
        raise ValueError(f"operation {name!r} is declared twice")
    if method not in {"GET", "POST", "PATCH", "DELETE", "PUT"}:
        raise ValueError(f"{name}: unsupported method {method}")
    if not (path.startswith("/v1.0/") or path.startswith("/beta/")):
        raise ValueError(f"{name}: the path must start with /v1.0/ or /beta/")
    if not reference.startswith("https://learn.microsoft.com/"):
        raise ValueError(f"{name}: the reference must be a learn.microsoft.com page")
    classify_path(path)
    op = Operation(
        name=name,
        method=method,
        path=path,
        reference=reference,
        select=select,
        expand=expand,
        filter_properties=filter_properties,
        search_properties=search_properties,
        orderby=orderby,
        body=body,
        headers=MappingProxyType(dict(headers or {})),
        idempotent=(method in _IDEMPOTENT_METHODS) if idempotent is None else idempotent,
        paged=paged,
    )
    REGISTRY[name] = op
    return op
