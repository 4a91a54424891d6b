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
                calls.seen.append((classify_path(target), method_text.upper(), parts.path))
        return real(self, method, url, *args, **kwargs)

    monkeypatch.setattr(graph_client._HttpSession, "request", counted)
    yield calls
