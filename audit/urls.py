"""The audit URLs (namespace ``audit``), mounted at the site root by portal/urls.py."""

from __future__ import annotations

from django.urls import path

from audit import views

app_name = "audit"

urlpatterns = [
    path("audit/", views.history, name="history"),
    path("audit/export.<slug:fmt>", views.history_export, name="export"),
    # Entra object ids are lower-case GUIDs: Django's uuid converter matches exactly those.
    path("audit/person/<uuid:oid>/", views.person_timeline, name="person"),
    path("dashboard/", views.dashboard, name="dashboard"),
]
