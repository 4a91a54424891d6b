"""Writing portal events: the one door into the append-only, hash-chained log (audit.chain)."""

from __future__ import annotations

import ipaddress
import re
import uuid
from collections.abc import Iterable
from typing import Any

from celery import current_task
from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser, User
from django.db import transaction
from django.http import HttpRequest
from django.utils import timezone

from audit.chain import (
    chain_head,
    chain_lock,
    event_content,
    event_hash,
    normalise_ip,
    normalise_json,
)
from audit.models import PortalEvent

USER_AGENT_MAX_LENGTH = 512
# A client- or proxy-supplied X-Request-ID is kept only when it looks like an id, never free text.
_REQUEST_ID_PATTERN = re.compile(r"[A-Za-z0-9._:-]{8,64}")
_REQUEST_ID_ATTRIBUTE = "_portal_audit_request_id"


def http_request_id(request: HttpRequest | None) -> str:
    """The id shared by every event of one HTTP request, or of one Celery task run.

    HTTP: the ``X-Request-ID`` header when well-formed, else an id made once per request (kept on
    the request object). Outside a request: the running Celery task's id, or "".
    """
    if request is not None:
        known = getattr(request, _REQUEST_ID_ATTRIBUTE, None)
        if known is None:
            supplied = str(request.META.get("HTTP_X_REQUEST_ID", ""))
            known = supplied if _REQUEST_ID_PATTERN.fullmatch(supplied) else uuid.uuid4().hex
            setattr(request, _REQUEST_ID_ATTRIBUTE, known)
        return str(known)
    task = current_task
    task_id = getattr(getattr(task, "request", None), "id", None) if task else None
    return str(task_id or "")[:64]


def _actor_identity(actor: AbstractBaseUser) -> tuple[str, str]:
    """(display name, Entra oid) of ``actor``, from the profile kept at sign-in."""
    profile = getattr(actor, "portal_profile", None)
    if profile is not None:
        return profile.display_name or profile.upn, profile.oid
    username = str(actor.get_username())
    return username, ""


def portal_event_record(
    *,
    kind: str,
    actor: AbstractBaseUser | AnonymousUser | None = None,
    request: HttpRequest | None = None,
    action_request_id: int | None = None,
    target_id: str = "",
    target_name: str = "",
    ticket: str = "",
    old_value: Any = None,
    new_value: Any = None,
    detail: dict[str, Any] | None = None,
) -> PortalEvent:
    """Append one event to the chain and return it.

    ``request`` is the HTTP request the event arose from (source IP, user agent and request id
    are taken from it; None for events from tasks, whose request id is the Celery task id).
    ``action_request_id`` names the ActionRequest concerned. The actor's display name and Entra
    oid are copied onto the row so the log still reads after the person's account changes.
    ``old_value``, ``new_value`` and ``detail`` must be JSON-serialisable.

    Call it inside the same transaction as the change it records, preferably as that
    transaction's last write: appending holds the chain's lock (audit.chain.chain_lock) until
    the transaction ends, so every other event writer waits for it.
    Raises ValueError for a ``kind`` that is not a ``PortalEvent.Kind`` and TypeError for a
    value JSON cannot hold.
    """
    if kind not in PortalEvent.Kind.values:
        raise ValueError(f"unknown portal event kind: {kind!r}")
    event = PortalEvent(
        kind=kind,
        request=action_request_id,
        target_id=target_id,
        target_name=target_name,
        ticket=ticket,
        old_value=normalise_json(old_value),
        new_value=normalise_json(new_value),
        detail=normalise_json(detail or {}),
        http_request_id=http_request_id(request),
    )
    if actor is not None and actor.is_authenticated:
        assert isinstance(actor, User)
        event.actor = actor
        event.actor_name, event.actor_oid = _actor_identity(actor)
    if request is not None:
        event.source_ip = client_address(request)
        event.user_agent = str(request.META.get("HTTP_USER_AGENT", ""))[:USER_AGENT_MAX_LENGTH]
    with transaction.atomic():
        chain_lock()
        seq, prev_hash = chain_head()
        event.seq = seq + 1
        event.prev_hash = prev_hash
        # Taken under the lock, so the log's times never run backwards along the chain.
        event.created_at = timezone.now()
        event.hash = event_hash(prev_hash, event_content(event))
        event.save()
    return event


def _trusted(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    networks: Iterable[ipaddress.IPv4Network | ipaddress.IPv6Network] = getattr(
        settings, "PORTAL_TRUSTED_PROXY_NETWORKS", ()
    )
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address.version == n.version and address in n for n in networks)


def _parse_hop(value: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """One X-Forwarded-For entry: an address, maybe ``[v6]`` or ``v4:port``; None if not one."""
    text = value.strip()
    if text.startswith("["):
        text = text[1:].split("]", 1)[0]
    elif text.count(":") == 1:
        text = text.split(":", 1)[0]
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def client_address(request: HttpRequest) -> str | None:
    """The address of the client an HTTP request came from, as the audit log records it.

    ``REMOTE_ADDR`` is the peer of this server. When that peer is a trusted proxy
    (``PORTAL_TRUSTED_PROXIES``), ``X-Forwarded-For`` is read from right to left: each trusted
    hop appended the address it saw, so the first address that is not a trusted proxy is the
    client. Entries left of it were written by the client and are never believed. A malformed
    entry stops the walk at the last good address; if every hop is trusted, the leftmost one is
    taken. Without a trusted peer, the header is ignored. None when no address is known.
    """
    address = _parse_hop(str(request.META.get("REMOTE_ADDR", "")))
    if address is None:
        return None
    if _trusted(address):
        # Several X-Forwarded-For headers arrive joined with commas, in order.
        hops = str(request.META.get("HTTP_X_FORWARDED_FOR", "")).split(",")
        for hop in reversed(hops):
            if not hop.strip():
                continue
            parsed = _parse_hop(hop)
            if parsed is None:
                break
            address = parsed
            if not _trusted(address):
                break
    return normalise_ip_or_none(str(address))


def normalise_ip_or_none(value: str | None) -> str | None:
    """REMOTE_ADDR as the database will return it, or None when it is not an IP address."""
    try:
        return normalise_ip(value)
    except ValueError:
        return None
