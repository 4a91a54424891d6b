"""Sign-in through Entra ID (django-auth-adfs) and the portal roles."""

from __future__ import annotations

from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "accounts"
    verbose_name = "Accounts and portal roles"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        """The sign-in library's session never reads the environment.

        requests lets ``REQUESTS_CA_BUNDLE`` / ``CURL_CA_BUNDLE`` override a session's
        ``verify`` while ``trust_env`` is on, so django-auth-adfs's ``CA_BUNDLE`` would be
        ignored on machines that set them. CA trust is ``ENTRA_CA_BUNDLE`` (or the built-in
        CAs) and the proxy comes from ``AUTH_ADFS["PROXIES"]`` (accounts.adfs.sign_in_proxies),
        the same egress rules as the Graph client.
        """
        from django_auth_adfs.config import provider_config

        provider_config.session.trust_env = False
