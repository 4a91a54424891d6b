"""Who may read which part of the audit trail: every rule of audit's views, in one place.

- Leads and Admins read everything: the whole history, the exports, the dashboard.
- Agents read the history of their own requests (every portal event of a request they made,
  every event they did themselves, and the Entra records linked to their requests), and the
  history of a person they open: the per-person timeline on the person page, or ``/audit/``
  filtered on that person. An agent may open any person in the directory (mfa's rule for the
  person page), so the person's timeline follows the same rule; what an agent cannot do is browse
  other agents' work across people.
- A signed-in person with no portal role gets the "no portal role" page (403), anonymous people
  are sent to sign in (``accounts.roles.role_required``).

Views turn a user into a ``HistoryScope`` with ``history_scope_for``; ``audit.selectors`` applies
it to every query, so a template never decides access.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# Who may open /audit/ and the per-person timeline, and who reads everyone's history and the
# dashboard: declared once, in accounts.roles, and named here for audit's views.
from accounts.roles import HISTORY_ROLES as HISTORY_ROLES
from accounts.roles import OVERSIGHT_ROLES as OVERSIGHT_ROLES
from accounts.roles import has_role


@dataclass(frozen=True)
class HistoryScope:
    """What one viewer may read.

    ``everything``: no restriction (Leads and Admins). Otherwise the rows of the requests made by
    Django user ``user_id``, the portal events whose actor is that user, and, when
    ``target_id`` is set (the viewer opened that person), every row about that person.
    """

    everything: bool
    user_id: int | None = None
    target_id: str = ""


def can_see_everything(user: Any) -> bool:
    """Leads and Admins read the whole team's history."""
    return has_role(user, *OVERSIGHT_ROLES)


def history_scope_for(user: Any, *, opened_target_id: str = "") -> HistoryScope:
    """The scope of ``user`` on a history page; ``opened_target_id`` is the person the page is
    about (the person timeline, or ``/audit/?target=``), which an agent may read in full."""
    if can_see_everything(user):
        return HistoryScope(everything=True)
    return HistoryScope(everything=False, user_id=user.pk, target_id=opened_target_id)
