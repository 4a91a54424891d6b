"""Fixtures of the browser tests: headless Chromium, pages in fresh contexts,
and the live portal with a real worker and a freshly seeded emulator tenant."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pytest_django.fixtures import Settings

from tests.browser.support import CHROMIUM, CHROMIUM_ARGS, open_page


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    """One browser per test module: Playwright's sync API holds an event loop in this thread
    while it runs, which must not outlive the browser tests."""
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def new_page(chromium: Any) -> Iterator[Callable[[], Any]]:
    """Opens pages in fresh browser contexts; every context is closed after the test."""
    pages: list[Any] = []

    def make() -> Any:
        page = open_page(chromium)
        pages.append(page)
        return page

    yield make
    for page in pages:
        page.context.close()


@pytest.fixture
def portal(live_server: Any, fresh_tenant: Any, celery_worker: Any, settings: Settings) -> str:
    """The live portal's URL, with the demo mailbox, a worker, and a freshly seeded tenant
    (``fresh_tenant`` re-seeds it and restores faults and throttling after the test too: these
    flows change people that other tests read)."""
    settings.EMAIL_BACKEND = "mfa.mailbox.MailboxBackend"
    return str(live_server.url)
