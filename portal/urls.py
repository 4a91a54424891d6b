"""The portal's URLs. Areas built by other packages are included here as they appear."""

from __future__ import annotations

from django.urls import include, path

from accounts import views as accounts_views
from portal import health, ops, views

urlpatterns = [
    path("", views.home, name="home"),
    path("oauth2/", include("accounts.urls")),
    path("", include("mfa.urls")),
    path("roles/", include("roles.urls")),
    path("", include("audit.urls")),
    path("preflight/", include("preflight.urls")),
    path("bulk/", include("bulk.urls")),
    path("ops/", ops.budget_view, name="ops_budget"),
    path("signed-out/", accounts_views.signed_out, name="signed_out"),
    path("no-role/", accounts_views.no_role, name="no_role"),
    path("favicon.ico", views.favicon, name="favicon"),
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
]
