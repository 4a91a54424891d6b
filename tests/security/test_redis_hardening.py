"""Nothing read back from Redis can run code, and Redis asks for a password (issue 10, point 14).

- the Django cache writes JSON (portal.cache_serializer), not pickle: a pickle planted under a
  cache key is not executed and reads as a miss; the portal's cached objects (a target's profile,
  the TAP policy, privileged ids) come back equal, with their types;
- Celery accepts JSON only;
- docker compose gives Redis a password and the README documents rediss://.
"""

from __future__ import annotations

import pickle
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from django.conf import settings
from django.core.cache import cache

from graph.results import TemporaryAccessPassPolicy, User
from mfa.models import Tier
from mfa.policy import RoleHolding, TargetProfile
from portal.cache_serializer import JsonSerializer

REPO = Path(settings.BASE_DIR)


class _Planted:
    """A pickle that, when loaded, creates a file: proof that loading ran code."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.touch, (self.path,))


def test_a_pickle_planted_in_the_cache_is_never_run(redis_client: Any, tmp_path: Path) -> None:
    proof = tmp_path / "code-ran"
    cache.set("mfa:target:v1:planted", "placeholder", timeout=60)
    (key,) = redis_client.keys("*mfa:target:v1:planted")
    redis_client.set(key, pickle.dumps(_Planted(proof)))
    assert cache.get("mfa:target:v1:planted") is None
    assert not proof.exists()


def test_cached_objects_come_back_with_their_types() -> None:
    ends = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
    profile = TargetProfile(
        user=User(
            id="u1",
            display_name="Sam Standard",
            user_principal_name="sam@contoso",
            other_mails=("sam@home.example",),
            sign_in_sessions_valid_from=ends,
        ),
        manager=None,
        roles=(RoleHolding("Global Administrator", "62e9", "eligible", ends=ends),),
        protected_groups=("Executives",),
        tier=Tier.PRIVILEGED,
    )
    policy = TemporaryAccessPassPolicy("enabled", 8, 60, 60, 480, False)
    values: list[Any] = [
        profile,
        policy,
        frozenset({"a", "b"}),
        [{"when": ends, "activity": "Reset", "by": "x", "result": "success"}],
        {"__cache_type__": "looks like a tag", 1: "int key"},
        True,
        3,
        2.5,
        "17",
        None,
    ]
    for index, value in enumerate(values):
        cache.set(f"roundtrip:{index}", value, timeout=60)
        back = cache.get(f"roundtrip:{index}")
        assert back == value and type(back) is type(value), value
    back = cache.get("roundtrip:0")
    assert isinstance(back.tier, Tier) and back.tier.label == "Privileged"
    assert back.roles[0].ends == ends and back.user.other_mails == ("sam@home.example",)
    # incr still works on a plain int (stored as a Redis integer).
    cache.set("counter", 1, timeout=60)
    assert cache.incr("counter") == 2


def test_only_the_portals_classes_are_built_from_the_cache() -> None:
    serializer = JsonSerializer()
    for foreign in (
        b'{"__cache_type__":"dataclass","class":"subprocess:Popen","fields":{"args":"id"}}',
        b'{"__cache_type__":"enum","class":"os:O_RDONLY","value":0}',
        b'{"__cache_type__":"dataclass","class":"mfa.models:ActionRequest","fields":{}}',
        b"\x80\x04K\x01.",  # a pickle
    ):
        assert serializer.loads(foreign) is None
    with pytest.raises(TypeError):
        serializer.dumps(object())


def test_the_cache_and_celery_never_unpickle() -> None:
    from portal.celery import app

    assert cache._cache._serializer.__class__ is JsonSerializer  # type: ignore[attr-defined]
    assert list(app.conf.accept_content) == ["json"]
    assert app.conf.task_serializer == "json"


def test_compose_gives_redis_a_password_and_the_readme_documents_tls() -> None:
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    redis = compose["services"]["redis"]
    assert "--requirepass" in " ".join(redis["command"])
    assert "REDIS_PASSWORD" in redis["environment"]
    assert "REDISCLI_AUTH" in " ".join(redis["healthcheck"]["test"])
    example = (REPO / ".env.example").read_text()
    assert "REDIS_PASSWORD=" in example and "REDIS_URL=redis://:" in example
    assert "rediss://" in (REPO / "README.md").read_text()
