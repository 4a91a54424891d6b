"""Anchoring the portal event log's chain head outside the database.

The keyed chain (audit.chain) shows any change to an event and any gap, but not the removal of
the newest events, nor a rewrite by someone holding the key: the chain just ends earlier, or is
whole again. So on a schedule (beat, every ``AUDIT_ANCHOR_INTERVAL_SECONDS``) :func:`anchor_write`
records the head, ``seq``, ``hash`` and times, in sinks the database cannot reach:

- ``AUDIT_ANCHOR_FILE``: one JSON line appended per anchor (``O_APPEND``, fsynced). Make the file
  append-only where it lives (``chattr +a``, a WORM bucket, a log shipper) and keep it out of the
  database's backups' reach.
- ``AUDIT_ANCHOR_LOG``: the same line, logged at INFO on the ``audit.anchor`` logger, for a SIEM.

Each line carries ``mac``, an HMAC of the line with ``AUDIT_CHAIN_KEY``: a line appended by
someone who can write the file but does not hold the key is refused as forged. ``keyed_from`` is
the first keyed (HMAC) event's seq, copied forward from the previous anchor: from it on, an
unkeyed event is a downgrade.

Before it writes, the task checks the chain from the previous anchor to the head (a few events):
a head that no longer extends the anchored one is logged as an ERROR and not anchored, so the
file never blesses a truncated or rewritten chain. ``manage.py audit_verify`` reads every anchor
and reports truncation and rewrites (:func:`audit.chain.chain_verify`).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from django.conf import settings
from django.utils import timezone

from audit.chain import (
    CHAIN_HMAC,
    GENESIS_HASH,
    AnchorPoint,
    ChainReport,
    Verdict,
    canonical_json,
    chain_key,
    chain_verify,
)
from audit.models import PortalEvent

logger = logging.getLogger("audit.anchor")

# The fields of one anchor line, besides ``mac`` (which covers them all).
ANCHOR_FIELDS: tuple[str, ...] = ("seq", "hash", "head_at", "anchored_at", "keyed_from")
_MAC_PREFIX = b"audit.anchor v1\n"
# How far back from the end of the file the last line is looked for, per read.
_TAIL_BLOCK = 4096


class AnchorError(Exception):
    """The anchor file cannot be read as anchors (a malformed or forged line)."""


class AnchorRefused(Exception):
    """The chain no longer extends the latest anchor: nothing was anchored."""

    def __init__(self, report: ChainReport) -> None:
        self.report = report
        super().__init__(str(report))


@dataclass(frozen=True)
class AnchorWritten:
    """What :func:`anchor_write` recorded, and where."""

    anchor: AnchorPoint
    line: str
    file: str
    logged: bool


def anchor_mac(fields: dict[str, Any], key: bytes | None = None) -> str:
    """HMAC-SHA256 (``AUDIT_CHAIN_KEY``) of an anchor's fields (``ANCHOR_FIELDS``)."""
    mac = hmac.new(key if key is not None else chain_key(), _MAC_PREFIX, hashlib.sha256)
    mac.update(canonical_json({name: fields.get(name) for name in ANCHOR_FIELDS}).encode("utf-8"))
    return mac.hexdigest()


def parse_anchor_line(text: str, *, source: str = "", key: bytes | None = None) -> AnchorPoint:
    """One anchor line as an AnchorPoint. Raises AnchorError naming ``source`` when the line is
    not an anchor or its ``mac`` does not match (forged, or written under another key)."""
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise AnchorError(f"{source}: not JSON ({exc})") from exc
    if not isinstance(data, dict) or set(data) != {*ANCHOR_FIELDS, "mac"}:
        raise AnchorError(f"{source}: not an anchor line (fields {sorted(data)!r})")
    seq, digest, keyed_from = data["seq"], data["hash"], data["keyed_from"]
    if (
        not isinstance(seq, int)
        or seq < 0
        or not isinstance(digest, str)
        or len(digest) != 64
        or not (keyed_from is None or isinstance(keyed_from, int))
        or not isinstance(data["anchored_at"], str)
    ):
        raise AnchorError(f"{source}: malformed anchor values")
    if not hmac.compare_digest(str(data["mac"]), anchor_mac(data, key)):
        raise AnchorError(
            f"{source}: its mac does not match: the line was forged or changed, or written "
            "under another AUDIT_CHAIN_KEY"
        )
    return AnchorPoint(
        seq=seq,
        hash=digest,
        anchored_at=data["anchored_at"],
        keyed_from=keyed_from,
        source=source,
    )


def anchor_file_path() -> Path | None:
    """``AUDIT_ANCHOR_FILE`` as a path, or None when anchoring to a file is off."""
    configured = str(getattr(settings, "AUDIT_ANCHOR_FILE", "") or "")
    return Path(configured) if configured else None


def read_anchors(path: Path) -> list[AnchorPoint]:
    """Every anchor in the file at ``path``, oldest first (an absent file: none). Raises
    AnchorError at the first line that is not a valid anchor."""
    if not path.exists():
        return []
    key = chain_key()
    anchors: list[AnchorPoint] = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if line.strip():
                anchors.append(parse_anchor_line(line, source=f"{path}:{number}", key=key))
    return anchors


def latest_anchor(path: Path) -> AnchorPoint | None:
    """The last anchor in the file (read from its end), or None for an absent or empty file."""
    if not path.exists():
        return None
    with path.open("rb") as handle:
        handle.seek(0, os.SEEK_END)
        end = position = handle.tell()
        tail = b""
        while position > 0:
            position = max(0, position - _TAIL_BLOCK)
            handle.seek(position)
            tail = handle.read(end - position)
            lines = [line for line in tail.splitlines() if line.strip()]
            if len(lines) >= 2 or (lines and position == 0):
                break
    lines = [line for line in tail.splitlines() if line.strip()]
    if not lines:
        return None
    return parse_anchor_line(lines[-1].decode("utf-8"), source=f"{path} (last line)")


def _check_extends(previous: AnchorPoint) -> None:
    """Raise AnchorRefused unless the chain still holds ``previous`` and extends it intact.

    Reads the anchored event and the events after it only (a few, at each beat), with the rules
    of :func:`audit.chain.chain_verify`.
    """
    if previous.seq > 0:
        found = PortalEvent.objects.filter(seq=previous.seq).values_list("pk", "hash").first()
        if found is None or not hmac.compare_digest(str(found[1]), previous.hash):
            head = PortalEvent.objects.order_by("-seq").values_list("seq", "hash").first()
            head_seq, head_hash = (int(head[0]), str(head[1])) if head else (0, GENESIS_HASH)
            truncated = found is None and head_seq < previous.seq
            verdict: Verdict = "rewritten" if found is not None else "broken"
            raise AnchorRefused(
                ChainReport(
                    checked=0,
                    head_seq=head_seq,
                    head_hash=head_hash,
                    broken_seq=previous.seq if not truncated else head_seq + 1,
                    broken_id=int(found[0]) if found is not None else None,
                    problem=(
                        f"the event is gone, but {previous} recorded it"
                        if found is None
                        else f"its hash {found[1]} differs from {previous}, which recorded "
                        f"{previous.hash}: the chain was rewritten"
                    ),
                    verdict="truncated" if truncated else verdict,
                    anchor=previous,
                    anchors_checked=1,
                )
            )
    report = chain_verify(anchors=[previous], start=(previous.seq, previous.hash))
    if not report.intact:
        raise AnchorRefused(report)


def anchor_write(*, now: datetime | None = None) -> AnchorWritten:
    """Record the chain head now in the configured sinks and return what was written.

    Raises AnchorRefused (after logging it as an ERROR) when the chain no longer extends the
    file's latest anchor, AnchorError when that anchor line is malformed or forged, and OSError
    when the file cannot be written.
    """
    path = anchor_file_path()
    previous = latest_anchor(path) if path is not None else None
    # The head first, then the check: the check's walk reaches at least this head, so nothing
    # between the previous anchor and the new one goes unchecked.
    head = PortalEvent.objects.order_by("-seq").values_list("seq", "hash", "created_at").first()
    seq, digest, head_at = (0, GENESIS_HASH, None)
    if head is not None:
        seq, digest, head_at = int(head[0]), str(head[1]), head[2]
    if previous is not None:
        try:
            _check_extends(previous)
        except AnchorRefused as refused:
            logger.error("audit chain NOT anchored: %s", refused.report)
            raise
    keyed_from = previous.keyed_from if previous is not None else None
    if keyed_from is None:
        keyed_from = (
            PortalEvent.objects.filter(chain_version__gte=CHAIN_HMAC, seq__lte=seq)
            .order_by("seq")
            .values_list("seq", flat=True)
            .first()
        )
    moment = (now or timezone.now()).astimezone(UTC)
    fields: dict[str, Any] = {
        "seq": seq,
        "hash": digest,
        "head_at": head_at.astimezone(UTC).isoformat() if head_at else None,
        "anchored_at": moment.isoformat(),
        "keyed_from": keyed_from,
    }
    fields["mac"] = anchor_mac(fields)
    line = json.dumps(fields, sort_keys=True, separators=(",", ":"))
    if path is not None:
        _append_line(path, line)
    logged = bool(getattr(settings, "AUDIT_ANCHOR_LOG", True))
    if logged:
        logger.info("audit chain anchor %s", line)
    anchor = AnchorPoint(
        seq=seq, hash=digest, anchored_at=fields["anchored_at"], keyed_from=keyed_from
    )
    return AnchorWritten(anchor=anchor, line=line, file=str(path or ""), logged=logged)


def _append_line(path: Path, line: str) -> None:
    """Append one line with O_APPEND (one write: concurrent writers never interleave a line)
    and fsync it; the file is created readable by its owner and group only."""
    descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
    try:
        os.write(descriptor, (line + "\n").encode("utf-8"))
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
