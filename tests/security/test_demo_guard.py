"""The demo stays a demo (issue 10, points 4 and 5).

- ``PORTAL_DEMO=1`` starts only against the emulator's tenant on loopback;
- the TAP vault and the verification codes have keys of their own: a pass taken from Redis
  cannot be decrypted with ``DJANGO_SECRET_KEY`` (nor with the demo key published up to
  eee6038), a code's stored HMAC is not keyed with it; the demo's keys are random per var
  folder and kept there across restarts;
- ``/mailbox/`` is 404 outside the demo and shows each reader only their own mail (an Admin all);
- the demo protects the seeded Executives group, so the CEO is a privileged target; with no
  protected group the start (system check portal.W001) and the roles page warn.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import uuid
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings
from django.core.checks import run_checks
from django.test import override_settings

from entra_emulator.seed import GROUP_IDS, PROTECTED_GROUP, persona_oid
from mfa import policy, tap_vault
from mfa.mailbox import BACKEND_PATH
from mfa.models import MailboxMessage, Tier
from portal.config import generated_secret
from portal.devrun import DEMO_PROTECTED_GROUP_ID, DEMO_TENANT_ID, demo_environment
from portal.graph_client import get_graph_client
from tests import plugin
from tests.personas import PERSONAS, signed_in
from tests.test_settings import last_line, start

# The demo's DJANGO_SECRET_KEY up to eee6038, from which the TAP vault key was derived.
PUBLISHED_DEMO_KEY = "demo-only-secret-key-never-use-in-production-0123456789abcdef"
CEO = persona_oid("carla.ceo@contoso-demo.onmicrosoft.com")


def _fernet_from(secret: str) -> Fernet:
    """The vault's Fernet as eee6038 derived it (HKDF over the given secret)."""
    material = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=None, info=b"mfa-helpdesk-portal/tap-vault/v1"
    ).derive(secret.encode())
    return Fernet(base64.urlsafe_b64encode(material))


# --- the demo starts only against the emulator on this machine ----------------------------------


@pytest.mark.parametrize(
    ("name", "changes"),
    [
        ("GRAPH_URL", {"GRAPH_URL": "https://graph.microsoft.com"}),
        ("ENTRA_LOGIN_HOST", {"ENTRA_LOGIN_HOST": "login.microsoftonline.com"}),
        ("ENTRA_TENANT_ID", {"ENTRA_TENANT_ID": "11111111-2222-3333-4444-555555555555"}),
    ],
)
def test_the_demo_refuses_a_real_tenant_or_a_remote_host(
    name: str, changes: dict[str, str | None]
) -> None:
    result = start({"PORTAL_DEMO": "1", **changes})
    assert result.returncode != 0, f"the demo started with {changes}"
    assert re.match(rf"^portal\.config\.ConfigError: {name} ", last_line(result)), result.stderr
    assert "PORTAL_DEMO=1" in last_line(result)


def test_the_demo_environment_is_the_emulator_on_loopback(tmp_path: Path) -> None:
    env = demo_environment(emulator_port=8443, var_dir=tmp_path)
    assert env["ENTRA_TENANT_ID"] == DEMO_TENANT_ID
    assert env["GRAPH_URL"] == "https://127.0.0.1:8443"
    assert env["ENTRA_LOGIN_HOST"] == "127.0.0.1:8443"
    # No key of any kind: the settings generate them per var folder.
    assert not any(name.endswith(("_KEY", "_HMAC_KEY")) for name in env)


# --- keys of their own ----------------------------------------------------------------------------


def test_a_pass_in_redis_cannot_be_decrypted_with_the_django_secret_key(redis_client: Any) -> None:
    public_id = str(uuid.uuid4())
    tap_vault.tap_store(public_id=public_id, requester_id=7, pass_value="Pass-Value-42!")
    token = redis_client.get(f"portal:tap:{public_id}")
    assert token and b"Pass-Value-42!" not in token
    for secret in (str(settings.SECRET_KEY), PUBLISHED_DEMO_KEY):
        with pytest.raises(InvalidToken):
            _fernet_from(secret).decrypt(token)
    # The vault's own key does open it.
    assert b"Pass-Value-42!" in _fernet_from(settings.PORTAL_TAP_VAULT_KEY).decrypt(token)
    assert tap_vault.tap_take(public_id=public_id, requester_id=7) == "Pass-Value-42!"


def test_verification_codes_are_not_keyed_with_the_django_secret_key() -> None:
    from mfa.verification import _code_hash

    stored = _code_hash("123456", "somesalt")
    with_secret_key = hmac.new(
        str(settings.SECRET_KEY).encode(), b"mfa.verification:somesalt:123456", hashlib.sha256
    ).hexdigest()
    assert stored != f"somesalt${with_secret_key}"
    with_own_key = hmac.new(
        settings.PORTAL_VERIFICATION_HMAC_KEY.encode(),
        b"mfa.verification:somesalt:123456",
        hashlib.sha256,
    ).hexdigest()
    assert stored == f"somesalt${with_own_key}"


def test_the_demo_keys_are_random_per_var_folder_and_kept_there(tmp_path: Path) -> None:
    keys = {
        str(settings.SECRET_KEY),
        settings.PORTAL_TAP_VAULT_KEY,
        settings.PORTAL_VERIFICATION_HMAC_KEY,
    }
    assert len(keys) == 3
    secrets_dir = plugin.VAR_DIR / "secrets"
    # This run's keys live in its var folder (the plugin gives DJANGO_SECRET_KEY itself).
    assert (secrets_dir / "tap-vault-key").read_text().strip() == settings.PORTAL_TAP_VAULT_KEY
    assert (
        secrets_dir / "verification-hmac-key"
    ).read_text().strip() == settings.PORTAL_VERIFICATION_HMAC_KEY
    assert (secrets_dir / "tap-vault-key").stat().st_mode & 0o077 == 0
    # A restart reads the same value; another folder gets another one.
    first = generated_secret(tmp_path / "a" / "key")
    assert generated_secret(tmp_path / "a" / "key") == first
    assert generated_secret(tmp_path / "b" / "key") != first
    assert len(first) >= 32
    # Never a constant of the repository.
    for path in ("portal/settings.py", "portal/devrun.py", "portal/config.py", "mfa/tap_vault.py"):
        text = (Path(settings.BASE_DIR) / path).read_text()
        assert not any(key in text for key in keys), path


# --- the mailbox ---------------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_mailbox_is_404_outside_the_demo(settings: Any) -> None:
    settings.EMAIL_BACKEND = BACKEND_PATH
    assert signed_in(PERSONAS.agent).get("/mailbox/").status_code == 200
    settings.DEMO = False
    for persona in (PERSONAS.agent, PERSONAS.admin):
        assert signed_in(persona).get("/mailbox/").status_code == 404


@pytest.mark.django_db
def test_the_mailbox_shows_an_agent_only_their_own_mail(settings: Any) -> None:
    settings.EMAIL_BACKEND = BACKEND_PATH
    MailboxMessage.objects.create(
        from_email="helpdesk@localhost",
        to=["manager.of.sam@contoso-demo.onmicrosoft.com"],
        subject="Verification code for Sam Standard",
        body="Read this code to the helpdesk: 123 456",
    )
    MailboxMessage.objects.create(
        from_email="helpdesk@localhost",
        to=["someone@example.net", PERSONAS.agent.upn.upper()],
        subject="Your request finished",
        body="Done.",
    )
    agent = signed_in(PERSONAS.agent).get("/mailbox/").content.decode()
    assert "Your request finished" in agent
    assert "Verification code for Sam Standard" not in agent and "123 456" not in agent
    lead = signed_in(PERSONAS.lead).get("/mailbox/").content.decode()
    assert "Your request finished" not in lead and "123 456" not in lead
    admin = signed_in(PERSONAS.admin).get("/mailbox/").content.decode()
    assert "Your request finished" in admin and "Verification code for Sam Standard" in admin


# --- a protected group ----------------------------------------------------------------------------


def test_the_demo_protects_the_seeded_executives() -> None:
    assert DEMO_PROTECTED_GROUP_ID == GROUP_IDS[PROTECTED_GROUP]
    assert settings.PORTAL_PROTECTED_GROUP_IDS == [GROUP_IDS[PROTECTED_GROUP]]


def test_the_ceo_is_a_privileged_target_in_the_demo(emulator: Any) -> None:
    profile = policy.target_profile(get_graph_client(), CEO, use_cache=False)
    assert profile.user.job_title == "Chief Executive Officer"
    assert profile.protected_groups == (PROTECTED_GROUP,)
    assert profile.tier == Tier.PRIVILEGED


def test_no_protected_group_is_a_warning_at_start() -> None:
    ids = {m.id for m in run_checks(tags=["security"])}
    assert "portal.W001" not in ids
    with override_settings(PORTAL_PROTECTED_GROUP_IDS=[]):
        messages = [m for m in run_checks(tags=["security"]) if m.id == "portal.W001"]
    assert len(messages) == 1 and "PORTAL_PROTECTED_GROUP_IDS" in messages[0].msg


@pytest.mark.django_db
def test_the_roles_page_warns_when_no_protected_group_is_set() -> None:
    admin = signed_in(PERSONAS.admin)
    assert 'data-warning="no_protected_group"' not in admin.get("/roles/").content.decode()
    with override_settings(PORTAL_PROTECTED_GROUP_IDS=[]):
        body = admin.get("/roles/").content.decode()
    assert 'data-warning="no_protected_group"' in body
    assert "PORTAL_PROTECTED_GROUP_IDS" in body
