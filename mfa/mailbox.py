"""The demo's mailbox: an email backend that keeps every message in the database.

``settings.EMAIL_BACKEND`` names :class:`MailboxBackend` when the demo runs without ``EMAIL_URL``,
so the caller-verification code and the completion notices can be read at ``/mailbox/`` without
a mail server. In production ``EMAIL_URL`` selects Django's SMTP backend and this module is idle.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from django.conf import settings
from django.core.mail import EmailMessage
from django.core.mail.backends.base import BaseEmailBackend

from mfa.models import MailboxMessage

BACKEND_PATH = "mfa.mailbox.MailboxBackend"


def mailbox_active() -> bool:
    """True when outgoing mail lands in the local mailbox, so ``/mailbox/`` exists: in the demo
    only (``PORTAL_DEMO``), whatever ``EMAIL_BACKEND`` says."""
    return bool(settings.DEMO and settings.EMAIL_BACKEND == BACKEND_PATH)


def messages_for(addresses: Iterable[str], *, everyone: bool, limit: int) -> list[MailboxMessage]:
    """The newest ``limit`` messages sent to one of ``addresses`` (to, cc or bcc; compared without
    case), or to anyone when ``everyone`` (an Admin reads the whole mailbox).

    Filtered here rather than in SQL: ``to`` is a JSON list, which SQLite cannot search, and the
    demo's mailbox is small.
    """
    wanted = {a.strip().lower() for a in addresses if a and a.strip()}
    found: list[MailboxMessage] = []
    for message in MailboxMessage.objects.order_by("-created_at", "-pk").iterator():
        if everyone or wanted & {str(a).strip().lower() for a in (message.to or [])}:
            found.append(message)
            if len(found) >= limit:
                break
    return found


class MailboxBackend(BaseEmailBackend):
    """Stores each message as a :class:`~mfa.models.MailboxMessage` row.

    Every recipient (to, cc and bcc) is kept in ``to``. The plain-text body is stored; HTML
    alternatives are not (the portal sends plain text). Returns the number of messages stored.
    Runs in the caller's transaction: a message sent inside ``transaction.atomic`` disappears
    with a rollback, exactly as a code that was never recorded should never have been sent.
    """

    def send_messages(self, email_messages: Sequence[EmailMessage]) -> int:
        stored = 0
        for message in email_messages:
            recipients = [str(address) for address in message.recipients()]
            if not recipients:
                continue
            try:
                MailboxMessage.objects.create(
                    from_email=str(message.from_email or settings.DEFAULT_FROM_EMAIL),
                    to=recipients,
                    subject=str(message.subject)[:998],
                    body=str(message.body),
                )
            except Exception:
                if not self.fail_silently:
                    raise
                continue
            stored += 1
        return stored
