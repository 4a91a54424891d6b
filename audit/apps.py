"""The portal's own event log."""

from __future__ import annotations

from django.apps import AppConfig


class AuditConfig(AppConfig):
    name = "audit"
    verbose_name = "Audit"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        """Record what accounts announces by signal (sign-in, refusal, sign-out)."""
        from audit import receivers

        receivers.connect()
