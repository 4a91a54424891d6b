"""The operations view (``/ops/``, Admin only): the shared Graph budget per throttling class, now
and over the last hour, read from the same Redis state the budget itself uses
(``RequestBudget.snapshot()``). Drawing it costs no Graph call.

Now: tokens in the bucket, a 429 pause, calls waiting per priority and who they are (the fair key
is an agent's Entra object id, named from the portal's own PortalProfile rows), how long the
budget has not moved while calls wait (``GRAPH_BUDGET_STALL_SECONDS`` is /readyz's line). The last
hour, per minute: tokens used per priority, calls that had to wait and for how long, 429s seen and
Retry-After pauses, with a small chart drawn here as inline SVG (no script: the CSP forbids inline
script, and none is needed).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from accounts.models import PortalProfile
from accounts.roles import ADMIN_ROLES, role_required
from graph import GraphTransient
from graph.budget import ANONYMOUS, Priority

# The portal roles that reach /ops/.
OPS_ROLES: tuple[str, ...] = ADMIN_ROLES

CHART_WIDTH = 600
CHART_HEIGHT = 120
# Fill colours of the priorities, and of the 429 marks (SVG attributes, not CSS: the CSP
# allows no inline style).
_COLOURS = {
    Priority.ACTION.value: "#1d4f80",
    Priority.INTERACTIVE.value: "#2f6fb3",
    Priority.BULK.value: "#d08a1e",
    Priority.SYNC.value: "#7a8a99",
}
_THROTTLED_COLOUR = "#c0392b"


@dataclass(frozen=True)
class Bar:
    """One rectangle of the chart, with its hover text."""

    x: float
    y: float
    width: float
    height: float
    fill: str
    title: str


@dataclass(frozen=True)
class Chart:
    width: int
    height: int
    bars: tuple[Bar, ...]
    marks: tuple[Bar, ...]
    limit_y: float
    top: int
    label: str


def budget_chart(minutes: list[Mapping[str, Any]], per_minute: float) -> Chart:
    """Stacked bars of the tokens used per minute by priority (oldest left), a line at what
    the budget can give in a minute, and a red mark under each minute that saw a 429."""
    top = max([per_minute, *(row["used"] for row in minutes), 1])
    step = CHART_WIDTH / max(1, len(minutes))
    plot = CHART_HEIGHT - 8  # room for the 429 marks
    bars: list[Bar] = []
    marks: list[Bar] = []
    for i, row in enumerate(minutes):
        at = datetime.fromtimestamp(row["at"], tz=UTC).strftime("%H:%M")
        by = row["by_priority"]
        parts = ", ".join(f"{p} {by[p]['used']}" for p in _COLOURS)
        title = f"{at} UTC: {row['used']} used ({parts}), {row['throttled']} 429s"
        base = plot
        for priority, colour in _COLOURS.items():
            used = by[priority]["used"]
            if not used:
                continue
            height = plot * used / top
            base -= height
            bars.append(Bar(i * step, base, max(1.0, step - 1), height, colour, title))
        if row["throttled"]:
            marks.append(Bar(i * step, plot + 2, max(1.0, step - 1), 6, _THROTTLED_COLOUR, title))
    return Chart(
        width=CHART_WIDTH,
        height=CHART_HEIGHT,
        bars=tuple(bars),
        marks=tuple(marks),
        limit_y=plot - plot * per_minute / top,
        top=round(top),
        label=f"tokens used per minute over the last hour; the line is the budget, {per_minute:.0f}"
        " a minute",
    )


def agent_names(keys: Iterable[str]) -> dict[str, str]:
    """Fair keys (Entra object ids) to the names the portal knows them by."""
    wanted = {key for key in keys if key != ANONYMOUS}
    names = {
        oid: display_name or upn or oid
        for oid, display_name, upn in PortalProfile.objects.filter(oid__in=wanted).values_list(
            "oid", "display_name", "upn"
        )
    }
    names[ANONYMOUS] = "no agent (background, or a call outside a request)"
    return names


def _class_rows(state: Mapping[str, Any], stall_seconds: float) -> dict[str, Any]:
    requests, _, window = state["rate"].partition("/")
    per_minute = int(requests) * 60 / float(window)
    hour = state["hour"]
    return {
        **state,
        "stalled": state["stalled_for"] > stall_seconds or state["paused_for"] > stall_seconds,
        "waiting_total": sum(state["waiting"].values()),
        "average_wait": hour["waited_s"] / hour["waits"] if hour["waits"] else 0.0,
        "chart": budget_chart(state["minutes"], per_minute),
        "per_minute": round(per_minute),
        "rate_text": f"{requests} requests per {window} s",
        "agents_served": sum(1 for key in state["served"] if key != ANONYMOUS),
    }


@never_cache
@require_GET
@role_required(*OPS_ROLES)
def budget_view(request: HttpRequest) -> HttpResponse:
    """``/ops/``: the Graph budget per class, now and over the last hour."""
    from portal.graph_client import get_graph_client  # builds the Graph client on first use

    stall_seconds = settings.GRAPH_BUDGET_STALL_SECONDS
    try:
        snapshot = get_graph_client().budget.snapshot()
    except GraphTransient as exc:
        return render(request, "portal/ops.html", {"error": exc}, status=503)
    classes = {cls: _class_rows(state, stall_seconds) for cls, state in snapshot["classes"].items()}
    names = agent_names(w["key"] for state in classes.values() for w in state["waiters"])
    for state in classes.values():
        for waiter in state["waiters"]:
            waiter["name"] = names.get(waiter["key"], waiter["key"])
    return render(
        request,
        "portal/ops.html",
        {
            "classes": classes,
            "at": datetime.fromtimestamp(snapshot["at"], tz=UTC),
            "stall_seconds": stall_seconds,
            "colours": _COLOURS,
            "throttled_colour": _THROTTLED_COLOUR,
        },
    )
