"""The incident of the bulk operations' demo (issue 14): a phishing campaign's group.

``seed.build_tenant`` calls ``seed_phishing_groups`` once people and the other groups exist.
"""

from __future__ import annotations

from collections.abc import Callable

from entra_emulator.seed import (
    GROUP_IDS,
    PERSONAS,
    PHISHING_DIRECT_STANDARD,
    PHISHING_GROUP,
    PHISHING_NESTED_GROUP,
    PHISHING_NESTED_STANDARD,
)
from entra_emulator.tenant import Tenant


def seed_phishing_groups(
    tenant: Tenant,
    executives: set[str],
    add: Callable[[str, str, set[str]], None],
) -> None:
    """The bulk operations' demo incident: ``PHISHING_DIRECT_STANDARD`` standard people, Priya
    (privileged), one disabled person, Rita (the responder herself) and a nested group with
    ``PHISHING_NESTED_STANDARD`` more standard people: every refusal of the dry run but the
    duplicate, from one group.

    Chosen without the seed's random generator (sorted by UPN), so the rest of the tenant is the
    same with or without these groups. Standard: enabled members outside IT and Security (where the
    seed's directory roles and role-assignable groups live) who are neither personas nor heads
    of department (the protected Executives).
    """
    persona_ids = {p["id"] for p in PERSONAS.values()}
    outside = [
        user
        for user in sorted(tenant.users.values(), key=lambda u: str(u["userPrincipalName"]))
        if user["id"] not in persona_ids
        and user["id"] not in executives
        and user.get("userType") == "Member"
        and user.get("department") not in ("IT", "Security", "Executive")
    ]
    standard = [user["id"] for user in outside if user.get("accountEnabled")]
    disabled = [user["id"] for user in outside if not user.get("accountEnabled")]
    direct = set(standard[:PHISHING_DIRECT_STANDARD])
    nested = set(
        standard[PHISHING_DIRECT_STANDARD : PHISHING_DIRECT_STANDARD + PHISHING_NESTED_STANDARD]
    )
    add(PHISHING_NESTED_GROUP, "Reported the phishing mail after the first sweep", nested)
    direct |= {PERSONAS["priya.privileged"]["id"], PERSONAS["rita.responder"]["id"]}
    direct |= set(disabled[:1])
    add(
        PHISHING_GROUP,
        "Clicked the link of the December 2026 phishing campaign",
        direct | {GROUP_IDS[PHISHING_NESTED_GROUP]},
    )
