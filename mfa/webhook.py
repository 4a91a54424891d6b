"""The optional post to the team's channel when something starts waiting for an approver.

``PORTAL_NOTIFY_WEBHOOK_URL`` is an incoming webhook: a Teams Workflows "when a webhook request
is received" URL (an Adaptive Card in a ``message``) or a Slack incoming webhook (``text``). The
format follows ``PORTAL_NOTIFY_WEBHOOK_FORMAT`` (``auto``: Slack for ``hooks.slack.com``, Teams
otherwise). :func:`payload` builds the JSON body from a :class:`Notice`, which holds only what an
approver needs to find the request (what, for whom, who asked, ticket, expiry, link): never a
reason, a code, a pass or any other secret. ``mfa.tasks.waiting_webhook_post`` sends it and
retries on failure.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings

from graph.client import http_session

TIMEOUT_SECONDS = 10


@dataclass(frozen=True)
class Notice:
    """What one "waits for you" notice says (the email and the webhook share it)."""

    heading: str  # "Approval waiting: Revoke sign-in sessions for Priya Privileged"
    what: str  # "Revoke sign-in sessions", "Privileged Role Administrator (add)"
    person: str  # "Priya Privileged (priya.privileged@contoso.example)"
    asked_by: str
    ticket: str
    expires: str  # "3 Dec 2026, 14:05"
    who_acts: str  # "a Lead or an Admin", "a second Admin", "a PAA holder"
    url: str

    def as_dict(self) -> dict[str, str]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Notice:
        return cls(**{key: str(data.get(key, "")) for key in cls.__dataclass_fields__})


class WebhookFailed(Exception):
    """The webhook did not accept the post (``reason``: status code or network error name)."""

    def __init__(self, reason: str, *, retryable: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retryable = retryable


def webhook_format(url: str) -> str:
    """``slack`` or ``teams`` for ``url`` under PORTAL_NOTIFY_WEBHOOK_FORMAT."""
    chosen = str(settings.PORTAL_NOTIFY_WEBHOOK_FORMAT)
    if chosen in ("slack", "teams"):
        return chosen
    host = (urlsplit(url).hostname or "").lower()
    return "slack" if host == "hooks.slack.com" or host.endswith(".slack.com") else "teams"


def _facts(notice: Notice) -> list[tuple[str, str]]:
    facts = [
        ("What", notice.what),
        ("For", notice.person),
        ("Asked by", notice.asked_by),
        ("Ticket", notice.ticket),
        ("Expires", notice.expires),
        ("Who can act", notice.who_acts),
    ]
    return [(label, value) for label, value in facts if value]


def payload(notice: Notice, *, fmt: str) -> dict[str, Any]:
    """The JSON body for ``fmt`` (``slack`` or ``teams``)."""
    if fmt == "slack":
        lines = [f"*{notice.heading}*"] + [f"{label}: {value}" for label, value in _facts(notice)]
        if notice.url.startswith(("https://", "http://")):
            lines.append(f"<{notice.url}|Open it in the portal>")
        return {"text": "\n".join(lines)}
    card: dict[str, Any] = {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "body": [
            {"type": "TextBlock", "text": notice.heading, "weight": "Bolder", "wrap": True},
            {
                "type": "FactSet",
                "facts": [{"title": label, "value": value} for label, value in _facts(notice)],
            },
        ],
    }
    if notice.url.startswith(("https://", "http://")):
        card["actions"] = [
            {"type": "Action.OpenUrl", "title": "Open in the portal", "url": notice.url}
        ]
    return {
        "type": "message",
        "attachments": [
            {
                "contentType": "application/vnd.microsoft.card.adaptive",
                "contentUrl": None,
                "content": card,
            }
        ],
    }


def post(notice: Notice) -> int:
    """Post ``notice`` to PORTAL_NOTIFY_WEBHOOK_URL; returns the HTTP status (2xx).

    Raises WebhookFailed: retryable for a network error, 408, 429 and 5xx; not for other 4xx
    (a wrong URL or a refused body: retrying changes nothing)."""
    url = str(settings.PORTAL_NOTIFY_WEBHOOK_URL)
    # The portal's egress rules, as for Graph: no environment (trust_env off), the configured
    # proxy unless NO_PROXY names the host; the public CAs (a webhook host is not Entra's).
    session = http_session(
        True,
        TIMEOUT_SECONDS,
        https_proxy=settings.ENTRA_HTTPS_PROXY,
        no_proxy=settings.ENTRA_NO_PROXY,
    )
    try:
        with session:
            response = session.post(
                url,
                json=payload(notice, fmt=webhook_format(url)),
                timeout=TIMEOUT_SECONDS,
                allow_redirects=False,
            )
    except OSError as exc:  # requests' RequestException is an OSError (connection, timeout, TLS)
        raise WebhookFailed(type(exc).__name__, retryable=True) from None
    if 200 <= response.status_code < 300:
        return response.status_code
    retryable = response.status_code in (408, 429) or response.status_code >= 500
    raise WebhookFailed(f"HTTP {response.status_code}", retryable=retryable)
