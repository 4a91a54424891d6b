"""Sign-in URLs, under the namespace ``django_auth_adfs``.

The library builds its redirect URI with ``reverse("django_auth_adfs:callback")`` and
``LOGIN_URL`` names ``django_auth_adfs:login``, so the wrapped views keep those names. The
library's own URLconf is deliberately not included: its views skip the state check.
"""

from __future__ import annotations

from django.urls import path

from accounts import views

app_name = "django_auth_adfs"

urlpatterns = [
    path("login", views.login, name="login"),
    path("callback", views.callback, name="callback"),
    path("logout", views.logout, name="logout"),
]
