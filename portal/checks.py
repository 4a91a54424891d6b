"""The portal's own Django system checks (``manage.py check``; ``migrate`` and ``runserver`` run
them at start, so the web process of docker compose and ``make run`` print them too).

- ``portal.W001`` (warning, always): no protected group (``PORTAL_PROTECTED_GROUP_IDS`` empty),
  so executives and other sensitive people without a directory role are standard targets.
- ``portal.E001`` (error, outside the demo): a secret of the portal is a value published with it:
  one of :data:`portal.config.KNOWN_DEMO_SECRETS`, or a string found in the repository's own
  files (code, documentation, compose and example files). A published key is no key.
- ``portal.W002`` (warning, outside the demo, ``--deploy``): ``REDIS_URL`` reaches a Redis on
  another machine without a password.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from django.apps import AppConfig
from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, Warning, register

from portal.config import KNOWN_DEMO_SECRETS, is_loopback_host

# Settings that hold a secret: these by name, and any other of the portal's own (PORTAL_,
# AUDIT_, ENTRA_) whose name ends like one.
SECRET_SETTINGS = (
    "SECRET_KEY",
    "ENTRA_CLIENT_SECRET",
    "PORTAL_TAP_VAULT_KEY",
    "PORTAL_VERIFICATION_HMAC_KEY",
    "EMAIL_HOST_PASSWORD",
)
_SECRET_NAME = re.compile(r"^(PORTAL|AUDIT|ENTRA)_\w*(_SECRET|_KEY|_PASSWORD)$")
# Values shorter than this are not looked for in the files (every short word is in some file);
# the settings refuse such short keys anyway.
MIN_SCANNED_LENGTH = 8
# What of the repository is read: the files a deployment copies, not the local state.
_SCANNED_SUFFIXES = frozenset(
    {".py", ".md", ".html", ".yml", ".yaml", ".toml", ".cfg", ".ini", ".sh", ".js", ".css"}
)
_SCANNED_NAMES = frozenset({"Dockerfile", "Makefile", ".env.example", "run"})
_SKIPPED_DIRS = frozenset({"node_modules", "staticfiles", "var", "__pycache__"})
_MAX_FILE_BYTES = 2_000_000


def _named_secrets() -> Iterator[tuple[str, str]]:
    """(setting name, value) of every secret the portal holds, non-empty."""
    names = set(SECRET_SETTINGS) | {n for n in dir(settings) if _SECRET_NAME.search(n)}
    for name in sorted(names):
        value = getattr(settings, name, None)
        if isinstance(value, str) and value:
            yield ("DJANGO_SECRET_KEY" if name == "SECRET_KEY" else name), value
    for alias, database in settings.DATABASES.items():
        if database.get("PASSWORD"):
            yield f"DATABASE_URL ({alias})", str(database["PASSWORD"])
    password = unquote(urlsplit(str(settings.REDIS_URL)).password or "")
    if password:
        yield "REDIS_URL", password


def repository_files(root: Path) -> Iterator[Path]:
    """The repository's own text files under ``root``: no dot-folders (.git, .venv), no local
    state (var, staticfiles), no ``.env`` (which holds the real secrets)."""
    for path in root.iterdir():
        if path.is_dir():
            if path.name.startswith(".") or path.name in _SKIPPED_DIRS or path.is_symlink():
                continue
            yield from repository_files(path)
        elif path.suffix in _SCANNED_SUFFIXES or path.name in _SCANNED_NAMES:
            if path.name != ".env" and path.stat().st_size <= _MAX_FILE_BYTES:
                yield path


def published_secrets(secrets: Iterable[tuple[str, str]], *, root: Path) -> dict[str, str]:
    """Which of ``secrets`` are published: {setting name: where}. A value is published when it
    is a known demo value or occurs in one of the repository's files."""
    found: dict[str, str] = {}
    wanted: dict[str, str] = {}
    for name, value in secrets:
        if value in KNOWN_DEMO_SECRETS:
            found[name] = "a published demo value"
        elif len(value) >= MIN_SCANNED_LENGTH:
            wanted[name] = value
    if not wanted:
        return found
    skipped = {Path(str(settings.VAR_DIR)).resolve(), Path(str(settings.STATIC_ROOT)).resolve()}
    for path in repository_files(root):
        if any(parent in skipped for parent in path.resolve().parents):
            continue
        try:
            text = path.read_text(errors="replace")
        except OSError:
            continue
        for name, value in list(wanted.items()):
            if value in text:
                found[name] = f"written in {path.relative_to(root)}"
                del wanted[name]
        if not wanted:
            break
    return found


@register(Tags.security)
def check_no_published_secret(
    app_configs: Sequence[AppConfig] | None, **kwargs: Any
) -> list[CheckMessage]:
    """portal.E001: outside the demo, no secret may be a value published with the portal."""
    if settings.DEMO:
        return []
    root = Path(str(settings.BASE_DIR))
    return [
        Error(
            f"{name} is {where}: anyone can read it, so it protects nothing.",
            hint="Set a random secret of your own, e.g. "
            'python -c "import secrets; print(secrets.token_urlsafe(48))".',
            id="portal.E001",
        )
        for name, where in published_secrets(_named_secrets(), root=root).items()
    ]


@register(Tags.security)
def check_protected_groups(
    app_configs: Sequence[AppConfig] | None, **kwargs: Any
) -> list[CheckMessage]:
    """portal.W001: no protected group is configured."""
    if settings.PORTAL_PROTECTED_GROUP_IDS:
        return []
    return [
        Warning(
            "PORTAL_PROTECTED_GROUP_IDS is empty: no group's members count as privileged "
            "targets, so executives and other sensitive people without a directory role can "
            "be reset by any agent without approval.",
            hint="Set PORTAL_PROTECTED_GROUP_IDS to the object ids of those groups.",
            id="portal.W001",
        )
    ]


@register(Tags.security, deploy=True)
def check_redis_password(
    app_configs: Sequence[AppConfig] | None, **kwargs: Any
) -> list[CheckMessage]:
    """portal.W002: a Redis on another machine is reached without a password."""
    parts = urlsplit(str(settings.REDIS_URL))
    if settings.DEMO or parts.scheme == "unix" or parts.password:
        return []
    if is_loopback_host(parts.netloc.rsplit("@", 1)[-1]):
        return []
    return [
        Warning(
            "REDIS_URL names no password: anyone who reaches that Redis reads the task queue "
            "and the cache and can queue work for the worker.",
            hint="Give Redis a password (requirepass or an ACL user) and put it in REDIS_URL: "
            "redis://:password@host:6379/0, or rediss:// for TLS.",
            id="portal.W002",
        )
    ]
