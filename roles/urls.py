"""Directory role administration (namespace ``roles``), mounted at /roles/ by portal/urls.py."""

from __future__ import annotations

from django.urls import path

from roles import views

app_name = "roles"

urlpatterns = [
    path("", views.directory_roles, name="directory_roles"),
    path("refresh/", views.roles_refresh, name="roles_refresh"),
    path("add/", views.role_add, name="role_add"),
    path("add/principals/", views.role_principals, name="role_principals"),
    path("remove/", views.role_remove, name="role_remove"),
    path("changes/<uuid:public_id>/", views.role_change_detail, name="role_change_detail"),
    path("changes/<uuid:public_id>/decide/", views.role_change_decide, name="role_change_decide"),
    path("changes/<uuid:public_id>/cancel/", views.role_change_cancel, name="role_change_cancel"),
]
