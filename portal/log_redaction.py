"""Keeping credentials out of the logs, whatever the log level.

django-auth-adfs logs the authorization code and the person's access token at DEBUG, and any
library may put a token in a message. ``RedactCredentials`` is attached (settings.LOGGING) to
the loggers of the libraries that handle credentials; it rewrites a record before any handler
sees it, so running at DEBUG to chase a problem never writes a usable credential anywhere.
"""

from __future__ import annotations

import logging
import re

REDACTED = "[redacted]"

# A JWT: three base64url parts, the first two JSON objects ("eyJ" is '{"' encoded).
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]{4,}\.eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*")

# Messages whose arguments are credentials, by their template (django_auth_adfs/backend.py).
SECRET_TEMPLATES = frozenset(
    {
        "Received authorization code: %s",
        "Received access token: %s",
        "Received OBO access token: %s",
    }
)


class RedactCredentials(logging.Filter):
    """Replaces the arguments of known credential messages, and any JWT in any message, with
    ``[redacted]``. Never drops a record: that something happened stays visible."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str) and record.msg in SECRET_TEMPLATES:
            record.args = (REDACTED,) * record.msg.count("%s")
            return True
        message = record.getMessage()
        if _JWT.search(message):
            record.msg = _JWT.sub(REDACTED, message)
            record.args = None
        return True
