"""An agent's browser for bench/load_real_budget.py: a person page followed as htmx does it,
and an action done as an agent does it (run alone it only says so).

The person page: the shell, then every fragment it loads by itself (``hx-get`` under
``/users/<oid>/`` with a ``load`` or ``every`` trigger, or a ``/panels/`` URL with no trigger),
in parallel as a browser's connections do; a fragment that again asks for itself is a waiting
panel, re-fetched after the delay it advertises (``delay:Ns`` / ``every Ns`` in its trigger, a
``data-retry-after`` / ``data-delay`` / ``data-seconds`` attribute, or ``Retry-After``). The
methods panel is the fragment whose ``/panels/`` path names methods (today's page, with no
fragments, has the methods in the shell). An answer of 4xx/5xx to a page, or a Graph problem
shown as an error (``data-graph-problem``, "held back by Graph", "Too many requests"), counts as
an error shown to the agent.
"""

from __future__ import annotations

import html
import random
import re
import sys
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_stack import Client

PANEL_GIVE_UP_SECONDS = 120.0
# The run's last moment (monotonic): a panel still waiting then is given up (censored).
HARD_END = [float("inf")]
INVALID_FIRST_SHARE = 1 / 3

TAG = re.compile(r"<[a-zA-Z][^>]*>", re.S)
ATTR = re.compile(r'([\w:-]+)\s*=\s*"([^"]*)"')
DELAY = re.compile(r"delay:\s*(\d+(?:\.\d+)?)\s*(ms|s)\b")
EVERY = re.compile(r"every\s+(\d+(?:\.\d+)?)\s*(ms|s)\b")
SHOWN_ERROR = re.compile(
    r'data-graph-problem="(throttled|failed)"|held back by Graph|Microsoft Graph is busy'
    r"|TooManyRequests|Too many requests",
    re.I,
)


# --- following the page as a browser does ---


@dataclass(frozen=True)
class Fetch:
    url: str
    delay: float  # seconds before the browser fetches it (a waiting panel's advertised delay)
    panel: str  # data-panel (methods, mfa, entra...), else the URL


def _seconds(value: str, unit: str) -> float:
    return float(value) / 1000 if unit == "ms" else float(value)


def _tags(body: str) -> list[dict[str, str]]:
    tags = TAG.findall(body)
    return [{k.lower(): html.unescape(v) for k, v in ATTR.findall(tag)} for tag in tags]


def _panel_fetch(attrs: dict[str, str]) -> Fetch | None:
    """What a ``data-panel`` element asks the script to do (static/js/panels.js): fetch a
    ``loading`` panel at once, a ``waiting`` one after ``data-retry-after`` seconds."""
    state = attrs.get("data-panel-state", "")
    url = attrs.get("data-panel-url", "")
    if not url or state not in ("loading", "waiting"):
        return None
    delay = 0.0
    if state == "waiting":
        try:
            delay = float(attrs.get("data-retry-after") or "1")
        except ValueError:
            delay = 1.0
    return Fetch(url, delay, attrs.get("data-panel", url))


def fragment_fetches(body: str, oid: str) -> list[Fetch]:
    """The fragments this HTML makes the browser fetch by itself: every ``data-panel-url``
    panel that is ``loading`` or ``waiting`` (static/js/panels.js), and any ``hx-get`` under
    ``/users/<oid>/`` with a ``load`` or ``every`` trigger (htmx)."""
    out: list[Fetch] = []
    for attrs in _tags(body):
        if "data-panel-url" in attrs:
            fetch = _panel_fetch(attrs)
            if fetch is not None:
                out.append(fetch)
            continue
        url = attrs.get("hx-get", "")
        trigger = attrs.get("hx-trigger", "")
        if url.startswith(f"/users/{oid}/") and ("load" in trigger or "every" in trigger):
            match = DELAY.search(trigger) or EVERY.search(trigger)
            out.append(Fetch(url, _seconds(*match.groups()) if match else 0.0, url))
    return out


def panel_state(body: str) -> tuple[str, Fetch | None]:
    """A fetched panel's state (``filled``, ``waiting``, ``error``...; ``filled`` for a fragment
    that is not a ``data-panel``) and the re-fetch it asks for."""
    for attrs in _tags(body):
        if "data-panel" in attrs:
            return attrs.get("data-panel-state", "filled"), _panel_fetch(attrs)
    return "filled", None


@dataclass
class View:
    agent: int
    oid: str
    started: float  # monotonic
    shell_s: float = float("nan")
    methods_fill_s: float = float("nan")
    waited: bool = False  # the methods panel answered "waiting" at least once
    fragments: int = 0
    refetches: int = 0
    shown_errors: int = 0
    errors: list[str] = field(default_factory=list)


def _fragment(
    client: Client, fetch: Fetch, oid: str, view: View, t0: float, lock: threading.Lock
) -> None:
    """Fetch one panel until it is no longer loading or waiting (static/js/panels.js)."""
    url, delay = fetch.url, fetch.delay
    is_methods = fetch.panel == "methods" or "/panels/methods" in fetch.url
    give_up = min(t0 + PANEL_GIVE_UP_SECONDS, HARD_END[0])
    while True:
        if delay > 0:
            if time.monotonic() + delay > give_up:
                with lock:
                    view.errors.append(f"{url} still waiting at the give-up time")
                return
            time.sleep(delay)
        try:
            status, body, _headers = client.request("GET", url, htmx=True)
        except Exception as exc:  # a refused/closed connection is an error here
            with lock:
                view.errors.append(f"{type(exc).__name__} for {url}")
            return
        now = time.monotonic()
        state, again = panel_state(body)
        with lock:
            view.fragments += 1
        if status >= 400 or state == "error" or SHOWN_ERROR.search(body):
            with lock:
                view.shown_errors += 1
                view.errors.append(f"HTTP {status}, panel {state} (shown as an error) for {url}")
            return
        if is_methods and state in ("filled", "partial"):
            # The methods are listed ("partial": only the default method's mark still waits).
            with lock:
                if view.methods_fill_s != view.methods_fill_s:
                    view.methods_fill_s = now - t0
        if again is None:
            if is_methods:
                with lock:
                    if view.methods_fill_s != view.methods_fill_s:
                        view.methods_fill_s = now - t0
            return
        with lock:
            view.refetches += 1
            if is_methods and state == "waiting":
                view.waited = True
        if now > give_up:
            with lock:
                view.errors.append(f"{url} still waiting at the give-up time")
            return
        url, delay = again.url, max(again.delay, 0.05)


def open_person(port: int, cookie: str, agent: int, oid: str) -> View:
    """The shell, then its fragments in parallel (as a browser's connections do)."""
    client = Client(port, cookie)
    t0 = time.monotonic()
    view = View(agent=agent, oid=oid, started=t0)
    try:
        status, body, _headers = client.request("GET", f"/users/{oid}/")
    except Exception as exc:
        view.errors.append(f"{type(exc).__name__} for the shell")
        client.close()
        return view
    view.shell_s = time.monotonic() - t0
    client.close()
    if status != 200:
        view.errors.append(f"HTTP {status} for the shell")
        if status == 503 or SHOWN_ERROR.search(body):
            view.shown_errors += 1
        return view
    if SHOWN_ERROR.search(body):
        view.shown_errors += 1
    fetches = fragment_fetches(body, oid)
    if not any(f.panel == "methods" or "/panels/methods" in f.url for f in fetches):
        view.methods_fill_s = view.shell_s  # the methods are in the shell (the page before #12)
    lock = threading.Lock()
    threads = []
    for fetch in fetches:
        fragment_client = Client(port, cookie)
        thread = threading.Thread(
            target=_fragment, args=(fragment_client, fetch, oid, view, t0, lock), daemon=True
        )
        thread.start()
        threads.append((thread, fragment_client))
    for thread, fragment_client in threads:
        thread.join(PANEL_GIVE_UP_SECONDS + 30)
        fragment_client.close()
    return view


# --- actions ---

CSRF_INPUT = re.compile(r'name="csrfmiddlewaretoken"\s+value="([^"]+)"')
IDEMPOTENCY = re.compile(r'<input[^>]*name="idempotency_key"[^>]*>')
VALUE = re.compile(r'value="([^"]*)"')
MANUAL_CHECK = "Call-back to the phone number in the HR system"


def form_tokens(body: str) -> tuple[str, str]:
    csrf = CSRF_INPUT.search(body)
    tag = IDEMPOTENCY.search(body)
    value = VALUE.search(tag.group(0)) if tag else None
    return (csrf.group(1) if csrf else "", value.group(1) if value else "")


@dataclass
class ActionTimes:
    invalid_post: list[float] = field(default_factory=list)
    valid_post: list[float] = field(default_factory=list)
    form_get: list[float] = field(default_factory=list)
    outcomes: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    shown_errors: int = 0
    errors: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def act(port: int, cookie: str, oid: str, kind: str, rng: random.Random, out: ActionTimes) -> None:
    """One action on one person, as an agent does it (module docstring)."""
    client = Client(port, cookie)
    form_url = f"/users/{oid}/actions/{kind}/"

    def get_form() -> tuple[int, str]:
        t = time.perf_counter()
        status, body, _h = client.request("GET", form_url)
        with out.lock:
            out.form_get.append(time.perf_counter() - t)
        return status, body

    try:
        status, body = get_form()
        if status != 200:
            with out.lock:
                out.outcomes[f"form HTTP {status}"] += 1
                if status >= 500 or SHOWN_ERROR.search(body):
                    out.shown_errors += 1
            return
        csrf, key = form_tokens(body)
        if kind == "reregister":
            status, body, _h = client.request(
                "POST",
                f"/users/{oid}/verify/manual/",
                form={
                    "csrfmiddlewaretoken": csrf,
                    "check": MANUAL_CHECK,
                    "evidence": "Called back on the HR number, the person answered.",
                },
            )
            status, body = get_form()
            if status != 200:
                with out.lock:
                    out.outcomes[f"form HTTP {status}"] += 1
                return
            csrf, key = form_tokens(body)
        fields = {
            "csrfmiddlewaretoken": csrf,
            "idempotency_key": key,
            "reason": "Caller lost their phone and needs to set up MFA again",
            "ticket": f"INC{rng.randrange(1000000, 9999999)}",
        }
        if rng.random() < INVALID_FIRST_SHARE:
            t = time.perf_counter()
            status, body, _h = client.request("POST", form_url, form={**fields, "reason": "phone"})
            seconds = time.perf_counter() - t
            with out.lock:
                out.invalid_post.append(seconds)
                if status != 400:
                    out.errors.append(f"invalid POST answered {status}")
                if SHOWN_ERROR.search(body):
                    out.shown_errors += 1
            csrf, key2 = form_tokens(body)
            fields["csrfmiddlewaretoken"] = csrf or fields["csrfmiddlewaretoken"]
            fields["idempotency_key"] = key2 or key
        t = time.perf_counter()
        status, body, _h = client.request("POST", form_url, form=fields)
        seconds = time.perf_counter() - t
        with out.lock:
            out.valid_post.append(seconds)
            if status == 302:
                out.outcomes[f"{kind} requested"] += 1
            elif status == 409:
                out.outcomes[f"{kind} refused by policy (409)"] += 1
            else:
                out.outcomes[f"{kind} HTTP {status}"] += 1
                if status >= 500 or SHOWN_ERROR.search(body):
                    out.shown_errors += 1
    except Exception as exc:
        with out.lock:
            out.errors.append(f"{type(exc).__name__} during {kind}")
    finally:
        client.close()


if __name__ == "__main__":
    print("helper of bench/load_real_budget.py: nothing to measure alone")
