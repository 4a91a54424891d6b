"""Messages that belong inside a card, next to the field they are about, instead of at the top
of the page (where a redirect to ``#verify`` leaves them above the viewport).

A view adds such a message with ``extra_tags=card_tag(slot)``; the card's template shows it with
``{% for note in messages|card_notices:"<slot>" %}``; base.html leaves every ``in-card`` message
to its card.
"""

from __future__ import annotations

from collections.abc import Iterable

from django import template
from django.contrib.messages.storage.base import Message

register = template.Library()

IN_CARD = "in-card"


def card_tag(slot: str) -> str:
    """The ``extra_tags`` of a message for the card slot ``slot`` (e.g. ``verify-code``)."""
    return f"{IN_CARD} {slot}"


@register.filter
def card_notices(messages: Iterable[Message] | None, slot: str) -> list[Message]:
    """The messages of this request meant for ``slot`` (reading them marks them shown)."""
    return [m for m in messages or () if slot in (m.extra_tags or "").split()]


@register.filter
def has_card_notices(messages: Iterable[Message] | None, prefix: str) -> bool:
    """Whether any message of this request is for a slot starting with ``prefix``."""
    return any(
        tag.startswith(prefix) for m in messages or () for tag in (m.extra_tags or "").split()
    )


@register.filter
def top_notices(messages: Iterable[Message] | None) -> list[Message]:
    """The messages of this request that no card shows: base.html's list at the top."""
    return [m for m in messages or () if IN_CARD not in (m.extra_tags or "").split()]
