"""The preflight app (``manage.py tenant_check`` and /preflight/)."""

from __future__ import annotations

from django.apps import AppConfig


class PreflightConfig(AppConfig):
    name = "preflight"
    verbose_name = "Tenant preflight"
