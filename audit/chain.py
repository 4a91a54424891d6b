"""The hash chain of the portal's event log.

Every ``PortalEvent`` stores ``seq`` (1, 2, 3, ... with no gaps), ``prev_hash`` (the ``hash`` of
event ``seq - 1``, or :data:`GENESIS_HASH` for the first) and
``hash = sha256(prev_hash + canonical JSON of its content)``, hex-encoded. The content is every
field a reader of the log relies on (:data:`CHAIN_FIELDS`), so changing any of them, removing an
event in the middle or reordering events breaks the chain at that point, and
:func:`chain_verify` names the first broken link.

What the chain cannot show on its own: removal of the newest events (the chain just ends
earlier). ``manage.py audit_verify`` prints the head (seq and hash) so that an operator can
record it elsewhere and check it later with ``--anchor``.

Appending is serialised so the chain stays linear with many web and worker processes: on
PostgreSQL by a transaction-level advisory lock (:func:`chain_lock`), on SQLite by the write lock
that the settings' ``transaction_mode = IMMEDIATE`` takes when the transaction begins. The unique
``seq`` is the last line of defence: two appenders that somehow read the same head cannot both
commit.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from django.db import connections

GENESIS_HASH = "0" * 64

# The content fields, by attribute name (``request`` is the ActionRequest id, stored in the
# column ``request_id``; ``actor_id`` the portal user's primary key). Never remove or rename one:
# every stored hash was computed over this list. A new field may be appended only together with
# a rule that keeps old events' content unchanged (e.g. leave it out when empty).
CHAIN_FIELDS: tuple[str, ...] = (
    "seq",
    "created_at",
    "actor_id",
    "actor_name",
    "actor_oid",
    "kind",
    "target_id",
    "target_name",
    "request",
    "ticket",
    "old_value",
    "new_value",
    "source_ip",
    "user_agent",
    "http_request_id",
    "detail",
)

# An arbitrary, fixed 64-bit key for pg_advisory_xact_lock: "the portal event chain".
_ADVISORY_LOCK_KEY = int.from_bytes(
    hashlib.sha256(b"audit.PortalEvent chain").digest()[:8], "big", signed=True
)


def normalise_json(value: Any) -> Any:
    """``value`` as it will read back from a JSON column (tuples become lists, keys strings).

    Hash what the database will return, not what the caller passed, or verification of a
    perfectly intact row would fail. Raises TypeError for a value JSON cannot hold.
    """
    if value is None:
        return None
    return json.loads(json.dumps(value, allow_nan=False))


def normalise_ip(value: str | None) -> str | None:
    """The address in the form PostgreSQL's ``inet`` returns (compressed IPv6); None if empty."""
    if not value:
        return None
    return str(ipaddress.ip_address(value))


def _field_value(name: str, value: Any) -> Any:
    if name == "created_at":
        if not isinstance(value, datetime):
            raise TypeError(f"created_at must be a datetime, not {type(value).__name__}")
        return value.astimezone(UTC).isoformat(timespec="microseconds")
    if name == "source_ip":
        return normalise_ip(value)
    return value


def event_content(event: Any) -> dict[str, Any]:
    """The hashed content of a PortalEvent (or a historical model instance in a migration)."""
    return {name: _field_value(name, getattr(event, name)) for name in CHAIN_FIELDS}


def canonical_json(content: Mapping[str, Any]) -> str:
    """Sorted keys, no whitespace, UTF-8 text kept as is: one text for one content."""
    return json.dumps(
        content, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )


def event_hash(prev_hash: str, content: Mapping[str, Any]) -> str:
    """``sha256(prev_hash + canonical_json(content))`` as 64 hex digits."""
    return hashlib.sha256((prev_hash + canonical_json(content)).encode("utf-8")).hexdigest()


def chain_lock(using: str = "default") -> None:
    """Take the append lock until the current transaction ends. Call inside ``atomic()``.

    PostgreSQL: a transaction-level advisory lock. SQLite: nothing to do, the transaction
    already holds the database's write lock (``transaction_mode = IMMEDIATE`` in settings).
    """
    connection = connections[using]
    if not connection.in_atomic_block:
        raise RuntimeError("chain_lock() must be called inside transaction.atomic()")
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_ADVISORY_LOCK_KEY])


def chain_head(model: Any = None) -> tuple[int, str]:
    """(seq, hash) of the newest event, or (0, GENESIS_HASH) for an empty log.

    Read it only while holding :func:`chain_lock`, or the head may move before you append.
    """
    if model is None:
        from audit.models import PortalEvent

        model = PortalEvent
    head = model.objects.order_by("-seq").values_list("seq", "hash").first()
    if head is None:
        return 0, GENESIS_HASH
    return int(head[0]), str(head[1])


@dataclass(frozen=True)
class ChainReport:
    """The outcome of :func:`chain_verify`. ``intact`` is False when a link is broken; then
    ``broken_seq`` / ``broken_id`` name the first bad event and ``problem`` says what is wrong."""

    checked: int
    head_seq: int
    head_hash: str
    broken_seq: int | None = None
    broken_id: int | None = None
    problem: str = ""

    @property
    def intact(self) -> bool:
        return self.broken_seq is None

    def __str__(self) -> str:
        if self.intact:
            return (
                f"intact ({self.checked} events checked; head seq {self.head_seq}, "
                f"hash {self.head_hash})"
            )
        return (
            f"BROKEN at seq {self.broken_seq} (event id {self.broken_id}): {self.problem} "
            f"({self.checked} events checked before it)"
        )


def chain_verify(*, chunk_size: int = 2000, model: Any = None) -> ChainReport:
    """Walk the whole log in ``seq`` order and return the first broken link, if any.

    A link is broken when ``seq`` skips or repeats (an event was removed or inserted), when
    ``prev_hash`` differs from the previous event's ``hash`` (events reordered or replaced), or
    when ``hash`` differs from the hash recomputed from the row's content (the row was changed).
    Reads in chunks with a server-side cursor where the database has one: constant memory.
    """
    if model is None:
        from audit.models import PortalEvent

        model = PortalEvent
    expected_seq = 1
    prev_hash = GENESIS_HASH
    checked = 0
    for event in model.objects.order_by("seq").iterator(chunk_size=chunk_size):
        problem = ""
        if event.seq != expected_seq:
            problem = (
                f"expected seq {expected_seq}, found {event.seq}: "
                f"{'events are missing' if event.seq > expected_seq else 'seq repeats'}"
            )
        elif event.prev_hash != prev_hash:
            problem = "prev_hash does not match the previous event's hash"
        else:
            try:
                recomputed = event_hash(event.prev_hash, event_content(event))
            except (TypeError, ValueError) as exc:
                recomputed = f"<unhashable: {exc}>"
            if recomputed != event.hash:
                problem = "content does not match its hash (the row was changed)"
        if problem:
            return ChainReport(
                checked=checked,
                head_seq=expected_seq - 1,
                head_hash=prev_hash,
                broken_seq=int(event.seq),
                broken_id=int(event.pk),
                problem=problem,
            )
        checked += 1
        expected_seq += 1
        prev_hash = event.hash
    return ChainReport(checked=checked, head_seq=expected_seq - 1, head_hash=prev_hash)
