"""Reading settings from the environment, failing loudly with the variable's name."""

from __future__ import annotations

import builtins
import ipaddress
import os
import secrets
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import environ
from django.core.exceptions import ImproperlyConfigured

# Secret values that were ever published with the portal (the demo's, placeholders): whatever
# holds one of them is no secret. Refused outside the demo at start (portal/settings.py); the
# system check portal.E001 also refuses any secret that appears in the repository's files.
KNOWN_DEMO_SECRETS = frozenset(
    {
        # DJANGO_SECRET_KEY of the demo up to eee6038 (the TAP vault key was derived from it).
        "demo-only-secret-key-never-use-in-production-0123456789abcdef",
        # The emulator's registration of the portal app (portal.devrun.DEMO_CLIENT_SECRET).
        "demo-portal-secret-not-for-production",
        # Placeholders of .env.example and the Dockerfile's build step.
        "change-me",
        "build",
    }
)


class ConfigError(ImproperlyConfigured):
    """A setting is missing or malformed. The message always starts with the variable's name."""

    def __init__(self, name: str, problem: str) -> None:
        self.name = name
        super().__init__(f"{name} {problem}")


class Env:
    """Typed access to environment variables; any parse failure names the variable."""

    def __init__(self) -> None:
        self._env = environ.Env()

    def _get(self, cast: builtins.str, name: builtins.str, default: Any) -> Any:
        try:
            return getattr(self._env, cast)(name, default=default)
        except (ValueError, ImproperlyConfigured, KeyError) as exc:
            raise ConfigError(name, f"is malformed ({os.environ.get(name)!r}): {exc}") from exc

    def str(self, name: builtins.str, *, default: builtins.str) -> builtins.str:
        return str(self._get("str", name, default))

    def bool(self, name: builtins.str, *, default: builtins.bool) -> builtins.bool:
        raw = os.environ.get(name)
        if raw is not None and raw.strip().lower() not in {
            "1",
            "0",
            "true",
            "false",
            "yes",
            "no",
            "on",
            "off",
            "",
        }:
            raise ConfigError(name, f"must be a boolean (1/0, true/false), not {raw!r}")
        return bool(self._get("bool", name, default))

    def int(self, name: builtins.str, *, default: builtins.int) -> builtins.int:
        value = self._get("int", name, default)
        return int(value)

    def float(self, name: builtins.str, *, default: builtins.float) -> builtins.float:
        return float(self._get("float", name, default))

    def list(
        self, name: builtins.str, *, default: builtins.list[builtins.str]
    ) -> builtins.list[builtins.str]:
        return [item.strip() for item in self._get("list", name, default) if item.strip()]

    def db(self, name: builtins.str, *, default: builtins.str) -> dict[builtins.str, Any]:
        raw = os.environ.get(name) or default
        try:
            config: dict[str, Any] = environ.Env.db_url_config(raw)
        except (ValueError, ImproperlyConfigured, KeyError) as exc:
            raise ConfigError(name, f"is not a database URL: {exc}") from exc
        # django-environ passes an unknown scheme through as the ENGINE name; Django would then
        # fail later without naming the variable.
        if urlsplit(raw).scheme not in environ.Env.DB_SCHEMES or not config.get("ENGINE"):
            raise ConfigError(name, f"has an unknown scheme: {urlsplit(raw).scheme!r}")
        return config

    def email_url(self, name: builtins.str, *, default: builtins.str) -> dict[builtins.str, Any]:
        raw = os.environ.get(name) or default
        if not raw:
            return {}
        try:
            config: dict[str, Any] = environ.Env.email_url_config(raw)
        except (ValueError, ImproperlyConfigured, KeyError) as exc:
            raise ConfigError(name, f"is not an email URL (smtp://...): {exc}") from exc
        return config

    def url_str(self, name: builtins.str, *, default: builtins.str) -> builtins.str:
        value = self.str(name, default=default).rstrip("/")
        parts = urlsplit(value)
        if parts.scheme != "https" or not parts.netloc:
            raise ConfigError(name, f"must be an https:// URL, not {value!r}")
        return value

    def secret(self, name: builtins.str, *, default: builtins.str | None) -> builtins.str | None:
        """A secret from ``NAME`` or from the file named by ``NAME_FILE``."""
        file_name = os.environ.get(f"{name}_FILE")
        if file_name:
            path = Path(file_name)
            if not path.is_file():
                raise ConfigError(f"{name}_FILE", f"names no readable file: {file_name}")
            return path.read_text().strip()
        return os.environ.get(name, default)


def is_loopback_host(host: str) -> bool:
    """Whether ``host`` (a host name or address, with or without ``:port``, IPv6 in brackets)
    names this machine only: ``localhost`` or a loopback address."""
    value = host.strip().lower()
    if value.startswith("["):
        value = value[1:].split("]", 1)[0]
    elif value.count(":") == 1:
        value = value.split(":", 1)[0]
    if value == "localhost" or value.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(value).is_loopback
    except ValueError:
        return False


def generated_secret(path: Path) -> str:
    """The secret kept in ``path``, made (random, 64 url-safe characters, mode 0600) on first use.

    For the demo only: each var folder gets its own keys, so no key is a constant of the
    repository, and a restart (``make run`` again, or the web, worker and beat processes that
    start at the same time) reads the same value. Created with O_EXCL: when two processes race,
    one writes and both read its value.
    """
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        for _ in range(50):  # the winner of a race may not have written yet
            value = path.read_text().strip()
            if value:
                return value
            time.sleep(0.02)
        raise ConfigError("PORTAL_VAR_DIR", f"holds an empty generated secret: {path}") from None
    value = secrets.token_urlsafe(48)
    with os.fdopen(fd, "w") as handle:
        handle.write(value + "\n")
    return value
