"""Audit events record the client's address, not the proxy's (issue 10, point 13).

``X-Forwarded-For`` is believed only from a trusted proxy (``PORTAL_TRUSTED_PROXIES``, loopback by
default) and read right to left, skipping trusted hops: what a client writes into the header
itself never becomes the recorded address. gunicorn is never told to trust every peer.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest
from django.conf import settings
from django.http import HttpRequest
from django.test import RequestFactory, override_settings

from audit.models import PortalEvent
from audit.services import client_address, portal_event_record

REPO = Path(settings.BASE_DIR)


def _request(remote: str, forwarded: str | None = None) -> HttpRequest:
    request = RequestFactory().get("/")
    request.META["REMOTE_ADDR"] = remote
    if forwarded is not None:
        request.META["HTTP_X_FORWARDED_FOR"] = forwarded
    return request


@pytest.mark.django_db
def test_an_event_behind_the_local_proxy_records_the_client() -> None:
    event = portal_event_record(
        kind=PortalEvent.Kind.SIGN_IN_REFUSED, request=_request("127.0.0.1", "203.0.113.9")
    )
    event.refresh_from_db()
    assert event.source_ip == "203.0.113.9"


@pytest.mark.parametrize(
    ("remote", "forwarded", "recorded"),
    [
        # No proxy: the peer is the client; its own header is ignored.
        ("198.51.100.7", "10.9.9.9", "198.51.100.7"),
        ("198.51.100.7", None, "198.51.100.7"),
        # Loopback proxy: the address it appended.
        ("127.0.0.1", "203.0.113.9", "203.0.113.9"),
        ("::1", "2001:db8::5", "2001:db8::5"),
        # A client that writes its own X-Forwarded-For: only the hop the proxy added counts.
        ("127.0.0.1", "10.0.0.1, 192.0.2.44, 203.0.113.9", "203.0.113.9"),
        # Behind a trusted proxy with no header: the proxy itself.
        ("127.0.0.1", None, "127.0.0.1"),
        # A malformed hop stops the walk at the last address a trusted proxy vouched for.
        ("127.0.0.1", "203.0.113.9, not-an-ip", "127.0.0.1"),
        ("127.0.0.1", "203.0.113.9:51234", "203.0.113.9"),
        ("bogus", "203.0.113.9", None),
    ],
)
def test_client_address_with_the_default_trusted_proxies(
    remote: str, forwarded: str | None, recorded: str | None
) -> None:
    assert client_address(_request(remote, forwarded)) == recorded


@override_settings(
    PORTAL_TRUSTED_PROXY_NETWORKS=(
        ipaddress.ip_network("127.0.0.1/32"),
        ipaddress.ip_network("10.0.0.0/8"),
    )
)
@pytest.mark.parametrize(
    ("remote", "forwarded", "recorded"),
    [
        # Two trusted hops (a load balancer, then the local proxy): the client before them.
        ("127.0.0.1", "203.0.113.9, 10.1.2.3", "203.0.113.9"),
        ("10.1.2.3", "192.0.2.1, 203.0.113.9, 10.4.5.6", "203.0.113.9"),
        # Every hop trusted: the leftmost.
        ("127.0.0.1", "10.7.7.7, 10.1.2.3", "10.7.7.7"),
    ],
)
def test_client_address_through_a_chain_of_trusted_proxies(
    remote: str, forwarded: str, recorded: str
) -> None:
    assert client_address(_request(remote, forwarded)) == recorded


def test_gunicorn_does_not_trust_every_peer() -> None:
    for name in ("Dockerfile", "docker-compose.yml"):
        text = (REPO / name).read_text()
        assert "--forwarded-allow-ips" in text, name
        assert not any(
            bad in text for bad in ("--forwarded-allow-ips '*'", '"--forwarded-allow-ips", "*"')
        ), name
        assert "PORTAL_TRUSTED_PROXIES" in text, name
    assert settings.PORTAL_TRUSTED_PROXIES == ["127.0.0.1", "::1"]
