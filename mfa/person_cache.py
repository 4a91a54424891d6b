"""A per-person cache of what the small reports budget costs to read: a person's authentication
methods, sign-in preferences (the default method) and per-user MFA state.

The person page's panels show these from here while they are fresh (with their age), so that
reopening a person within ``PORTAL_PERSON_CACHE_SECONDS`` spends nothing of Graph's 5 per 10 s.
Each part is kept under its own key in the Django cache (Redis, shared by every process) as
plain JSON rows (the cache's serializer is JSON: portal/cache_serializer.py) and rebuilt into
graph's typed results when read, so that a renamed class reads as a miss, not as an error.

Forgotten (:func:`forget`) when the portal's own write on the person finishes (the runner's
final re-list then refills the methods: :func:`refill_methods`), when the audit sync sees a
security-info, method or MFA-state event about the person (mfa.receivers), and when an agent
presses Refresh. A forget also stops a read that was already under way when it came from
storing what it read (it may predate the change): see ``_FORGOTTEN``.

Actions never read from here: a runner reads Graph afresh before it writes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from django.conf import settings
from django.core.cache import cache
from redis.exceptions import RedisError

from graph import GraphClient
from graph import methods as graph_methods
from graph import requirements as graph_requirements
from graph.results import (
    AuthenticationMethod,
    MethodKind,
    PerUserMfa,
    PerUserMfaState,
    PreferredSecondaryMethod,
    SignInPreferences,
)

logger = logging.getLogger(__name__)

METHODS = "methods"
PREFERENCES = "preferences"
MFA_STATE = "mfa_state"
PARTS: tuple[str, ...] = (METHODS, PREFERENCES, MFA_STATE)

_KEY = "mfa:person:{oid}:{part}"
# When the person was last forgotten (epoch seconds): a read that started before it is not
# stored, since Graph may have answered it before the change that caused the forget.
_FORGOTTEN = "mfa:person:{oid}:forgotten"


@dataclass(frozen=True)
class PersonSecurity:
    """What is known of a person's security info, each part with when it was read from Graph.

    ``methods`` None: not known. ``preferences`` None with ``"preferences"`` in ``parts``: known
    to be unneeded or empty (a person with no MFA method, only the password, has no default; it
    is not read for them).
    ``mfa_state`` None: not known. ``fetched`` maps each part held to when Graph answered it;
    ``fetched_at`` is the oldest of them (None when nothing is held).
    """

    oid: str
    methods: tuple[AuthenticationMethod, ...] | None = None
    preferences: SignInPreferences | None = None
    mfa_state: PerUserMfaState | None = None
    fetched: Mapping[str, datetime] = field(default_factory=dict)

    @property
    def parts(self) -> frozenset[str]:
        """The parts held."""
        return frozenset(self.fetched)

    @property
    def fetched_at(self) -> datetime | None:
        """When the oldest part held was read from Graph."""
        return min(self.fetched.values()) if self.fetched else None

    def has(self, *parts: str) -> bool:
        """Whether every one of ``parts`` is held."""
        return all(part in self.fetched for part in parts)

    def age_seconds(self, *parts: str, now: datetime | None = None) -> float | None:
        """Seconds since the oldest of ``parts`` (all held parts when none named) was read."""
        names = parts or tuple(self.fetched)
        times = [self.fetched[p] for p in names if p in self.fetched]
        if not times:
            return None
        return max(0.0, ((now or datetime.now(UTC)) - min(times)).total_seconds())

    @property
    def default_method_id(self) -> str | None:
        """The id of the default method, when the methods and preferences say which one."""
        return graph_requirements.default_method_id(self.methods or (), self.preferences)


def lifetime() -> int:
    """``PORTAL_PERSON_CACHE_SECONDS``."""
    return int(settings.PORTAL_PERSON_CACHE_SECONDS)


def _key(oid: str, part: str) -> str:
    return _KEY.format(oid=oid.lower(), part=part)


def _forgotten_key(oid: str) -> str:
    return _FORGOTTEN.format(oid=oid.lower())


# --- plain rows <-> graph results ------------------------------------------------------------


def _method_row(method: AuthenticationMethod) -> dict[str, Any]:
    return {
        "id": method.id,
        "kind": method.kind.name,
        "odata_type": method.odata_type,
        "detail": method.detail,
        "created": method.created.isoformat() if method.created else None,
        "phone_type": method.phone_type,
    }


def _method_from_row(row: Mapping[str, Any]) -> AuthenticationMethod:
    created = row.get("created")
    return AuthenticationMethod(
        id=str(row["id"]),
        kind=MethodKind[str(row["kind"])],
        odata_type=str(row["odata_type"]),
        detail=str(row["detail"]),
        created=datetime.fromisoformat(created) if created else None,
        phone_type=row.get("phone_type"),
    )


def _preferences_row(prefs: SignInPreferences | None) -> dict[str, Any] | None:
    if prefs is None:
        return None
    return {
        "user_id": prefs.user_id,
        "system_preferred_enabled": prefs.system_preferred_enabled,
        "preferred_method": prefs.preferred_method.value if prefs.preferred_method else None,
        "raw_preferred_method": prefs.raw_preferred_method,
    }


def _preferences_from_row(row: Mapping[str, Any] | None) -> SignInPreferences | None:
    if row is None:
        return None
    preferred = row.get("preferred_method")
    return SignInPreferences(
        user_id=str(row["user_id"]),
        system_preferred_enabled=row.get("system_preferred_enabled"),
        preferred_method=PreferredSecondaryMethod(preferred) if preferred else None,
        raw_preferred_method=str(row.get("raw_preferred_method") or ""),
    )


def _mfa_row(state: PerUserMfaState) -> dict[str, Any]:
    return {
        "user_id": state.user_id,
        "state": state.state.value if state.state else None,
        "raw_state": state.raw_state,
    }


def _mfa_from_row(row: Mapping[str, Any]) -> PerUserMfaState:
    value = row.get("state")
    return PerUserMfaState(
        user_id=str(row["user_id"]),
        state=PerUserMfa(value) if value else None,
        raw_state=str(row.get("raw_state") or ""),
    )


def _encode(part: str, value: Any) -> Any:
    if part == METHODS:
        return [_method_row(m) for m in value]
    if part == PREFERENCES:
        return _preferences_row(value)
    return _mfa_row(value)


def _decode(part: str, value: Any) -> Any:
    if part == METHODS:
        return tuple(_method_from_row(row) for row in value)
    if part == PREFERENCES:
        return _preferences_from_row(value)
    return _mfa_from_row(value)


# --- the cache -------------------------------------------------------------------------------


def cached(oid: str) -> PersonSecurity | None:
    """What the cache holds about ``oid`` (any part still fresh), or None when nothing is held.
    Never calls Graph. A part that cannot be read back counts as not held."""
    try:
        stored = cache.get_many([_key(oid, part) for part in PARTS])
    except (RedisError, OSError):
        logger.warning("person cache unavailable: reading Graph instead")
        return None
    values: dict[str, Any] = {}
    fetched: dict[str, datetime] = {}
    for part in PARTS:
        entry = stored.get(_key(oid, part))
        if not isinstance(entry, dict) or "at" not in entry:
            continue
        try:
            values[part] = _decode(part, entry.get("value"))
            fetched[part] = datetime.fromisoformat(str(entry["at"]))
        except (KeyError, TypeError, ValueError):
            continue
    if not fetched:
        return None
    return PersonSecurity(
        oid=oid,
        methods=values.get(METHODS),
        preferences=values.get(PREFERENCES),
        mfa_state=values.get(MFA_STATE),
        fetched=fetched,
    )


def holds(oid: str, part: str) -> bool:
    """Whether the cache holds ``part`` of ``oid`` (one key read, nothing decoded; a part that
    cannot be read back counts as held here, and as not held by ``cached``)."""
    try:
        entry = cache.get(_key(oid, part))
    except (RedisError, OSError):
        return False
    return isinstance(entry, dict) and "at" in entry


def _store(oid: str, values: Mapping[str, Any], *, started: float | None) -> None:
    """Keep ``values`` (part -> graph result) unless a forget came after ``started``."""
    if not values:
        return
    try:
        if started is not None:
            forgotten = cache.get(_forgotten_key(oid))
            if isinstance(forgotten, (int, float)) and forgotten >= started:
                return
        at = datetime.now(UTC).isoformat()
        cache.set_many(
            {_key(oid, p): {"at": at, "value": _encode(p, v)} for p, v in values.items()},
            timeout=lifetime(),
        )
    except (RedisError, OSError):
        logger.warning("person cache unavailable: %s not kept", ", ".join(values))


def load(client: GraphClient, oid: str, *, parts: Iterable[str] = PARTS) -> PersonSecurity:
    """Read ``parts`` of ``oid``'s security info from Graph, keep them, and return everything now
    held (the parts read merged with fresh parts already in the cache).

    Every part is a reports-class call (graph.budget.classify_path: all of
    ``/users/{id}/authentication/...``): ``methods`` is the methods list, ``preferences`` beta
    signInPreferences (read only when the person has an MFA method; the methods are read first
    when not held), ``mfa_state`` beta authentication requirements. Raises GraphError as it comes;
    parts read before the failure are kept.
    """
    wanted = [p for p in PARTS if p in set(parts)]
    unknown = set(parts) - set(PARTS)
    if unknown:
        raise ValueError(f"unknown parts: {sorted(unknown)}")
    started = time.time()
    held = cached(oid) if PREFERENCES in wanted and METHODS not in wanted else None
    read: dict[str, Any] = {}
    try:
        if METHODS in wanted:
            read[METHODS] = tuple(graph_methods.list_methods(client, oid))
        if PREFERENCES in wanted:
            methods = read.get(METHODS)
            if methods is None and held is not None and held.has(METHODS):
                methods = held.methods
            if methods is None:
                read[METHODS] = methods = tuple(graph_methods.list_methods(client, oid))
            # The default is one of the MFA methods (all deletable kinds): only worth a
            # reports-class call when there is one (not for the password alone).
            read[PREFERENCES] = (
                graph_requirements.get_sign_in_preferences(client, oid)
                if any(m.kind.deletable for m in methods)
                else None
            )
        if MFA_STATE in wanted:
            read[MFA_STATE] = graph_requirements.get_per_user_mfa_state(client, oid)
    finally:
        _store(oid, read, started=started)
    now_held = cached(oid)
    if now_held is None or not now_held.has(*read):
        # Not kept (forgotten meanwhile, or the cache is down): still answer with what was read.
        base = now_held or PersonSecurity(oid=oid)
        at = datetime.now(UTC)
        return PersonSecurity(
            oid=oid,
            methods=read.get(METHODS, base.methods),
            preferences=read.get(PREFERENCES, base.preferences),
            mfa_state=read.get(MFA_STATE, base.mfa_state),
            fetched={**base.fetched, **dict.fromkeys(read, at)},
        )
    return now_held


def forget(oid: str) -> None:
    """Drop everything held about ``oid``, and keep a read already under way from storing.

    Never raises for Redis (a runner calls it after its writes): when Redis cannot be reached
    nothing is held anyway, and a warning is logged."""
    try:
        cache.set(_forgotten_key(oid), time.time(), timeout=max(lifetime(), 60))
        cache.delete_many([_key(oid, part) for part in PARTS])
    except (RedisError, OSError):
        logger.warning("person cache unavailable: could not forget a person")


def refill_methods(oid: str, methods: Iterable[AuthenticationMethod]) -> None:
    """After the portal's own write on ``oid``: forget everything, then keep the methods the
    runner's verifying re-list just read (fresh, so no read is needed to show them). When the
    list holds no MFA method (the password alone) the default is known to be absent and is kept
    as such."""
    forget(oid)
    rows = tuple(methods)
    values: dict[str, Any] = {METHODS: rows}
    if not any(m.kind.deletable for m in rows):
        values[PREFERENCES] = None
    _store(oid, values, started=None)
