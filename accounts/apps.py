"""Sign-in through Entra ID (django-auth-adfs) and the portal roles."""

from __future__ import annotations

from django.apps import AppConfig
from django.conf import settings


class AccountsConfig(AppConfig):
    name = "accounts"
    verbose_name = "Accounts and portal roles"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        """Make an explicit ``ENTRA_CA_BUNDLE`` win over the environment's CA bundle.

        requests lets ``REQUESTS_CA_BUNDLE`` / ``CURL_CA_BUNDLE`` override a session's
        ``verify`` while ``trust_env`` is on, so django-auth-adfs's ``CA_BUNDLE`` would be
        ignored on machines that set them. With ``ENTRA_CA_BUNDLE`` set, the library's session
        stops reading the environment (proxies then come only from ``AUTH_ADFS["PROXIES"]``).
        """
        if settings.ENTRA_CA_BUNDLE:
            from django_auth_adfs.config import provider_config

            provider_config.session.trust_env = False
