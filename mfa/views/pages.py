"""What the helpdesk pages share: telling an htmx request from a page load, a Graph failure as
the page or section that explains it, and reading the person a page is about."""

from __future__ import annotations

import math
from typing import Any

from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render

from graph.errors import GraphError, GraphNotFound, GraphThrottled
from mfa import policy
from portal.graph_client import get_graph_client


def is_htmx(request: HttpRequest) -> bool:
    """Whether htmx asked for a fragment (not for a whole page)."""
    # A history restore asks for the whole page even though htmx sends it.
    return (
        request.headers.get("HX-Request") == "true"
        and request.headers.get("HX-History-Restore-Request") != "true"
    )


def graph_problem(exc: GraphError, *, what: str) -> dict[str, Any]:
    """A Graph failure as the templates show it: a title, a sentence, code and request-id."""
    if exc.code == "BudgetUnavailable":
        # Not Graph: the portal's own Redis (shared budget, queue) is down. Nothing was sent.
        return {
            "state": "unavailable",
            "level": "error",
            "title": f"{what} could not start.",
            "text": "The portal cannot reach its queue and shared Graph budget (Redis) right "
            "now, so nothing was recorded and nothing was sent to Microsoft. Try again in a "
            "minute; if it keeps happening, tell the portal's administrators.",
            "code": exc.code,
            "message": exc.message,
            "request_id": exc.request_id,
        }
    if isinstance(exc, GraphThrottled):
        wait = math.ceil(exc.retry_after) if exc.retry_after else None
        text = "Microsoft Graph is busy right now" + (
            f": try again in {wait} seconds." if wait else ": try again in a moment."
        )
        return {
            "state": "throttled",
            "level": "warning",
            "title": f"{what} is held back by Graph's throttling.",
            "text": text,
            "code": exc.code,
            "message": exc.message,
            "request_id": exc.request_id,
            "retry_after": wait,
        }
    return {
        "state": "failed",
        "level": "error",
        "title": f"{what} failed.",
        "text": "Microsoft Graph answered with an error. If it keeps happening, report the "
        "code and request-id below.",
        "code": exc.code,
        "message": exc.message,
        "request_id": exc.request_id,
    }


def graph_problem_response(request: HttpRequest, exc: GraphError, *, what: str) -> HttpResponse:
    """The page for a Graph failure the page cannot do without: 502 when Graph failed, 503 (with
    Retry-After when known) when it throttles or the portal's Redis is down."""
    problem = graph_problem(exc, what=what)
    status = 502 if problem["state"] == "failed" else 503
    response = render(request, "mfa/graph_problem.html", {"problem": problem}, status=status)
    if problem.get("retry_after"):
        response["Retry-After"] = str(problem["retry_after"])
    return response


def profile_or_problem(
    request: HttpRequest, oid: str, *, use_cache: bool = True
) -> policy.TargetProfile | HttpResponse:
    """The person's TargetProfile; Http404 for an unknown person; a 502/503 page when Graph
    fails."""
    try:
        return policy.target_profile(get_graph_client(), oid, use_cache=use_cache)
    except (GraphNotFound, ValueError) as exc:
        raise Http404("No such person in the directory") from exc
    except GraphError as exc:
        return graph_problem_response(request, exc, what="Reading this person")
