"""The Temporary Access Pass: issued within the tenant policy, kept encrypted in Redis for its
requester only, shown once, and never written anywhere else (logs, database, Celery, email)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from django.apps import apps
from django.conf import settings
from django.core import mail
from django.db import connection

from audit.models import PortalEvent
from graph import methods as graph_methods
from mfa import services, tap_vault
from mfa.models import ActionKind, ActionRequest, Status
from mfa.policy import NotAllowed
from portal.graph_client import get_graph_client
from tests.mfa.action_requests import action_request_make, target_profile, wait_final
from tests.personas import PERSONAS, portal_user

SAM = PERSONAS.standard_target


# --- the vault on its own ------------------------------------------------------------------------


def test_vault_gives_the_pass_once_to_its_requester(redis_client: Any, settings: Any) -> None:
    public_id = "0b5f3c52-95a4-4b0e-9a55-3f1c6f1de0a1"
    tap_vault.tap_store(public_id=public_id, requester_id=7, pass_value="Pass-Value-42!")
    (key,) = redis_client.keys("portal:tap:*")
    stored = redis_client.get(key)
    assert b"Pass-Value-42!" not in stored  # encrypted at rest
    ttl = redis_client.ttl(key)
    assert 0 < ttl <= settings.PORTAL_TAP_REVEAL_TTL_SECONDS
    assert tap_vault.tap_available(public_id=public_id)

    assert tap_vault.tap_take(public_id=public_id, requester_id=7) == "Pass-Value-42!"
    assert tap_vault.tap_take(public_id=public_id, requester_id=7) is None
    assert redis_client.keys("portal:tap:*") == []


def test_vault_refuses_another_person_and_wipes_the_entry(redis_client: Any) -> None:
    public_id = "1c6f1de0-95a4-4b0e-9a55-0b5f3c523f1c"
    tap_vault.tap_store(public_id=public_id, requester_id=7, pass_value="Pass-Value-42!")
    with pytest.raises(tap_vault.TapVaultError):
        tap_vault.tap_take(public_id=public_id, requester_id=8)
    assert tap_vault.tap_take(public_id=public_id, requester_id=7) is None


def test_vault_entry_cannot_be_moved_to_another_request(redis_client: Any) -> None:
    first = "2d7a2ef1-95a4-4b0e-9a55-0b5f3c523f1c"
    second = "3e8b3f02-95a4-4b0e-9a55-0b5f3c523f1c"
    tap_vault.tap_store(public_id=first, requester_id=7, pass_value="Pass-Value-42!")
    redis_client.rename(f"portal:tap:{first}", f"portal:tap:{second}")
    with pytest.raises(tap_vault.TapVaultError):
        tap_vault.tap_take(public_id=second, requester_id=7)


def test_vault_rejects_a_tampered_entry(redis_client: Any) -> None:
    public_id = "4f9c4013-95a4-4b0e-9a55-0b5f3c523f1c"
    tap_vault.tap_store(public_id=public_id, requester_id=7, pass_value="Pass-Value-42!")
    key = f"portal:tap:{public_id}"
    token = bytearray(redis_client.get(key))
    token[40] ^= 1
    redis_client.set(key, bytes(token))
    with pytest.raises(tap_vault.TapVaultError, match="decrypted"):
        tap_vault.tap_take(public_id=public_id, requester_id=7)


# --- the whole flow, and where the pass must not be ------------------------------------------


def _everything_logged_at_debug(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    for name in list(logging.root.manager.loggerDict):
        caplog.set_level(logging.DEBUG, logger=name)


def _database_text() -> str:
    """Every row of every model, as text."""
    parts: list[str] = []
    for model in apps.get_models():
        for values in model._default_manager.all().values():
            parts.append(repr(values))
    return "\n".join(parts)


def _database_bytes() -> bytes:
    """The SQLite files as stored, WAL included; on PostgreSQL the rows (above) are what a
    dump would show, and its files are not ours to read."""
    if connection.vendor != "sqlite":
        return b""
    name = Path(settings.DATABASES["default"]["TEST"]["NAME"])
    return b"".join(
        path.read_bytes() for path in name.parent.glob(name.name + "*") if path.is_file()
    )


def test_full_tap_flow_never_leaks_the_pass(
    tenant: Any,
    celery_worker: Any,
    caplog: pytest.LogCaptureFixture,
    redis_client: Any,
) -> None:
    _everything_logged_at_debug(caplog)
    agent = portal_user(PERSONAS.agent)
    colleague = portal_user(PERSONAS.privileged_agent)
    profile = target_profile()
    row = action_request_make(
        ActionKind.ISSUE_TAP,
        agent=agent,
        profile=profile,
        params={"lifetime_minutes": 60, "usable_once": True},
    )
    row = wait_final(row.pk)
    assert row.status == Status.SUCCEEDED, (row.error_code, row.error_message)
    assert row.result["lifetime_minutes"] == 60 and row.result["usable_once"] is True
    methods = graph_methods.list_methods(get_graph_client(), SAM.oid)
    assert row.result["tap_id"] in {m.id for m in methods}

    # Before anyone reads it, the pass is in Redis only, encrypted.
    redis_dump = b"".join(bytes(redis_client.dump(key) or b"") for key in redis_client.keys("*"))
    with pytest.raises(NotAllowed):
        services.tap_reveal(action_request=row, agent=colleague)
    pass_value = services.tap_reveal(action_request=row, agent=agent)
    assert pass_value and len(pass_value) >= 8
    assert services.tap_reveal(action_request=row, agent=agent) is None
    assert redis_client.keys("portal:tap:*") == []

    kinds = set(PortalEvent.objects.filter(request=row.pk).values_list("kind", flat=True))
    assert {PortalEvent.Kind.TAP_REVEALED, PortalEvent.Kind.TAP_REVEAL_REFUSED} <= kinds

    # Nowhere else: not in a log record (message or arguments), not in the database (rows and
    # the SQLite files), not in Redis (broker messages included), not in an email.
    # The capture really runs at DEBUG for libraries too (urllib3 logs each Graph request).
    assert any(r.name.startswith("urllib3") for r in caplog.records)
    logged = (
        "\n".join(f"{r.getMessage()} {r.args!r} {r.exc_text or ''}" for r in caplog.records)
        + caplog.text
    )
    assert pass_value not in logged
    assert pass_value not in _database_text()
    assert pass_value.encode() not in _database_bytes()
    assert pass_value.encode() not in redis_dump
    assert mail.outbox, "the target must have been told a pass was issued"
    for message in mail.outbox:
        assert pass_value not in message.body and pass_value not in message.subject
    notice = next(m for m in mail.outbox if profile.user.mail in m.to)
    assert "Temporary Access Pass was issued" in notice.body
    assert ActionRequest.objects.get(pk=row.pk).result.get("tap_id")
