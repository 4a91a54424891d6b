"""Production settings, checked in subprocesses that load them from the environment as a real
deployment does (PORTAL_DEMO unset, a long secret, ALLOWED_HOSTS, real-looking ENTRA_* values):

- ``manage.py check --deploy`` reports no issue at all (warnings fail), and refuses a secret
  published in the repository (portal.E001) or a known demo key (at start);
- real responses carry the security headers: a CSP without ``unsafe-inline``, HSTS with
  subdomains, X-Frame-Options DENY, a Referrer-Policy, nosniff;
- the session and CSRF cookies are Secure, HttpOnly and SameSite=Lax;
- plain http is redirected to https (but /healthz and /readyz, for load balancers);
- bandit finds no high-severity issue in the portal's code.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from portal.devrun import DEMO_TENANT_ID
from tests.personas import PERSONAS

REPO = Path(__file__).resolve().parents[2]
HOST = "helpdesk.contoso.example"
PROBE = REPO / "tests" / "security" / "production_probe.py"


def production_environment(var_dir: Path, **overrides: str) -> dict[str, str]:
    """A production configuration: nothing from the test run's demo environment leaks in."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/tmp"),
        "PYTHONPATH": str(REPO),
        "DJANGO_SETTINGS_MODULE": "portal.settings",
        "PORTAL_VAR_DIR": str(var_dir),
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(64),
        "PORTAL_TAP_VAULT_KEY": secrets.token_urlsafe(48),
        "PORTAL_VERIFICATION_HMAC_KEY": secrets.token_urlsafe(48),
        "AUDIT_CHAIN_KEY": secrets.token_urlsafe(48),
        # A protected group: without one the start warns (portal.W001).
        "PORTAL_PROTECTED_GROUP_IDS": "5d0c6a8e-3b1f-4e2a-9c7d-8f6e5a4b3c21",
        "ALLOWED_HOSTS": HOST,
        "CSRF_TRUSTED_ORIGINS": f"https://{HOST}",
        # Never contacted by these checks; the probe points the login host at the emulator.
        "REDIS_URL": os.environ["REDIS_URL"],
        "ENTRA_TENANT_ID": "4a1c2e6b-0d3f-4c8a-9b7e-5f2d1a3c6e80",
        "ENTRA_CLIENT_ID": "9e3b7c1d-2a4f-4e6b-8c0d-1f5a3b7c9e2d",
        "ENTRA_CLIENT_SECRET": "Qx8~" + secrets.token_urlsafe(30),
        "EMAIL_URL": "smtp://mail.contoso.example:587",
    }
    env.update(overrides)
    return env


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=120
    )


def test_check_deploy_reports_nothing(tmp_path: Path) -> None:
    result = _run(
        ["manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        production_environment(tmp_path),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues (0 silenced)." in result.stdout


def test_check_deploy_would_catch_a_demo_setting(tmp_path: Path) -> None:
    """The check is not vacuous: the demo's plain-http cookies are reported (the demo itself
    starts only against the emulator's tenant on loopback)."""
    result = _run(
        ["manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        production_environment(
            tmp_path,
            PORTAL_DEMO="1",
            ENTRA_TENANT_ID=DEMO_TENANT_ID,
            ENTRA_LOGIN_HOST="127.0.0.1:8443",
            GRAPH_URL="https://127.0.0.1:8443",
        ),
    )
    assert result.returncode != 0
    assert "security.W012" in result.stderr and "security.W016" in result.stderr


# Published: it stands in this file, so anyone with the repository knows it.
PUBLISHED_VALUE = "published-in-the-repository-hence-no-secret-at-all-0123456789"
# The demo's DJANGO_SECRET_KEY up to eee6038.
PUBLISHED_DEMO_KEY = "demo-only-secret-key-never-use-in-production-0123456789abcdef"


@pytest.mark.parametrize("name", ["DJANGO_SECRET_KEY", "PORTAL_TAP_VAULT_KEY"])
def test_check_deploy_refuses_a_secret_published_in_the_repository(
    tmp_path: Path, name: str
) -> None:
    result = _run(
        ["manage.py", "check", "--deploy"],
        production_environment(tmp_path, **{name: PUBLISHED_VALUE}),
    )
    assert result.returncode != 0, result.stdout + result.stderr
    assert "portal.E001" in result.stderr and f"{name} is written in " in result.stderr


def test_a_known_demo_key_stops_the_start(tmp_path: Path) -> None:
    result = _run(
        ["manage.py", "check"],
        production_environment(tmp_path, DJANGO_SECRET_KEY=PUBLISHED_DEMO_KEY),
    )
    assert result.returncode != 0
    assert "ConfigError: DJANGO_SECRET_KEY is a published demo value" in result.stderr


@pytest.fixture
def probed(tmp_path: Path, emulator: Any) -> dict[str, Any]:
    """What the probe saw; the login host is the emulator (only the sign-in redirect reads
    its discovery document), everything else is production."""
    env = production_environment(
        tmp_path,
        ENTRA_LOGIN_HOST=f"127.0.0.1:{emulator.port}",
        ENTRA_CA_BUNDLE=str(emulator.ca_path),
        ENTRA_TENANT_ID=os.environ["ENTRA_TENANT_ID"],
        ENTRA_CLIENT_ID=os.environ["ENTRA_CLIENT_ID"],
        ENTRA_CLIENT_SECRET=os.environ["ENTRA_CLIENT_SECRET"],
    )
    result = _run([str(PROBE), PERSONAS.agent.oid], env)
    assert result.returncode == 0, result.stderr[-3000:]
    answers: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    assert answers["settings"] == {"DEMO": False, "DEBUG": False}
    return answers


def test_plain_http_is_sent_to_https(probed: dict[str, Any]) -> None:
    answer = probed["http /users/"]
    assert answer["status"] == 301
    assert answer["headers"]["Location"] == f"https://{HOST}/users/"
    # The load balancer's liveness probe may speak plain http (SECURE_REDIRECT_EXEMPT).
    assert probed["http /healthz"]["status"] == 200


def test_real_responses_carry_the_security_headers(probed: dict[str, Any]) -> None:
    for key in ("https /oauth2/login", "https /", "https /requests/"):
        headers = probed[key]["headers"]
        csp = headers["Content-Security-Policy"]
        assert "unsafe-inline" not in csp and "unsafe-eval" not in csp, key
        assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp, key
        assert "script-src 'self'" in csp and "style-src 'self'" in csp, key
        assert headers["Strict-Transport-Security"] == (
            "max-age=31536000; includeSubDomains; preload"
        ), key
        assert headers["X-Frame-Options"] == "DENY", key
        assert headers["Referrer-Policy"] == "same-origin", key
        assert headers["X-Content-Type-Options"] == "nosniff", key
        assert headers["Cross-Origin-Opener-Policy"] == "same-origin", key
    assert probed["https /"]["status"] == 200
    assert probed["https /oauth2/login"]["status"] == 302


def test_cookies_are_secure_and_httponly(probed: dict[str, Any]) -> None:
    session = probed["https /oauth2/login"]["cookies"]["sessionid"]
    csrf = probed["https /"]["cookies"]["csrftoken"]
    for cookie in (session, csrf):
        assert cookie == {"secure": True, "httponly": True, "samesite": "Lax"}


def test_bandit_finds_no_high_severity_issue(tmp_path: Path) -> None:
    bandit = Path(sys.executable).with_name("bandit")
    assert bandit.exists(), "bandit is a dev dependency: install requirements.lock"
    out = tmp_path / "bandit.json"
    packages = ["portal", "graph", "accounts", "mfa", "audit"]
    result = subprocess.run(
        [str(bandit), "-q", "-r", *packages, "-lll", "-f", "json", "-o", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    report = json.loads(out.read_text())
    assert report["results"] == [], json.dumps(report["results"], indent=1)[:3000]
    assert report["metrics"]["_totals"]["loc"] > 1000  # it really read the code
    assert result.returncode == 0
