"""Sign-in through Entra ID (django-auth-adfs) and the portal roles."""

from __future__ import annotations

from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "accounts"
    verbose_name = "Accounts and portal roles"
    default_auto_field = "django.db.models.BigAutoField"
