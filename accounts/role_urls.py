"""Directory role administration (namespace ``accounts``), mounted at /roles/ by portal/urls.py."""

from __future__ import annotations

from django.urls import path

from accounts import role_views

app_name = "accounts"

urlpatterns = [
    path("", role_views.directory_roles, name="directory_roles"),
    path("refresh/", role_views.roles_refresh, name="roles_refresh"),
    path("add/", role_views.role_add, name="role_add"),
    path("add/principals/", role_views.role_principals, name="role_principals"),
    path("remove/", role_views.role_remove, name="role_remove"),
    path("changes/<uuid:public_id>/", role_views.role_change_detail, name="role_change_detail"),
    path(
        "changes/<uuid:public_id>/decide/", role_views.role_change_decide, name="role_change_decide"
    ),
    path(
        "changes/<uuid:public_id>/cancel/", role_views.role_change_cancel, name="role_change_cancel"
    ),
]
