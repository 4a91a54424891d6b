"""Bug 8, below the browser: /favicon.ico is the portal's icon (an ICO of PNGs), for anyone,
cached; every page links it."""

from __future__ import annotations

import struct

import pytest
from django.test import Client

from tests.personas import PERSONAS, signed_in


def test_favicon_is_a_real_icon_for_anyone() -> None:
    response = Client().get("/favicon.ico")
    assert response.status_code == 200
    assert response["Content-Type"] == "image/x-icon"
    assert "max-age=86400" in response["Cache-Control"]
    body = response.content
    reserved, kind, count = struct.unpack("<HHH", body[:6])
    assert (reserved, kind) == (0, 1) and count >= 2
    sizes = {body[6 + 16 * i] or 256 for i in range(count)}
    assert {16, 32} <= sizes
    for i in range(count):
        length, offset = struct.unpack("<II", body[6 + 16 * i + 8 : 6 + 16 * i + 16])
        assert body[offset : offset + 8] == b"\x89PNG\r\n\x1a\n" and offset + length <= len(body)


@pytest.mark.django_db
def test_every_page_links_the_icon() -> None:
    for client, path in ((Client(), "/signed-out/"), (signed_in(PERSONAS.agent), "/")):
        html = client.get(path).content.decode()
        assert '<link rel="icon" href="/static/favicon.ico" sizes="any">' in html, path
