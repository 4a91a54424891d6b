"""What every browser test shares: Debian's Chromium, a fresh page, signing in on the emulator's
own page as a person would, and screenshots for the README."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from tests.personas import Persona

# Playwright's sync API keeps an event loop in this thread; Django would take every ORM call
# made by the test itself for one from async code.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

# Debian's Chromium (`.ci/run` installs it): nothing here downloads a browser.
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
# The README's pictures are rewritten only when asked (`make screenshots`): a plain test run
# leaves the checkout clean and keeps its pictures in the run's own folder.
SCREENSHOTS = (
    Path(__file__).resolve().parents[2] / "docs" / "screenshots"
    if os.environ.get("PORTAL_WRITE_SCREENSHOTS") == "1"
    else Path(os.environ.get("PORTAL_VAR_DIR", "var")) / "screenshots"
)
# A request ends within seconds against the emulator; the margin covers a slow CI machine.
FINAL_TIMEOUT_MS = 90_000


def open_page(chromium: Any) -> Any:
    """A page in a fresh browser context: its own cookies, so one person per context."""
    # The emulator's certificate comes from the run's own CA (loopback only).
    context = chromium.new_context(
        ignore_https_errors=True, viewport={"width": 1280, "height": 900}
    )
    context.grant_permissions(["clipboard-read", "clipboard-write"])
    page = context.new_page()
    page.set_default_timeout(20_000)
    return page


def sign_in(page: Any, portal: str, persona: Persona, path: str) -> None:
    """Open ``path``, get sent to the emulator's sign-in page, pick the persona there."""
    page.goto(f"{portal}{path}")
    page.locator(f'button[name="emulator_username"][value="{persona.upn}"]').click()
    page.wait_for_url(re.compile(re.escape(portal) + ".*"))
    if page.locator("button", has_text="Continue").count():
        page.locator("button", has_text="Continue").click()
    page.wait_for_url(f"{portal}{path}")


def shot(page: Any, name: str) -> None:
    """Save a full-page screenshot as <SCREENSHOTS>/<name>.png (docs/screenshots, which the
    README shows, with PORTAL_WRITE_SCREENSHOTS=1)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


# --- accessibility ---------------------------------------------------------------------------
AXE = Path(__file__).resolve().parents[1] / "data" / "axe" / "axe.min.js"

# Every form control a person can reach must have an accessible name.
UNLABELLED_CONTROLS_JS = """
() => Array.from(document.querySelectorAll('input, select, textarea'))
  .filter(el => !['hidden', 'submit', 'button', 'reset', 'image'].includes(el.type))
  .filter(el => !(el.labels && el.labels.length)
             && !el.getAttribute('aria-label')
             && !el.getAttribute('aria-labelledby')
             && !el.closest('label'))
  .map(el => el.outerHTML.slice(0, 200))
"""


def axe_violations(page: Any) -> list[dict[str, Any]]:
    """axe-core's violations on the page as it is now, of every impact (minor included)."""
    if not page.evaluate("() => typeof window.axe !== 'undefined'"):
        page.evaluate(AXE.read_text())
    result = page.evaluate("async () => await axe.run(document)")
    # A page axe could not really examine would pass vacuously.
    assert len(result["passes"]) >= 10, (page.url, len(result["passes"]))
    return [
        {
            "id": v["id"],
            "impact": v["impact"],
            "help": v["help"],
            "nodes": [n["html"][:160] for n in v["nodes"][:5]],
        }
        for v in result["violations"]
    ]


def check_accessibility(page: Any, name: str, problems: dict[str, Any]) -> None:
    """Add ``name``'s axe violations and unlabelled controls to ``problems`` (none: nothing added).

    Tests collect every page, then ``assert problems == {}``."""
    violations = axe_violations(page)
    unlabelled = page.evaluate(UNLABELLED_CONTROLS_JS)
    if violations or unlabelled:
        problems[name] = {"url": page.url, "axe": violations, "unlabelled": unlabelled}
