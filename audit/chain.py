"""The hash chain of the portal's event log.

Every ``PortalEvent`` stores ``seq`` (1, 2, 3, ... with no gaps), ``prev_hash`` (the ``hash`` of
event ``seq - 1``, or :data:`GENESIS_HASH` for the first), ``chain_version`` and ``hash``, a MAC
of ``prev_hash + canonical JSON of its content``, hex-encoded. The content is every field a
reader of the log relies on (:data:`CHAIN_FIELDS`), so changing any of them, removing an event in
the middle or reordering events breaks the chain at that point, and :func:`chain_verify` names
the first broken link.

``chain_version`` says how ``hash`` was made:

- 2 (:data:`CHAIN_HMAC`, every new event): HMAC-SHA256 with ``AUDIT_CHAIN_KEY``, a secret kept
  outside the database. Someone who can write the table but does not hold the key cannot
  recompute a valid hash after a forged edit.
- 1 (:data:`CHAIN_SHA256`): plain SHA-256, the events written before the chain was keyed
  (migration 0011 marks them). They are still verified, with SHA-256, but an unkeyed event
  after a keyed one is a broken link (a downgrade), and so is an unkeyed event at or after the
  ``keyed_from`` sequence an anchor recorded (audit.anchors).

What the chain cannot show on its own: removal of the newest events (the chain just ends
earlier), or a rewrite by someone holding the key. ``audit.anchors`` writes the head (seq, hash,
time) to sinks outside the database on a schedule, and ``manage.py audit_verify`` checks the
chain against them: an anchored seq beyond the end is a truncation, an anchored hash that differs
is a rewrite.

Appending is serialised so the chain stays linear with many web and worker processes: on
PostgreSQL by a transaction-level advisory lock (:func:`chain_lock`), on SQLite by the write lock
that the settings' ``transaction_mode = IMMEDIATE`` takes when the transaction begins. The unique
``seq`` is the last line of defence: two appenders that somehow read the same head cannot both
commit.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import connections

GENESIS_HASH = "0" * 64

# How an event's hash was made (PortalEvent.chain_version). Never change what a number means.
CHAIN_SHA256 = 1
CHAIN_HMAC = 2
CURRENT_CHAIN_VERSION = CHAIN_HMAC
CHAIN_VERSION_NAMES: dict[int, str] = {CHAIN_SHA256: "sha256", CHAIN_HMAC: "hmac-sha256"}
# Put before every keyed message, so a keyed hash can never equal a hash of another purpose
# made with the same key (the anchors' MAC uses its own prefix).
_HMAC_PREFIX = b"audit.PortalEvent v2\n"

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


def chain_key() -> bytes:
    """``AUDIT_CHAIN_KEY`` as bytes. Raises ImproperlyConfigured when it is empty (the settings
    refuse to start without it, so only a test that removes it sees this)."""
    key = str(getattr(settings, "AUDIT_CHAIN_KEY", "") or "")
    if not key:
        raise ImproperlyConfigured("AUDIT_CHAIN_KEY is not set: the audit chain cannot be keyed")
    return key.encode("utf-8")


# HMAC objects keyed once and copied per event: keying costs two SHA-256 blocks per use, which
# a million-event verification or the benchmark loader would pay for nothing.
_keyed: dict[bytes, Any] = {}


def _hmac_base(key: bytes) -> Any:
    base = _keyed.get(key)
    if base is None:
        base = hmac.new(key, _HMAC_PREFIX, hashlib.sha256)
        _keyed.clear()  # one key at a time (a test may change it)
        _keyed[key] = base
    return base


def event_hash(
    prev_hash: str,
    content: Mapping[str, Any],
    *,
    version: int = CURRENT_CHAIN_VERSION,
    key: bytes | None = None,
) -> str:
    """The hash of one event as 64 hex digits, made as ``version`` says.

    :data:`CHAIN_HMAC` (the default, every new event): HMAC-SHA256 with ``key`` (default
    :func:`chain_key`) over ``prev_hash + canonical_json(content)``. :data:`CHAIN_SHA256` (events
    written before the chain was keyed): plain SHA-256 of the same text. Raises ValueError for an
    unknown version.
    """
    message = (prev_hash + canonical_json(content)).encode("utf-8")
    if version == CHAIN_HMAC:
        mac = _hmac_base(key if key is not None else chain_key()).copy()
        mac.update(message)
        return str(mac.hexdigest())
    if version == CHAIN_SHA256:
        return hashlib.sha256(message).hexdigest()
    raise ValueError(f"unknown chain version {version!r}")


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
class AnchorPoint:
    """A chain head recorded outside the database (audit.anchors): event ``seq`` had ``hash``
    at ``anchored_at`` (ISO 8601), and every event from ``keyed_from`` on was keyed (None: no
    keyed event existed yet). ``source`` says where it was read, for messages."""

    seq: int
    hash: str
    anchored_at: str
    keyed_from: int | None = None
    source: str = ""

    def __str__(self) -> str:
        where = f" ({self.source})" if self.source else ""
        return f"the anchor of {self.anchored_at}{where}"


Verdict = Literal["intact", "broken", "rewritten", "truncated"]


@dataclass(frozen=True)
class ChainReport:
    """The outcome of :func:`chain_verify`.

    ``verdict``: ``intact``; ``broken`` (a link does not hold: ``broken_seq`` / ``broken_id``
    name the first bad event and ``problem`` says what is wrong); ``rewritten`` (the links hold
    but event ``broken_seq`` no longer has the hash ``anchor`` recorded); ``truncated`` (the chain
    ends before the seq ``anchor`` recorded: the newest events were removed). ``anchors_checked``
    counts the anchors compared with the chain.
    """

    checked: int
    head_seq: int
    head_hash: str
    broken_seq: int | None = None
    broken_id: int | None = None
    problem: str = ""
    verdict: Verdict = "intact"
    anchor: AnchorPoint | None = None
    anchors_checked: int = 0

    @property
    def intact(self) -> bool:
        return self.verdict == "intact"

    def __str__(self) -> str:
        if self.verdict == "intact":
            return (
                f"intact ({self.checked} events checked; head seq {self.head_seq}, "
                f"hash {self.head_hash})"
            )
        if self.verdict == "truncated":
            assert self.anchor is not None
            return (
                f"TRUNCATED: the chain ends at seq {self.head_seq}, but {self.anchor} recorded "
                f"seq {self.anchor.seq} (hash {self.anchor.hash}): at least "
                f"{self.anchor.seq - self.head_seq} of the newest events were removed "
                f"({self.checked} events checked)"
            )
        event = f" (event id {self.broken_id})" if self.broken_id is not None else ""
        label = "REWRITTEN" if self.verdict == "rewritten" else "BROKEN"
        return (
            f"{label} at seq {self.broken_seq}{event}: {self.problem} "
            f"({self.checked} events checked before it)"
        )


def _link_problem(
    event: Any, expected_seq: int, prev_hash: str, seen_keyed: bool, keyed_from: int | None
) -> str:
    """What is wrong with ``event`` as the next link after ``prev_hash``, or ""."""
    if event.seq != expected_seq:
        return (
            f"expected seq {expected_seq}, found {event.seq}: "
            f"{'events are missing' if event.seq > expected_seq else 'seq repeats'}"
        )
    if event.prev_hash != prev_hash:
        return "prev_hash does not match the previous event's hash"
    version = event.chain_version
    if version not in CHAIN_VERSION_NAMES:
        return f"unknown chain_version {version!r}"
    if version == CHAIN_SHA256 and seen_keyed:
        return "an unkeyed (SHA-256) event after keyed ones: the chain was downgraded"
    if version == CHAIN_SHA256 and keyed_from is not None and event.seq >= keyed_from:
        return (
            f"an unkeyed (SHA-256) event, but the anchors say the chain is keyed from seq "
            f"{keyed_from}: the chain was downgraded"
        )
    try:
        recomputed = event_hash(event.prev_hash, event_content(event), version=version)
    except (TypeError, ValueError) as exc:
        recomputed = f"<unhashable: {exc}>"
    if not hmac.compare_digest(recomputed, str(event.hash)):
        return "content does not match its hash (the row was changed)"
    return ""


def chain_verify(
    *,
    chunk_size: int = 2000,
    model: Any = None,
    anchors: Sequence[AnchorPoint] = (),
    start: tuple[int, str] | None = None,
) -> ChainReport:
    """Walk the whole log in ``seq`` order and return the first problem, if any.

    A link is broken when ``seq`` skips or repeats (an event was removed or inserted), when
    ``prev_hash`` differs from the previous event's ``hash`` (events reordered or replaced), when
    ``hash`` differs from the hash recomputed from the row's content with its ``chain_version``
    (the row was changed), or when an unkeyed event follows a keyed one or sits at or after the
    anchors' ``keyed_from`` (a downgrade to the unkeyed hash). Then each of ``anchors``
    (audit.anchors) is compared with the chain: an anchored seq whose event now has another
    hash is a rewrite, an anchored seq beyond the last event a truncation.
    ``start=(seq, hash)`` walks only the events after ``seq``, the first of them linking to
    ``hash`` (the anchor task's check of what came since the last anchor; ``checked`` counts
    those events).
    Reads in chunks with a server-side cursor where the database has one: constant memory.
    """
    if model is None:
        from audit.models import PortalEvent

        model = PortalEvent
    events = model.objects.order_by("seq")
    by_seq: dict[int, list[AnchorPoint]] = {}
    for anchor in anchors:
        by_seq.setdefault(anchor.seq, []).append(anchor)
    claims = [a.keyed_from for a in anchors if a.keyed_from is not None]
    keyed_from = min(claims) if claims else None
    expected_seq = 1
    prev_hash = GENESIS_HASH
    if start is not None:
        expected_seq, prev_hash = start[0] + 1, start[1]
        events = events.filter(seq__gt=start[0])
    checked = 0
    seen_keyed = False
    for event in events.iterator(chunk_size=chunk_size):
        problem = _link_problem(event, expected_seq, prev_hash, seen_keyed, keyed_from)
        verdict: Verdict = "broken"
        culprit: AnchorPoint | None = None
        if not problem:
            for anchor in by_seq.get(event.seq, ()):
                if not hmac.compare_digest(anchor.hash, str(event.hash)):
                    verdict, culprit = "rewritten", anchor
                    problem = (
                        f"its hash {event.hash} differs from {anchor}, which recorded "
                        f"{anchor.hash}: the chain was rewritten from here or earlier"
                    )
                    break
        if problem:
            return ChainReport(
                checked=checked,
                head_seq=expected_seq - 1,
                head_hash=prev_hash,
                broken_seq=int(event.seq),
                broken_id=int(event.pk),
                problem=problem,
                verdict=verdict,
                anchor=culprit,
                anchors_checked=len(anchors),
            )
        checked += 1
        expected_seq += 1
        prev_hash = event.hash
        seen_keyed = seen_keyed or event.chain_version != CHAIN_SHA256
    head_seq = expected_seq - 1
    beyond = max((a for a in anchors if a.seq > head_seq), key=lambda a: a.seq, default=None)
    if beyond is not None:
        return ChainReport(
            checked=checked,
            head_seq=head_seq,
            head_hash=prev_hash,
            broken_seq=head_seq + 1,
            problem=f"{beyond} recorded seq {beyond.seq}",
            verdict="truncated",
            anchor=beyond,
            anchors_checked=len(anchors),
        )
    return ChainReport(
        checked=checked, head_seq=head_seq, head_hash=prev_hash, anchors_checked=len(anchors)
    )
