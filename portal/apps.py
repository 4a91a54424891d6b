"""The Django project package: settings, URLs, health checks and security headers."""

from __future__ import annotations

from django.apps import AppConfig


class PortalConfig(AppConfig):
    name = "portal"
    verbose_name = "MFA helpdesk portal"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        """Register the portal's system checks (portal/checks.py)."""
        from portal import checks  # noqa: F401
