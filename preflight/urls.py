"""The preflight's page (/preflight/), Admin only."""

from __future__ import annotations

from django.urls import path

from preflight import views

app_name = "preflight"

urlpatterns = [
    path("", views.tenant_check, name="tenant_check"),
]
