"""Role changes in tests: waiting for a change to end, for a read of the holders, and for the
/roles/ page to show them (the role-change side of tests/mfa/action_requests.py).

Named people come from tests/personas.py; waiting is tests/waiting.py's ``wait_for``.
"""

from __future__ import annotations

from typing import Any

from django.urls import reverse

from outbox.states import FINAL_STATUSES
from roles.holders import RoleHolders
from roles.models import RoleChangeRequest, RoleHolderSnapshot
from tests.waiting import wait_for


def wait_final(row: RoleChangeRequest, *, timeout: float = 60.0) -> RoleChangeRequest:
    """``row`` refreshed once it is in a final state; fails the test, naming its status and
    steps, after ``timeout`` seconds."""

    def final() -> bool:
        row.refresh_from_db()
        return row.status in FINAL_STATUSES

    try:
        wait_for(final, timeout=timeout, interval=0.2, what="the role change to finish")
    except AssertionError:
        raise AssertionError(f"role change still {row.status}: {row.steps}") from None
    return row


def wait_snapshot(snapshot: RoleHolderSnapshot, *, timeout: float = 60.0) -> RoleHolders:
    """The holders ``snapshot`` read, once it is done; fails at once when the read failed."""

    def done() -> bool:
        snapshot.refresh_from_db()
        assert snapshot.state != RoleHolderSnapshot.State.FAILED, snapshot.error_message
        return snapshot.state == RoleHolderSnapshot.State.DONE

    wait_for(done, timeout=timeout, interval=0.2, what="the holders to be read")
    return RoleHolders.from_json(snapshot.holders)


def holders_page(client: Any, *, needle: str = "", timeout: float = 60.0) -> str:
    """The /roles/ page as ``client`` sees it once a read of the holders is shown and none is
    under way (and ``needle`` is in it). While no read is running and ``needle`` is missing, it
    asks for one, as the Refresh button does."""

    def shown() -> str:
        body: str = client.get(reverse("roles:directory_roles")).content.decode()
        if "data-refresh=" in body:
            return ""  # a read is under way
        if "data-snapshot-at" in body and needle in body:
            return body
        if needle:
            client.post(reverse("roles:roles_refresh"))
        return ""

    return wait_for(shown, timeout=timeout, interval=0.3, what=f"the holders page with {needle!r}")
