"""The test run's summary of skipped browser tests (tests/plugin.py): loud, with the reason and
what to install; and under CI (``CI=true``) a run that skipped a browser test fails.

Each case runs pytest in a subprocess on a small test file, with the portal's plugin loaded and a
clean environment (its own var folder and embedded Redis, never this run's)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from portal.devrun import BASE_DIR

REASON = "/usr/bin/chromium is missing (apt-get install chromium)"
TESTS = f"""
import pytest

@pytest.mark.browser
def test_a_page():
    pytest.skip({REASON!r})

@pytest.mark.browser
def test_another_page():
    pytest.skip({REASON!r})

def test_plain():
    pass
"""
# A browser test module skipped whole at collection, as tests/browser/* are without Playwright.
NO_PLAYWRIGHT = """
import pytest

pytest.importorskip("playwright_missing_on_this_machine")

@pytest.mark.browser
def test_a_page():
    pass
"""
NOT_BROWSER = """
import pytest

def test_needs_docker():
    pytest.skip("no docker client on this machine")

def test_plain():
    pass
"""


def _run(
    tmp_path: Path, source: str, *, ci: bool, workers: int = 0, where: str = "test_pages.py"
) -> subprocess.CompletedProcess[str]:
    (tmp_path / "pytest.ini").write_text(
        "[pytest]\nmarkers =\n    browser: drives headless Chromium\n"
    )
    (tmp_path / where).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / where).write_text(textwrap.dedent(source))
    (tmp_path / "test_other.py").write_text("def test_other():\n    pass\n")
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PYTEST_", "PORTAL_", "REDIS_", "DATABASE_", "EMULATOR_"))
        and k not in {"CI", "DJANGO_SETTINGS_MODULE"}
    }
    if ci:
        env["CI"] = "true"
    argv = [
        sys.executable,
        "-m",
        "pytest",
        "-c",
        str(tmp_path / "pytest.ini"),
        "-p",
        "tests.plugin",
    ]
    argv += ["-p", "no:cacheprovider", "-p", "no:django", "-n", str(workers), str(tmp_path)]
    return subprocess.run(
        argv, cwd=BASE_DIR, env=env, capture_output=True, text=True, timeout=120, check=False
    )


def test_skipped_browser_tests_are_counted_loudly_with_the_reason(tmp_path: Path) -> None:
    done = _run(tmp_path, TESTS, ci=False)
    out = done.stdout
    assert done.returncode == 0, out + done.stderr
    assert "2 BROWSER TEST(S) SKIPPED" in out, out
    assert REASON in out and "sudo apt-get install chromium" in out
    assert "FAILS" not in out


@pytest.mark.parametrize("workers", [0, 2])
def test_under_ci_a_skipped_browser_test_fails_the_run(tmp_path: Path, workers: int) -> None:
    done = _run(tmp_path, TESTS, ci=True, workers=workers)
    out = done.stdout
    assert done.returncode == 1, out + done.stderr
    assert "2 BROWSER TEST(S) SKIPPED" in out, out
    assert "CI=true: this run FAILS because browser tests were skipped" in out


def test_under_ci_other_skips_do_not_fail_the_run(tmp_path: Path) -> None:
    done = _run(tmp_path, NOT_BROWSER, ci=True)
    out = done.stdout
    assert done.returncode == 0, out + done.stderr
    assert "1 TEST(S) SKIPPED" in out and "BROWSER TEST" not in out


def test_a_browser_module_skipped_at_collection_counts_too(tmp_path: Path) -> None:
    done = _run(tmp_path, NO_PLAYWRIGHT, ci=True, where="tests/browser/test_pages.py")
    out = done.stdout
    assert done.returncode == 1, out + done.stderr
    assert "1 BROWSER TEST(S) SKIPPED" in out and "playwright_missing_on_this_machine" in out
