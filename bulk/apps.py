from __future__ import annotations

from django.apps import AppConfig


class BulkConfig(AppConfig):
    name = "bulk"
    verbose_name = "Incident response: bulk operations"
    default_auto_field = "django.db.models.BigAutoField"
