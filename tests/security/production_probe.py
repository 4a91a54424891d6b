"""Run inside a subprocess started with production settings (PORTAL_DEMO unset): make the
database, sign a persona in, request a few pages over https and plain http, and print what the
browser would receive (status, headers, cookie flags) as JSON on stdout.

Used by tests/security/test_production_settings.py; not a test module itself. The settings come
from the environment the test gives it, exactly as in production.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import django


def _cookie_flags(response: Any) -> dict[str, dict[str, Any]]:
    return {
        name: {
            "secure": bool(morsel["secure"]),
            "httponly": bool(morsel["httponly"]),
            "samesite": morsel["samesite"],
        }
        for name, morsel in response.cookies.items()
    }


def _answer(response: Any) -> dict[str, Any]:
    return {
        "status": response.status_code,
        "headers": dict(response.headers.items()),
        "cookies": _cookie_flags(response),
    }


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
    django.setup()
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.test import Client

    from accounts.services import portal_profile_sync

    call_command("migrate", verbosity=0, interactive=False)
    host = settings.ALLOWED_HOSTS[0]
    oid = sys.argv[1]
    user, _ = get_user_model().objects.get_or_create(username=oid)
    portal_profile_sync(
        user=user, claims={"oid": oid, "name": "Ada Agent", "roles": ["Helpdesk.Agent"]}
    )
    answers: dict[str, Any] = {"settings": {"DEMO": settings.DEMO, "DEBUG": settings.DEBUG}}
    anonymous = Client(HTTP_HOST=host)
    answers["http /healthz"] = _answer(anonymous.get("/healthz"))
    answers["http /users/"] = _answer(anonymous.get("/users/"))
    answers["https /oauth2/login"] = _answer(anonymous.get("/oauth2/login", secure=True))
    agent = Client(HTTP_HOST=host)
    agent.force_login(user)
    answers["https /"] = _answer(agent.get("/", secure=True))
    answers["https /requests/"] = _answer(agent.get("/requests/", secure=True))
    print(json.dumps(answers))


if __name__ == "__main__":
    main()
