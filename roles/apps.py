"""Directory role administration: who holds PAA and its neighbours, and changing that."""

from __future__ import annotations

from django.apps import AppConfig


class RolesConfig(AppConfig):
    name = "roles"
    verbose_name = "Directory role administration"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Registers role changes with audit.sources (audit imports no roles module).
        from roles import audit_sources  # noqa: F401
