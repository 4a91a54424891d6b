"""What the tenant's licence lets the portal do, learnt from Graph's own answers.

Privileged Identity Management (eligible and time-bound role assignments: the
``roleEligibilitySchedule*`` and ``roleAssignmentSchedule*`` APIs) needs Microsoft Entra ID P2
(or ID Governance) in the tenant; a tenant without it refuses those calls. Nothing here reads a
licence list: the portal asks PIM once, and Graph's answer decides (a refusal with Graph's
licence error code means no PIM). The result is cached in the shared Django cache, so one probe
serves every process; any PIM call the portal makes elsewhere that Graph refuses for the licence
reports it here (:func:`note_pim_refused`), so the portal stops offering PIM at once.

References:
https://learn.microsoft.com/entra/id-governance/licensing-fundamentals
https://learn.microsoft.com/graph/api/resources/privilegedidentitymanagementv3-overview
https://learn.microsoft.com/entra/identity/monitoring-health/reference-reports-data-retention
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from django.conf import settings
from django.core.cache import cache
from redis.exceptions import RedisError

from graph import GraphClient
from graph import roles as graph_roles
from graph.errors import (
    GraphAuthError,
    GraphError,
    GraphNotFound,
    GraphPermissionDenied,
    GraphTransient,
)

logger = logging.getLogger(__name__)
_T = TypeVar("_T")

CACHE_KEY = "accounts:tenant-capabilities"
# An answer that says little (a transient failure) is kept only briefly, so the next page asks
# again; a real answer (PIM answers, or Graph refuses it for the licence) for
# PORTAL_CAPABILITIES_CACHE_SECONDS.
_UNSURE_CACHE_SECONDS = 60

# Graph's error codes for "this tenant's licence does not include the feature".
# AadPremiumLicenseRequired: docs silent (the PIM API reference pages name the P2 requirement but
# no error code); it is the code publicly reported for the PIM v3 APIs of a tenant without
# Entra ID P2 ("The tenant needs an AAD Premium 2 license."). missingLicense: documented for the
# premium-licence insight API ("Tenants without a premium license receive a 403 Forbidden
# response with the missingLicense error code",
# https://learn.microsoft.com/graph/api/azureadpremiumlicenseinsight-get?view=graph-rest-beta).
LICENCE_ERROR_CODES = frozenset({"aadpremiumlicenserequired", "missinglicense"})

# Audit log retention in days by licence (Entra's data retention reference:
# https://learn.microsoft.com/entra/identity/monitoring-health/reference-reports-data-retention).
RETENTION_DAYS = {"free": 7, "p1": 30, "p2": 30}
_PROBE_ROLE = graph_roles.ROLE_TEMPLATES["Global Administrator"]


@dataclass(frozen=True)
class TenantCapabilities:
    """What the tenant allows. ``pim``: PIM (eligibility and assignment schedules and their
    requests) answers. ``pim_unavailable_reason``: empty when ``pim``; else a sentence for a
    person naming the licence and Graph's answer. ``licence``: ``p2``, ``p1``, ``free`` or
    ``unknown`` (best known). ``audit_retention_days``: how far back the directory audit log
    reaches (30 with P1 or P2, 7 for free; 7 when unknown, the safe lower bound).
    ``source``: which Graph call answered what."""

    pim: bool
    pim_unavailable_reason: str
    licence: str
    audit_retention_days: int
    source: str


def is_licence_refusal(error: GraphError) -> bool:
    """Whether ``error`` is Graph refusing a call because the tenant lacks the licence."""
    return error.status in (400, 403) and (error.code or "").lower() in LICENCE_ERROR_CODES


def _graph_answer(error: GraphError) -> str:
    status = f"HTTP {error.status} " if error.status else ""
    return f"{status}{error.code}"


def _refused(error: GraphError, what: str) -> TenantCapabilities:
    return TenantCapabilities(
        pim=False,
        pim_unavailable_reason=(
            "Eligible and time-bound role assignments need Privileged Identity Management, "
            "which needs a Microsoft Entra ID P2 (or ID Governance) licence: this tenant has "
            f"none. Graph answered {what} with {_graph_answer(error)}: {error.message}"
        ),
        # P1 or free: PIM's answer does not tell which. Free is the safe guess for retention.
        licence="unknown",
        audit_retention_days=RETENTION_DAYS["free"],
        source=f"{what}: {_graph_answer(error)}",
    )


def _cached() -> TenantCapabilities | None:
    """The shared cache's answer; None when it has none or Redis is down (then Graph is asked:
    a page keeps working without Redis, and the submit that needs the queue says so itself)."""
    try:
        cached = cache.get(CACHE_KEY)
    except (RedisError, OSError) as exc:
        logger.warning("tenant capabilities: the cache is unavailable: %s", exc)
        return None
    return cached if isinstance(cached, TenantCapabilities) else None


def _remember(found: TenantCapabilities, timeout: int) -> None:
    try:
        cache.set(CACHE_KEY, found, timeout=timeout)
    except (RedisError, OSError) as exc:
        logger.warning("tenant capabilities: not cached, the cache is unavailable: %s", exc)


def _cache_seconds() -> int:
    return int(settings.PORTAL_CAPABILITIES_CACHE_SECONDS)


def _probe(client: GraphClient) -> tuple[TenantCapabilities, int]:
    what = "GET roleManagement/directory/roleEligibilitySchedules"
    try:
        graph_roles.list_role_eligibility_schedules(client, role_definition_id=_PROBE_ROLE)
    except GraphError as exc:
        if is_licence_refusal(exc):
            return _refused(exc, what), _cache_seconds()
        if isinstance(exc, GraphPermissionDenied | GraphNotFound | GraphAuthError) or (
            exc.permanent and not isinstance(exc, GraphTransient)
        ):
            # Not the licence, but the portal cannot use PIM all the same (its app lacks
            # RoleEligibilitySchedule.ReadWrite.Directory, say). Asked again soon.
            return (
                TenantCapabilities(
                    pim=False,
                    pim_unavailable_reason=(
                        "Eligible and time-bound role assignments are unavailable: Graph "
                        f"refused {what} with {_graph_answer(exc)}: {exc.message}"
                    ),
                    licence="unknown",
                    audit_retention_days=RETENTION_DAYS["free"],
                    source=f"{what}: {_graph_answer(exc)}",
                ),
                _UNSURE_CACHE_SECONDS,
            )
        # Transient: nothing learnt. PIM is assumed (its own calls fail or succeed as they
        # come, and a licence refusal among them is noted), and asked again soon.
        logger.warning("could not learn the tenant's PIM capability: %s", exc)
        return (
            TenantCapabilities(
                pim=True,
                pim_unavailable_reason="",
                licence="unknown",
                audit_retention_days=RETENTION_DAYS["free"],
                source=f"{what}: {_graph_answer(exc)} (transient; assumed available)",
            ),
            _UNSURE_CACHE_SECONDS,
        )
    return (
        TenantCapabilities(
            pim=True,
            pim_unavailable_reason="",
            licence="p2",
            audit_retention_days=RETENTION_DAYS["p2"],
            source=f"{what}: HTTP 200",
        ),
        _cache_seconds(),
    )


def tenant_capabilities(
    client: GraphClient | None = None, *, refresh: bool = False
) -> TenantCapabilities:
    """The tenant's capabilities: from the shared cache, else learnt with one Graph probe (a
    filtered read of PIM eligibility schedules) and cached. ``refresh`` asks Graph again.
    Never raises for a Graph failure (a transient one answers "PIM assumed available")."""
    if not refresh:
        cached = _cached()
        if cached is not None:
            return cached
    if client is None:
        from portal.graph_client import get_graph_client

        client = get_graph_client()
    found, timeout = _probe(client)
    _remember(found, timeout)
    return found


def note_pim_refused(error: GraphError) -> None:
    """A PIM call was refused: when it was for the licence, cache "no PIM" (with Graph's answer
    as the reason) so that pages stop offering PIM. Other errors are ignored."""
    if not is_licence_refusal(error):
        return
    known = _cached()
    if known is not None and not known.pim:
        return
    logger.warning("PIM refused for the tenant's licence: %s", error)
    _remember(_refused(error, "a PIM request"), _cache_seconds())


def pim_read(client: GraphClient, read: Callable[[], _T]) -> _T | None:
    """``read()`` (a PIM call) when the tenant has PIM; None when it has not, or when Graph
    refuses the call for the licence (then noted: :func:`note_pim_refused`). Other errors are
    raised as they come."""
    if not tenant_capabilities(client).pim:
        return None
    try:
        return read()
    except GraphError as exc:
        if not is_licence_refusal(exc):
            raise
        note_pim_refused(exc)
        return None


def forget_capabilities() -> None:
    """Drop the cached capabilities (tests; after a licence change)."""
    cache.delete(CACHE_KEY)
