"""portal.cache_backend: Django's Redis cache keeps one client per connection pool."""

from __future__ import annotations

from django.core.cache import cache, caches

from portal.cache_backend import RedisCache


def test_the_cache_reuses_one_client_and_still_reads_and_writes() -> None:
    default = caches["default"]
    assert isinstance(default, RedisCache)
    backend = default._cache
    first = backend.get_client("a")
    assert backend.get_client("b", write=True) is first
    cache.set("cache-backend-test", {"n": 1}, 30)
    assert cache.get("cache-backend-test") == {"n": 1}
    assert cache.delete("cache-backend-test")
    assert backend.get_client("c") is first
