from __future__ import annotations

from django.apps import AppConfig


class MfaConfig(AppConfig):
    name = "mfa"
    verbose_name = "MFA helpdesk actions"
    default_auto_field = "django.db.models.BigAutoField"
