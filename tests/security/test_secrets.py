"""No secret is left behind: a run of the journeys at service level (a real sign-in, a caller
verified by emailed code, a re-registration, a Temporary Access Pass issued and revealed, all with
a real Celery worker against the HTTPS emulator) leaves no pass, authorization code, access or id
token, client secret or verification code in:

- any log record of any logger, captured at DEBUG (message, arguments, exception text);
- any text or JSON column of any model, read column by column, sessions decoded;
- Redis (broker messages, cache) and Celery results (the portal stores none: outcomes live in
  the database).

tests/mfa/test_tap.py does the same for the pass alone (and also reads the SQLite files).
The demo mailbox (``MailboxMessage``) is not scanned: it stands in for the mail server, and the
code's whole purpose is to be mailed; the tests use Django's in-memory outbox instead.
"""

from __future__ import annotations

import logging
import re
from typing import Any

import pytest
from django.apps import apps
from django.conf import settings
from django.contrib.sessions.models import Session
from django.core import mail
from django.db import models

from accounts.backends import PortalAdfsBackend
from graph.token import TokenSource
from mfa import policy, services
from mfa.models import ActionKind, MailboxMessage, Status
from mfa.verification import verification_check_code, verification_send_code
from portal.celery import app as celery_app
from portal.graph_client import get_graph_client
from tests.accounts.test_accounts_sign_in_flow import Browser
from tests.mfa.action_requests import action_request_make, wait_final
from tests.personas import PERSONAS, portal_user

SAM = PERSONAS.standard_target
TEXT_FIELDS = (models.CharField, models.TextField, models.JSONField)


def _everything_logged_at_debug(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    for name in list(logging.root.manager.loggerDict):
        caplog.set_level(logging.DEBUG, logger=name)


def _logged(caplog: pytest.LogCaptureFixture) -> str:
    return (
        "\n".join(f"{r.getMessage()} {r.args!r} {r.exc_text or ''}" for r in caplog.records)
        + caplog.text
    )


def _database_columns() -> str:
    """Every text and JSON column of every model (the demo mailbox aside), and every session's
    decoded data: what a database dump would show in clear."""
    parts: list[str] = []
    for model in apps.get_models():
        if model is MailboxMessage:
            continue
        names = [f.attname for f in model._meta.concrete_fields if isinstance(f, TEXT_FIELDS)]
        if names:
            parts += [repr(row) for row in model._default_manager.values_list(*names)]
    parts += [repr(session.get_decoded()) for session in Session.objects.all()]
    return "\n".join(parts)


def _redis_everything(redis_client: Any) -> bytes:
    return b"".join(
        bytes(key) + bytes(redis_client.dump(key) or b"") for key in redis_client.keys("*")
    )


@pytest.fixture
def seen_tokens(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every credential the portal handles: at sign-in the authorization code and the person's
    access and id tokens; the app's Graph tokens (web process and worker thread)."""
    tokens: list[str] = []
    exchange = PortalAdfsBackend.exchange_auth_code
    app_token = TokenSource.token

    def spy_exchange(self: Any, authorization_code: str, request: Any) -> dict[str, Any]:
        tokens.append(authorization_code)
        response: dict[str, Any] = exchange(self, authorization_code, request)
        tokens.extend(str(response[k]) for k in ("access_token", "id_token") if response.get(k))
        return response

    def spy_token(self: Any) -> str:
        value: str = app_token(self)
        if value not in tokens:
            tokens.append(value)
        return value

    monkeypatch.setattr(PortalAdfsBackend, "exchange_auth_code", spy_exchange)
    monkeypatch.setattr(TokenSource, "token", spy_token)
    return tokens


def test_journeys_leave_no_secret_behind(
    tenant: Any,
    celery_worker: Any,
    caplog: pytest.LogCaptureFixture,
    redis_client: Any,
    seen_tokens: list[str],
) -> None:
    _everything_logged_at_debug(caplog)

    # A real sign-in: the person's tokens pass through the portal.
    browser = Browser(tenant)
    try:
        assert browser.sign_in(PERSONAS.agent.upn).status_code == 302
        assert browser.portal.get("/").status_code == 200
    finally:
        browser.close()
    agent = portal_user(PERSONAS.agent)
    client = get_graph_client()

    # Caller verification by emailed code, then a re-registration.
    profile = policy.target_profile(client, SAM.oid, use_cache=False)
    sent = verification_send_code(agent=agent, profile=profile, destination="manager")
    (message,) = [m for m in mail.outbox if "code" in m.subject.lower() or "code" in m.body]
    found = re.search(r"\b(\d{3}) ?(\d{3})\b", str(message.body))
    assert found, message.body
    code = found.group(1) + found.group(2)
    verified = verification_check_code(verification=sent, agent=agent, code=code)
    reregister = action_request_make(
        ActionKind.REREGISTER, agent=agent, profile=profile, verification=verified
    )
    assert wait_final(reregister.pk).status == Status.SUCCEEDED

    # A Temporary Access Pass, issued by the worker and revealed once.
    profile = policy.target_profile(client, SAM.oid, use_cache=False)
    tap = action_request_make(
        ActionKind.ISSUE_TAP,
        agent=agent,
        profile=profile,
        ticket="INC0012399",
        params={"lifetime_minutes": 60, "usable_once": True},
    )
    tap = wait_final(tap.pk)
    assert tap.status == Status.SUCCEEDED, (tap.error_code, tap.error_message)
    pass_value = services.tap_reveal(action_request=tap, agent=agent)
    assert pass_value and len(pass_value) >= 8

    # What must not be anywhere, and proof that each was really in play.
    assert len(seen_tokens) >= 4, "the sign-in's code and two tokens, and an app token"
    secrets = {
        "client secret": settings.ENTRA_CLIENT_SECRET,
        "verification code": code,
        "verification code (as mailed)": found.group(0),
        "temporary access pass": pass_value,
        **{f"token {i}": token for i, token in enumerate(seen_tokens)},
    }
    assert all(len(value) >= 6 for value in secrets.values())
    # The capture really ran at DEBUG, for libraries too (urllib3 logs each Graph request).
    assert any(r.name.startswith("urllib3") for r in caplog.records)

    logged = _logged(caplog)
    columns = _database_columns()
    in_redis = _redis_everything(redis_client)

    def found_in(value: str, haystack: str) -> bool:
        # A six-digit code also turns up by chance inside longer numbers, hex digests and the
        # microseconds of timestamps: look for it standing on its own.
        if value.isdigit():
            return re.search(rf"(?<![0-9A-Za-z.]){value}(?![0-9A-Za-z])", haystack) is not None
        return value in haystack

    leaks = [
        f"{name} in {where}"
        for name, value in secrets.items()
        for where, haystack in (("logs", logged), ("database", columns))
        if found_in(value, haystack)
    ] + [
        f"{name} in Redis"
        for name, value in secrets.items()
        if found_in(value, in_redis.decode("utf-8", "replace"))
    ]
    assert leaks == []

    # Celery keeps no results: outcomes are in the database only.
    assert celery_app.conf.result_backend is None and celery_app.conf.task_ignore_result
    assert redis_client.keys("celery-task-meta-*") == []


def test_credentials_are_redacted_from_any_log_record(caplog: pytest.LogCaptureFixture) -> None:
    """The filter on django-auth-adfs's logger (settings.LOGGING): its own token messages, and
    any JWT in any message, reach no handler."""
    token = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhZGEifQ.c2lnbmF0dXJlLXZhbHVl"
    logger = logging.getLogger("django_auth_adfs")
    with caplog.at_level(logging.DEBUG, logger="django_auth_adfs"):
        logger.debug("Received access token: %s", token)
        logger.debug("Received authorization code: %s", "0.AAAA-secret-code")
        logger.info("token endpoint answered %s", {"access_token": token})
    logged = _logged(caplog)
    assert token not in logged and "secret-code" not in logged
    assert logged.count("[redacted]") >= 3
