"""Signals of directory role administration, for the apps above roles (mfa) to listen to.

roles never imports mfa: an app that keeps answers about people's directory roles connects a
receiver in its ``AppConfig.ready()``.
"""

from __future__ import annotations

from django.dispatch import Signal

# Sent (sender: ``roles.models.RoleChangeRequest``) after a role change succeeded and committed,
# with ``principal_ids``: the people whose directory roles changed, a group's members expanded.
directory_roles_changed = Signal()
