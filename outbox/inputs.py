"""The free-text input every flow asks for: a reason (or justification) and a ticket reference."""

from __future__ import annotations

import re

from django.conf import settings

from outbox.errors import InvalidRequest

REASON_MIN_LENGTH = 10
REASON_MAX_LENGTH = 2000
IDEMPOTENCY_KEY_MAX_LENGTH = 64
DECISION_COMMENT_MAX_LENGTH = 2000


def clean_reason(reason: str) -> str:
    """The reason, stripped; raises InvalidRequest when it is too short or too long."""
    text = (reason or "").strip()
    if len(text) < REASON_MIN_LENGTH:
        raise InvalidRequest(
            f"Give a reason of at least {REASON_MIN_LENGTH} characters: what the caller asked for "
            "and why."
        )
    if len(text) > REASON_MAX_LENGTH:
        raise InvalidRequest(f"The reason is longer than {REASON_MAX_LENGTH} characters.")
    return text


def clean_ticket(ticket: str) -> str:
    """The ticket reference, stripped and upper-cased; raises InvalidRequest unless it matches
    ``PORTAL_TICKET_PATTERN`` in full."""
    text = (ticket or "").strip().upper()
    if len(text) > 64 or not re.fullmatch(settings.PORTAL_TICKET_PATTERN, text, re.IGNORECASE):
        raise InvalidRequest(f"The ticket reference must look like {settings.PORTAL_TICKET_HINT}.")
    return text


def clean_idempotency_key(key: str) -> str:
    """The form's submission token, stripped; raises InvalidRequest when missing or too long."""
    text = (key or "").strip()
    if not text or len(text) > IDEMPOTENCY_KEY_MAX_LENGTH:
        raise InvalidRequest("The form is missing its submission token. Reload the page.")
    return text
