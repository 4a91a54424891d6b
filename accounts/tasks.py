"""Celery tasks of accounts: the daily removal of expired sessions.

Django never deletes an expired session by itself: without this, every sign-in of the last years
would stay in the sessions table (``manage.py clearsessions`` does the same by hand). Beat sends
it once a day on the ``sync`` queue (``accounts-sessions-clear-expired`` in settings). Safe to
deliver twice: the second run finds nothing expired.
"""

from __future__ import annotations

import logging
from importlib import import_module

from celery import shared_task
from django.conf import settings

logger = logging.getLogger(__name__)


@shared_task(name="accounts.tasks.sessions_clear_expired", ignore_result=True)
def sessions_clear_expired() -> None:
    """Delete every session past its expiry, through the session engine's own
    ``SessionStore.clear_expired()`` (as ``clearsessions``). An engine that cannot list its
    sessions (signed cookies) needs no clean-up: logged, nothing done."""
    engine = import_module(settings.SESSION_ENGINE)
    try:
        engine.SessionStore.clear_expired()
    except NotImplementedError:
        logger.info("session engine %s cannot clear expired sessions", settings.SESSION_ENGINE)
        return
    logger.info("expired sessions cleared")
