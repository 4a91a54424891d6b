"""What the tenant's Microsoft Entra ID licence (``Tenant.licence``: free, p1, p2) refuses.

Privileged Identity Management needs Microsoft Entra ID P2 (or ID Governance): "To use
Privileged Identity Management, you must have a Microsoft Entra ID P2 or Microsoft Entra ID
Governance license", and only then can one "create eligible or time-bound assignments for
Microsoft Entra roles" and "make calls to PIM using the Microsoft Entra roles API"
(https://learn.microsoft.com/entra/id-governance/privileged-identity-management/pim-getting-started,
https://learn.microsoft.com/entra/id-governance/licensing-fundamentals).
The PIM for Microsoft Entra roles APIs are the ``roleEligibilitySchedule*`` and
``roleAssignmentSchedule*`` collections under ``/roleManagement/directory`` (schedules, schedule
instances and schedule requests; also ``filterByCurrentUser``), and the role management policies
(https://learn.microsoft.com/graph/api/resources/privilegedidentitymanagementv3-overview). In a
free or P1 tenant every one of them is refused, whatever the method, in v1.0 and beta alike.

The refusal: docs silent on the status and error code (the API reference pages name the licence
requirement only). The emulator answers what is publicly reported from real tenants without P2:
``400 AadPremiumLicenseRequired`` "The tenant needs to have Microsoft Entra ID P2 or Microsoft
Entra ID Governance license." Plain role assignments (``/roleAssignments``,
``/roleDefinitions``) stay available in every licence, as in Entra.

Audit log retention by licence is served by ``audit_api`` (7 days free, 30 days P1/P2).

``graph_core`` calls :func:`licence_refusal` for every request once the route and the token's
permissions are known; this module imports nothing of the pipeline (no import cycle).
"""

from __future__ import annotations

import re

PIM_LICENCES = frozenset({"p2"})

# The PIM for Microsoft Entra roles surface (see the overview page above): role eligibility and
# (PIM) role assignment schedules, their instances and requests, and the PIM policies.
_PIM_PATH = re.compile(
    r"/roleManagement/directory/"
    r"role(?:Eligibility|Assignment)Schedule(?:s|Instances|Requests)(?:[/(].*)?"
    r"|/policies/roleManagementPolic(?:ies|yAssignments)(?:[/(].*)?",
    re.IGNORECASE,
)

PIM_REFUSAL_STATUS = 400
PIM_REFUSAL_CODE = "AadPremiumLicenseRequired"
PIM_REFUSAL_MESSAGE = (
    "The tenant needs to have Microsoft Entra ID P2 or Microsoft Entra ID Governance license."
)


def is_pim_path(path: str) -> bool:
    """Whether ``path`` (below the version segment, e.g. ``/roleManagement/directory/...``) is
    one of PIM's APIs."""
    return _PIM_PATH.fullmatch(path) is not None


def licence_refusal(licence: str, path: str) -> tuple[int, str, str] | None:
    """(status, code, message) with which a tenant holding ``licence`` refuses a request for
    ``path`` (below the version segment), or None when the licence allows it."""
    if licence not in PIM_LICENCES and is_pim_path(path):
        return PIM_REFUSAL_STATUS, PIM_REFUSAL_CODE, PIM_REFUSAL_MESSAGE
    return None
