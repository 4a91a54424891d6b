"""The Temporary Access Pass rules of the policy (``mfa.policy`` re-exports them): a pass must
fit the tenant's TAP policy, read from Graph."""

from __future__ import annotations

from django.core.cache import cache

from graph import GraphClient
from graph import methods as graph_methods
from graph.results import TemporaryAccessPassPolicy
from outbox.errors import InvalidRequest

# An action form's POST checks this copy (Graph still refuses a pass outside the policy).
_TAP_POLICY_CACHE_SECONDS = 600


def tap_policy(client: GraphClient, *, use_cache: bool = True) -> TemporaryAccessPassPolicy:
    """The tenant's TAP policy, from Graph (cached for ten minutes: it changes rarely and every
    read costs a token of the small reports budget)."""
    key = "mfa:tap-policy"
    if use_cache:
        cached = cache.get(key)
        if isinstance(cached, TemporaryAccessPassPolicy):
            return cached
    policy = graph_methods.get_tap_policy(client)
    cache.set(key, policy, timeout=_TAP_POLICY_CACHE_SECONDS)
    return policy


def tap_lifetime_bounds(policy: TemporaryAccessPassPolicy) -> tuple[int, int]:
    """(shortest, longest) lifetime in minutes that Graph and the tenant policy both allow."""
    low = max(graph_methods.TAP_MIN_LIFETIME, policy.minimum_lifetime_in_minutes or 0)
    high = min(
        graph_methods.TAP_MAX_LIFETIME,
        policy.maximum_lifetime_in_minutes or graph_methods.TAP_MAX_LIFETIME,
    )
    return low, high


def check_tap_params(
    policy: TemporaryAccessPassPolicy, *, lifetime_minutes: int, usable_once: bool
) -> None:
    """Raises InvalidRequest when a pass with these settings falls outside the tenant policy."""
    if not policy.enabled:
        raise InvalidRequest(
            "Temporary Access Pass is turned off in this tenant's authentication methods policy."
        )
    low, high = tap_lifetime_bounds(policy)
    if not low <= lifetime_minutes <= high:
        raise InvalidRequest(
            f"The tenant's policy allows a pass lifetime of {low} to {high} minutes, "
            f"not {lifetime_minutes}."
        )
    if policy.is_usable_once and not usable_once:
        raise InvalidRequest("The tenant's policy allows one-time passes only.")
