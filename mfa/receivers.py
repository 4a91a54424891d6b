"""mfa's receivers of other apps' signals, connected in ``MfaConfig.ready()``."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from mfa.policy import target_profile_forget


def forget_profiles_after_role_change(
    sender: Any, *, principal_ids: Iterable[str] = (), **kwargs: Any
) -> None:
    """``roles.signals.directory_roles_changed``: drop the cached profile of every person whose
    directory roles changed, so their person page and the tier of the next request read Graph
    again."""
    for principal_id in principal_ids:
        target_profile_forget(principal_id)
