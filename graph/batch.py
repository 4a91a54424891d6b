"""JSON batching: many Graph requests in one ``POST /$batch``.

Graph takes at most 20 inner requests per batch, answers 200 for the batch even when inner
requests fail, and counts every inner request against throttling on its own. So :func:`run_batch`
splits long lists (also keeping each chunk within what the shared budget can grant at once),
takes one budget token per inner request, reads every inner status, retries inner 429/503 answers
(and inner 5xx of idempotent operations), and returns one :class:`BatchOutcome` per call, in the
order of the calls: either the result or a typed error.

# Reference: https://learn.microsoft.com/graph/json-batching
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from graph.client import GraphClient, relative_url
from graph.errors import GraphError, GraphProtocolError, error_from_parts, parse_retry_after
from graph.operations import Operation

MAX_BATCH_SIZE = 20


@dataclass(frozen=True)
class BatchCall:
    """One inner request: an operation with its path values, query options and body."""

    op: Operation
    path: Mapping[str, str] = field(default_factory=dict)
    query: Mapping[str, str] | None = None
    body: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class BatchOutcome:
    """The answer to one inner request: ``data`` (JSON, None for 204) or ``error``."""

    call: BatchCall
    status: int
    data: Any = None
    error: GraphError | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def result(self) -> Any:
        """The answer's JSON; raises the inner request's typed error when it failed."""
        if self.error is not None:
            raise self.error
        return self.data

    def items(self, client: GraphClient) -> list[Mapping[str, Any]]:
        """Every item of the collection the inner GET read: its first page from the batch,
        then each page after it (``@odata.nextLink``) through ``client.iterate``, one request
        per page, as a direct read would. Raises the inner request's error, and
        GraphProtocolError for an answer that is not a collection."""
        data = self.result()
        if not isinstance(data, Mapping) or not isinstance(data.get("value"), list):
            raise GraphProtocolError(
                self.status, "NotACollection", "Graph answered without a 'value' list"
            )
        found = [v for v in data["value"] if isinstance(v, Mapping)]
        next_link = data.get("@odata.nextLink")
        if isinstance(next_link, str) and next_link:
            found.extend(client.iterate(self.call.op, next_link=next_link))
        return found


def _inner_url(call: BatchCall) -> str:
    # Inner URLs are relative to the version: /v1.0/users/x becomes /users/x.
    return "/" + relative_url(call.op, call.path, call.query).split("/", 2)[2]


def _chunks(client: GraphClient, calls: Sequence[BatchCall], indexes: list[int]) -> list[list[int]]:
    """Split ``indexes`` into batches: one version each, at most 20 requests, and no more requests
    of one throttling class than the budget can grant at once at the client's priority."""
    chunks: list[list[int]] = []
    current: list[int] = []
    counts: Counter[str] = Counter()
    version = ""
    for index in indexes:
        op = calls[index].op
        cls = op.throttle_class
        limit = client.budget.max_burst(cls, client.priority)
        if current and (
            len(current) >= MAX_BATCH_SIZE or counts[cls] >= limit or op.version != version
        ):
            chunks.append(current)
            current, counts = [], Counter()
        current.append(index)
        counts[cls] += 1
        version = op.version
    if current:
        chunks.append(current)
    return chunks


def run_batch(client: GraphClient, calls: Sequence[BatchCall]) -> list[BatchOutcome]:
    """Run ``calls`` through ``$batch`` and return one outcome per call, in order.

    Raises ValueError before any request for a bad call (undeclared body property, bad path
    value); raises GraphError only when a whole batch request fails (the inner failures are
    reported in the outcomes).
    """
    for call in calls:
        call.op.check_body(call.body)
        _inner_url(call)
    outcomes: dict[int, BatchOutcome] = {}
    attempts: Counter[int] = Counter()
    pending = list(range(len(calls)))
    config = client.config
    while pending:
        retry: list[int] = []
        wait = 0.0
        for chunk in _chunks(client, calls, pending):
            answers = _send_chunk(client, calls, chunk)
            for index in chunk:
                call = calls[index]
                answer = answers.get(str(index))
                if answer is None:
                    outcomes[index] = BatchOutcome(
                        call,
                        0,
                        error=GraphProtocolError(
                            0, "MissingBatchResponse", f"no answer for inner request {index}"
                        ),
                    )
                    continue
                status, headers, body = answer
                if status < 300:
                    outcomes[index] = BatchOutcome(call, status, data=body)
                    continue
                error = error_from_parts(status, body, headers)
                retry_after = parse_retry_after(
                    {k.lower(): v for k, v in headers.items()}.get("retry-after")
                )
                retryable = status in (429, 503) or (status >= 500 and call.op.idempotent)
                if status == 429:
                    client.budget.record_pause(
                        call.op.throttle_class, retry_after if retry_after is not None else 1.0
                    )
                if retryable and attempts[index] < config.max_retries:
                    attempts[index] += 1
                    retry.append(index)
                    step = (
                        retry_after
                        if retry_after is not None
                        else config.backoff_base * (2 ** attempts[index])
                    )
                    if status != 429:  # a 429 pause is waited out inside the budget
                        wait = max(wait, step)
                    continue
                outcomes[index] = BatchOutcome(call, status, error=error)
        if retry and wait > config.max_retry_wait:
            for index in retry:
                outcomes[index] = BatchOutcome(
                    calls[index],
                    503,
                    error=GraphProtocolError(
                        503,
                        "RetryTooFarAway",
                        f"inner request {index} asked to wait {wait:g} s",
                    ),
                )
            retry = []
        if retry and wait:
            time.sleep(wait)
        pending = retry
    return [outcomes[i] for i in range(len(calls))]


def _send_chunk(
    client: GraphClient, calls: Sequence[BatchCall], chunk: list[int]
) -> dict[str, tuple[int, Mapping[str, str], Any]]:
    requests_json: list[dict[str, Any]] = []
    for index in chunk:
        call = calls[index]
        item: dict[str, Any] = {"id": str(index), "method": call.op.method, "url": _inner_url(call)}
        headers = {**call.op.headers, **client.priority_headers(call.op.throttle_class)}
        if call.body is not None:
            item["body"] = dict(call.body)
            headers["Content-Type"] = "application/json"
        if headers:
            item["headers"] = headers
        requests_json.append(item)
    version = calls[chunk[0]].op.version
    costs = Counter(calls[i].op.throttle_class for i in chunk)
    idempotent = all(calls[i].op.idempotent for i in chunk)
    response = client._send(
        "POST",
        f"{client.config.graph_url}/{version}/$batch",
        dict(costs),
        {"Content-Type": "application/json"},
        {"requests": requests_json},
        idempotent,
    )
    data = response.data
    if not isinstance(data, Mapping) or not isinstance(data.get("responses"), list):
        raise GraphProtocolError(
            response.status,
            "InvalidBatchResponse",
            "the $batch answer has no 'responses' list",
            response.request_id,
            response.client_request_id,
        )
    answers: dict[str, tuple[int, Mapping[str, str], Any]] = {}
    for item in data["responses"]:
        if not isinstance(item, Mapping):
            continue
        inner_headers = item.get("headers")
        status = item.get("status")
        answers[str(item.get("id"))] = (
            int(status) if isinstance(status, int) else 0,
            inner_headers if isinstance(inner_headers, Mapping) else {},
            item.get("body"),
        )
    return answers
