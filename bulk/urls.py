"""The bulk operations' pages (issue 14), under /bulk/."""

from __future__ import annotations

from django.urls import URLPattern, path

from bulk import views

app_name = "bulk"

urlpatterns: list[URLPattern] = [
    path("", views.operation_list, name="operation_list"),
    path("new/", views.operation_new, name="operation_new"),
    path("new/groups/", views.group_choices, name="group_choices"),
    path("<uuid:public_id>/", views.operation_detail, name="operation_detail"),
    path("<uuid:public_id>/confirm/", views.operation_confirm, name="operation_confirm"),
    path("<uuid:public_id>/people/", views.operation_people, name="operation_people"),
    path("<uuid:public_id>/decide/", views.operation_decide, name="operation_decide"),
    path("<uuid:public_id>/pause/", views.operation_pause, name="operation_pause"),
    path("<uuid:public_id>/resume/", views.operation_resume, name="operation_resume"),
    path("<uuid:public_id>/cancel/", views.operation_cancel, name="operation_cancel"),
    path("<uuid:public_id>/retry/", views.operation_retry, name="operation_retry"),
    path("<uuid:public_id>/export.csv", views.operation_export, name="operation_export"),
]
