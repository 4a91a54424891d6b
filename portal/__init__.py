"""The Django project of the MFA helpdesk portal.

The Celery app is imported here so that ``@shared_task`` functions bind to it in every process
that loads Django (web, worker, beat and tests).
"""

from __future__ import annotations

from portal.celery import app as celery_app

__all__ = ["celery_app"]
