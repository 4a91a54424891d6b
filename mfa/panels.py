"""The person page's Graph panels: methods (with the sign-in preference: the default method) and
per-user MFA state, each loaded as a fragment after the page.

The page reads only what an agent needs first: the methods load by themselves; the default
method and the per-user MFA state show at once when the cache holds them, and are otherwise read
when the agent asks for them (``PANEL_PARTS``), since each is one more call of the reports budget
(5 per 10 s for the whole tenant).

A panel is answered, in this order:

1. from ``mfa.person_cache`` while what it shows is held there (with its age);
2. else read from Graph now, through a view of the client that never waits for the budget
   (``GraphClient.for_agent(agent).without_waiting()``: each call takes its token with
   ``RequestBudget.try_acquire`` at interactive priority in the agent's fair share), filling
   the cache;
3. else, when a call finds no token at once (``graph.budget.BudgetBusy``, nothing sent), as a
   waiting panel: "waiting for Graph's budget, about N s (place k in the queue)" from the
   budget's estimate, which the browser asks for again after about N s (static/js/panels.js).
   The refused call keeps the agent's place in the queue for HOLD_SECONDS.

So neither the page nor a panel ever sleeps in a web worker waiting for the reports budget. A
Graph failure stays in its panel with Graph's code and request-id.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from redis.exceptions import RedisError

from graph import GraphClient
from graph.budget import REPORTS, BudgetBusy, Priority
from graph.errors import GraphError, GraphThrottled
from mfa import person_cache
from mfa.forms import METHOD_NAMES

METHODS_PANEL = "methods"
MFA_PANEL = "mfa"
# The person_cache parts each panel reads from Graph when they are not held. A person page
# reads only what an agent needs first, the methods (one reports-class call): the default
# method (the sign-in preferences) and the per-user MFA state are each one more call of the
# same 5-per-10-s budget the whole helpdesk shares, so they are read when the agent asks
# ("Show the default method", "Show the per-user MFA state"), and shown at once, with no call,
# whenever the cache holds them (another view, a reset's re-list, an earlier ask).
PANEL_PARTS: dict[str, tuple[str, ...]] = {
    METHODS_PANEL: (person_cache.METHODS,),
    MFA_PANEL: (person_cache.MFA_STATE,),
}
# The methods panel asked for with the default method (``?default=1``).
WITH_DEFAULT_PARTS = (person_cache.METHODS, person_cache.PREFERENCES)
# The browser asks again after half the estimate (the wait shortens as the queue moves, and a
# re-fetch is a request on the portal's workers: under a saturated budget, polling every few
# seconds made most of their work), never sooner than MIN_RETRY_SECONDS nor later than
# MAX_RETRY_SECONDS. A refused call keeps the agent's place in the budget's queue for
# HOLD_SECONDS (graph.client.GraphClient.without_waiting), longer than the longest delay, and
# asking again within it renews the place; a page closed meanwhile holds one token for no longer.
MIN_RETRY_SECONDS = 1
MAX_RETRY_SECONDS = 30
# At the head of the queue: asked again right after the estimate, but not sooner than this.
HEAD_RETRY_SECONDS = 0.3
HOLD_SECONDS = MAX_RETRY_SECONDS + 15.0


@dataclass(frozen=True)
class BudgetWaitShown:
    """A panel waiting for the budget: about ``seconds`` (whole, at least 1), at ``position`` in
    the queue (1 = next), asked for again after ``retry_seconds``."""

    seconds: int
    position: int
    retry_seconds: float


@dataclass(frozen=True)
class Panel:
    """What one panel shows: ``security`` (what is held or was just read), or ``waiting``, or
    ``error`` (a Graph failure, with its code and request-id). ``age_seconds`` is how old the
    shown data is (about 0 when just read); ``from_cache`` whether it came from the cache.
    ``preferences_error``: the methods are shown but the default method could not be read.
    ``preferences_waiting``: the methods are shown and the default method's read waits for the
    budget (the panel is "partial": it asks again, like a waiting one, until it has both)."""

    name: str
    oid: str
    security: person_cache.PersonSecurity | None = None
    age_seconds: float | None = None
    from_cache: bool = False
    waiting: BudgetWaitShown | None = None
    error: GraphError | None = None
    preferences_error: GraphError | None = None
    preferences_waiting: BudgetWaitShown | None = None
    with_default: bool = False

    def context(self) -> dict[str, Any]:
        """The template context of ``mfa/_panel_<name>.html``."""
        context: dict[str, Any] = {
            "panel": self.name,
            "oid": self.oid,
            "with_default": self.with_default,
            "waiting": self.waiting,
            "panel_error": self.error,
            "age_seconds": self.age_seconds,
            "age_text": age_text(self.age_seconds),
            "from_cache": self.from_cache,
        }
        security = self.security
        if self.name == METHODS_PANEL:
            methods = list(security.methods or ()) if security else []
            default_id = security.default_method_id if security else None
            context.update(
                methods=[
                    {
                        "method": m,
                        "name": METHOD_NAMES.get(
                            m.kind.type_name, m.odata_type or "Unknown method"
                        ),
                        "is_default": m.id == default_id,
                    }
                    for m in methods
                ],
                preferences=security.preferences if security else None,
                preferences_error=self.preferences_error,
                preferences_waiting=self.preferences_waiting,
                default_known=default_id is not None,
                # Not read yet, and not asked for: the panel offers "Show the default method".
                default_offered=bool(methods)
                and not self.with_default
                and not (security and security.has(person_cache.PREFERENCES)),
            )
        else:
            context["mfa_state"] = security.mfa_state if security else None
        return context


def age_text(seconds: float | None) -> str:
    """``"just now"``, ``"40 s ago"``, ``"2 min ago"``, ``"1 h ago"``."""
    if seconds is None:
        return ""
    if seconds < 5:
        return "just now"
    if seconds < 60:
        return f"{int(seconds)} s ago"
    if seconds < 3600:
        return f"{int(seconds // 60)} min ago"
    return f"{int(seconds // 3600)} h ago"


def _missing(held: person_cache.PersonSecurity | None, parts: tuple[str, ...]) -> list[str]:
    if held is None:
        return list(parts)
    missing = [p for p in parts if not held.has(p)]
    if person_cache.PREFERENCES in missing and held.has(person_cache.METHODS):
        if not held.methods:
            # No methods: there is no default to read (person_cache.load would not read it).
            missing.remove(person_cache.PREFERENCES)
    return missing


def _waiting(seconds: float, position: int) -> BudgetWaitShown:
    shown = max(1, math.ceil(seconds))
    if position <= 1:
        # Next in the queue: the token is owed to this panel and waits for it, unused, until
        # it asks again; so it asks just after the estimate, which is exact at the head.
        retry = max(HEAD_RETRY_SECONDS, round(seconds + 0.1, 1))
    else:
        retry = min(MAX_RETRY_SECONDS, max(MIN_RETRY_SECONDS, math.ceil(shown / 2)))
    return BudgetWaitShown(seconds=shown, position=max(1, position), retry_seconds=retry)


def _hold_id(oid: str, panel: str) -> str:
    """The panel's own place in the budget's queue (one per person and panel, so that each
    waiting panel keeps its age and one filled from the cache can give its place up)."""
    return f"{oid}:{panel}"


def _release(client: GraphClient, *, agent_key: str, oid: str, panel: str) -> None:
    """Give up this panel's place in the queue: another agent's read filled the cache."""
    try:
        client.budget.release_hold(
            REPORTS, Priority.INTERACTIVE, agent_key or None, _hold_id(oid, panel)
        )
    except (GraphError, ValueError, RedisError):
        pass  # the hold lapses by itself within HOLD_SECONDS


def _methods_read_before(
    shown: Callable[..., Panel],
    panel: str,
    oid: str,
    *,
    preferences_waiting: BudgetWaitShown | None = None,
    preferences_error: GraphError | None = None,
) -> Panel | None:
    """The methods panel (made by ``shown``) from the methods the load read (cached) before its
    default-method read waited or failed; None for another panel, or when the methods were not
    read."""
    after = person_cache.cached(oid)
    if panel != METHODS_PANEL or after is None or not after.has(person_cache.METHODS):
        return None
    return shown(
        security=after,
        age_seconds=after.age_seconds(person_cache.METHODS),
        preferences_waiting=preferences_waiting,
        preferences_error=preferences_error,
    )


def person_panel(
    client: GraphClient, *, oid: str, panel: str, agent_key: str, with_default: bool = False
) -> Panel:
    """The panel ``panel`` (METHODS_PANEL or MFA_PANEL) of ``oid``'s person page for the agent
    whose fair-share key (their object id) is ``agent_key``; ``with_default``: the methods
    panel with the default method (read when not held). See the module docstring.

    Raises KeyError for an unknown panel; never raises for Graph (failures are in ``error``).
    """
    with_default = with_default and panel == METHODS_PANEL
    parts = WITH_DEFAULT_PARTS if with_default else PANEL_PARTS[panel]
    shown = functools.partial(Panel, name=panel, oid=oid, with_default=with_default)
    held = person_cache.cached(oid)
    missing = _missing(held, parts)
    if not missing and held is not None:
        _release(client, agent_key=agent_key, oid=oid, panel=panel)
        return shown(
            security=held,
            age_seconds=held.age_seconds(*[p for p in parts if held.has(p)]),
            from_cache=True,
        )
    try:
        security = person_cache.load(
            client.for_agent(agent_key).without_waiting(
                hold_seconds=HOLD_SECONDS, hold_id=_hold_id(oid, panel)
            ),
            oid,
            parts=missing,
        )
    except BudgetBusy as exc:
        # Nothing was sent for the refused call; parts read before it are kept in the cache.
        wait = _waiting(exc.wait.seconds, exc.wait.position)
        # The methods read and only the default waiting: show them now (what the agent needs
        # first); the default mark fills in when its read is granted.
        return _methods_read_before(shown, panel, oid, preferences_waiting=wait) or shown(
            waiting=wait
        )
    except GraphThrottled as exc:
        # Graph said 429 after all (the client recorded the pause for every process).
        again = exc.retry_after if exc.retry_after is not None else MIN_RETRY_SECONDS
        return shown(waiting=_waiting(again, 1))
    except GraphError as exc:
        # The methods read and only the default failing: show them, say so.
        return _methods_read_before(shown, panel, oid, preferences_error=exc) or shown(error=exc)
    held_parts = [p for p in parts if security.has(p)]
    return shown(security=security, age_seconds=security.age_seconds(*held_parts))
