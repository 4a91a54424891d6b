"""Count the Graph requests the portal sends, by throttling class, in this process (the Celery
worker of the tests runs in a thread here, so its calls count too).

Counted at the HTTP session (``graph.client._HttpSession.request``): every request that leaves
for ``GRAPH_URL``, retries included; the token requests to the login host are not Graph calls.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import pytest
from django.conf import settings

from graph import client as graph_client
from graph.budget import classify_path


@dataclass
class GraphCalls:
    """The requests seen: (class, method, path) in order."""

    seen: list[tuple[str, str, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def by_class(self) -> Counter[str]:
        with self.lock:
            return Counter(cls for cls, _, _ in self.seen)

    def of(self, cls: str) -> list[tuple[str, str]]:
        with self.lock:
            return [(method, path) for c, method, path in self.seen if c == cls]

    def clear(self) -> None:
        with self.lock:
            self.seen.clear()

    def __len__(self) -> int:
        with self.lock:
            return len(self.seen)


def _requests_of(method: str, path: str, kwargs: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(class, method, path) of the Graph requests one HTTP request carries: itself, or each
    inner request of a JSON ``$batch``, as Graph's throttling counts them (and bench/'s emulator
    counter): ``POST /v1.0/$batch`` of five inner GETs is five calls, each under its own path."""
    version, _, rest = path.lstrip("/").partition("/")
    if rest != "$batch":
        return [(classify_path(path), method, path)]
    body = kwargs.get("json") or {}
    found = []
    for inner in body.get("requests", ()):
        inner_path = f"/{version}" + urlsplit(str(inner["url"])).path
        found.append((classify_path(inner_path), str(inner["method"]).upper(), inner_path))
    return found


@contextmanager
def counting_graph_calls(monkeypatch: pytest.MonkeyPatch) -> Iterator[GraphCalls]:
    calls = GraphCalls()
    graph_root = urlsplit(str(settings.GRAPH_URL))
    real = graph_client._HttpSession.request

    def counted(self: Any, method: Any, url: Any, *args: Any, **kwargs: Any) -> Any:
        target = url.decode() if isinstance(url, bytes) else str(url)
        parts = urlsplit(target)
        same_host = (parts.scheme, parts.netloc) == (graph_root.scheme, graph_root.netloc)
        # The emulator serves the login host too: only /v1.0 and /beta are Graph.
        if same_host and parts.path.startswith(("/v1.0/", "/beta/")):
            method_text = method.decode() if isinstance(method, bytes) else str(method)
            with calls.lock:
                calls.seen.extend(_requests_of(method_text.upper(), parts.path, kwargs))
        return real(self, method, url, *args, **kwargs)

    monkeypatch.setattr(graph_client._HttpSession, "request", counted)
    yield calls
