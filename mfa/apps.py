from __future__ import annotations

from django.apps import AppConfig


class MfaConfig(AppConfig):
    name = "mfa"
    verbose_name = "MFA helpdesk actions"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from mfa import audit_sources  # noqa: F401  (registers action requests with audit.sources)

        # A change of someone's directory roles (roles) drops their cached profile.
        from mfa.receivers import forget_profiles_after_role_change
        from roles.signals import directory_roles_changed

        directory_roles_changed.connect(
            forget_profiles_after_role_change, dispatch_uid="mfa.forget_profiles_after_role_change"
        )
