"""The bulk operations' pages (issue 14), under /bulk/."""

from __future__ import annotations

from django.urls import URLPattern

app_name = "bulk"

urlpatterns: list[URLPattern] = []
