"""The short-lived, encrypted home of a freshly issued Temporary Access Pass.

Graph returns a new pass in clear text exactly once (in the 201 answer). The worker that issued it
puts it here and nowhere else: not in the database, not in a log line, not in a Celery argument or
result, not in an email. The agent who asked for it reads it once from the request page; the read
deletes it. If nobody reads it within ``PORTAL_TAP_REVEAL_TTL_SECONDS``, Redis forgets it.

Storage: one Redis key per request public id, holding a Fernet token (AES-128-CBC + HMAC-SHA256)
of ``{"pass": ..., "requester": <user id>}``. The Fernet key is derived with HKDF from
``PORTAL_TAP_VAULT_KEY``, a secret of its own (never ``SECRET_KEY``, never a default; the demo
generates one per var folder), so a copy of Redis alone (a backup, a ``MONITOR`` session), or
Redis with Django's secret key, never shows a usable pass. The
requester's id is inside the authenticated ciphertext, and the key name itself is bound to the
request: a pass cannot be moved to another request or another agent.

Reads use ``GETDEL``: two concurrent reveals cannot both get the pass.
"""

from __future__ import annotations

import base64
import functools
import json
import uuid
from typing import Any

import redis
from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings

_KEY_PREFIX = "portal:tap:"
# HKDF "info": a key for this purpose only, even if the vault's secret were used elsewhere.
_HKDF_INFO = b"mfa-helpdesk-portal/tap-vault/v1"


class TapVaultError(Exception):
    """The vault could not keep or give back a pass (Redis down, tampered or foreign entry)."""


@functools.lru_cache(maxsize=4)
def _fernet_for(vault_key: str) -> Fernet:
    material = HKDF(
        algorithm=hashes.SHA256(),
        length=32,
        salt=None,
        info=_HKDF_INFO,
    ).derive(vault_key.encode())
    return Fernet(base64.urlsafe_b64encode(material))


def _fernet() -> Fernet:
    return _fernet_for(settings.PORTAL_TAP_VAULT_KEY)


@functools.lru_cache(maxsize=4)
def _redis_for(url: str) -> redis.Redis:
    return redis.Redis.from_url(url)


def _redis() -> redis.Redis:
    return _redis_for(settings.REDIS_URL)


def _key(public_id: uuid.UUID | str) -> str:
    return f"{_KEY_PREFIX}{uuid.UUID(str(public_id))}"


def tap_store(*, public_id: uuid.UUID | str, requester_id: int, pass_value: str) -> None:
    """Keep ``pass_value`` for the request ``public_id``, readable by ``requester_id`` only, for
    ``PORTAL_TAP_REVEAL_TTL_SECONDS``. A second store for the same request replaces the first.

    Raises TapVaultError when Redis cannot be reached (the caller must then fail the request:
    a pass nobody can read is useless, and the caller must not fall back to another store).
    """
    if not pass_value:
        raise TapVaultError("refusing to store an empty pass")
    payload = json.dumps({"pass": pass_value, "requester": requester_id, "request": str(public_id)})
    token = _fernet().encrypt(payload.encode())
    try:
        _redis().set(_key(public_id), token, ex=int(settings.PORTAL_TAP_REVEAL_TTL_SECONDS))
    except redis.RedisError as exc:
        # The message names the failure class only: never the payload.
        raise TapVaultError(f"the pass could not be stored ({type(exc).__name__})") from None


def tap_available(*, public_id: uuid.UUID | str) -> bool:
    """Whether a pass is still waiting for the request (without reading it)."""
    try:
        return bool(_redis().exists(_key(public_id)))
    except redis.RedisError:
        return False


def tap_seconds_left(*, public_id: uuid.UUID | str) -> int | None:
    """Seconds until the waiting pass is forgotten; None when there is none."""
    try:
        ttl = int(_redis().ttl(_key(public_id)))
    except redis.RedisError:
        return None
    return ttl if ttl >= 0 else None


def tap_take(*, public_id: uuid.UUID | str, requester_id: int) -> str | None:
    """The pass for request ``public_id``, removed from the vault in the same atomic step.

    Returns None when there is none (never stored, already read, or expired). The caller must
    have checked that ``requester_id`` is the request's requester; as a second line, an entry
    bound to another person or request raises TapVaultError (the entry is gone either way: a
    pass that reached the wrong door is not handed out later).
    """
    try:
        token: Any = _redis().getdel(_key(public_id))
    except redis.RedisError as exc:
        raise TapVaultError(f"the pass could not be read ({type(exc).__name__})") from None
    if token is None:
        return None
    try:
        payload = json.loads(_fernet().decrypt(bytes(token)))
    except (InvalidToken, ValueError):
        raise TapVaultError("the stored pass could not be decrypted") from None
    if payload.get("requester") != requester_id or payload.get("request") != str(
        uuid.UUID(str(public_id))
    ):
        raise TapVaultError("the stored pass belongs to another person or request")
    value = payload.get("pass")
    return value if isinstance(value, str) and value else None


def tap_discard(*, public_id: uuid.UUID | str) -> None:
    """Forget the pass of a request (cancelled view, test clean-up). Never raises."""
    try:
        _redis().delete(_key(public_id))
    except redis.RedisError:
        pass
