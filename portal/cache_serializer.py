"""The Django cache's serializer: JSON with a few tags, never pickle.

Django's ``RedisCache`` pickles by default, and ``pickle.loads`` of a value someone wrote to Redis
runs their code in the portal. This serializer (``CACHES["default"]["OPTIONS"]["serializer"]``)
writes JSON and reads back only data:

- JSON's own types, as they are;
- ``tuple``, ``set``, ``frozenset``, ``datetime``, ``date``, ``timedelta``, a read-only mapping
  (``MappingProxyType``) and a dict whose keys are not all strings, each as a tagged object;
- an ``enum.Enum`` member and a dataclass instance of the portal's own packages
  (:data:`ALLOWED_PACKAGES`: ``graph.results.User``, ``mfa.policy.TargetProfile`` ...), by class
  path and value or fields. Reading one imports at most a module of those packages and calls the
  dataclass's own constructor with the decoded fields; any other class is refused.

Integers are stored as they are (as Django's own serializer does), so ``cache.incr`` works.
A value that cannot be read back (written by another serializer, tampered with, a class that no
longer exists) reads as a miss (None), with a warning in the log: the caller reads Graph again.
A value that cannot be written raises TypeError at ``cache.set``.
"""

from __future__ import annotations

import dataclasses
import enum
import importlib
import json
import logging
from collections.abc import Mapping
from datetime import date, datetime, timedelta
from types import MappingProxyType
from typing import Any

logger = logging.getLogger(__name__)

# Top-level packages whose dataclasses and enums may be read back from the cache.
ALLOWED_PACKAGES = frozenset({"accounts", "audit", "graph", "mfa", "outbox", "portal", "roles"})
_TAG = "__cache_type__"


class UnreadableValue(ValueError):
    """A cached value this serializer does not accept."""


def _class_path(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def _allowed_class(path: str) -> Any:
    module_name, _, qualname = str(path).partition(":")
    if module_name.split(".", 1)[0] not in ALLOWED_PACKAGES or not qualname:
        raise UnreadableValue(f"class outside the portal's packages: {path!r}")
    try:
        found: Any = importlib.import_module(module_name)
        for part in qualname.split("."):
            found = getattr(found, part)
    except (ImportError, AttributeError) as exc:
        raise UnreadableValue(f"no such class: {path!r}") from exc
    if not isinstance(found, type):
        raise UnreadableValue(f"not a class: {path!r}")
    return found


def _encode(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        # Before str and int: a TextChoices member is a str, an IntEnum member an int.
        return {_TAG: "enum", "class": _class_path(type(value)), "value": _encode(value.value)}
    if value is None or isinstance(value, (bool, str, int, float)):
        return value
    if isinstance(value, datetime):
        return {_TAG: "datetime", "value": value.isoformat()}
    if isinstance(value, date):
        return {_TAG: "date", "value": value.isoformat()}
    if isinstance(value, timedelta):
        return {_TAG: "timedelta", "value": value.total_seconds()}
    if isinstance(value, list):
        return [_encode(item) for item in value]
    if isinstance(value, tuple):
        return {_TAG: "tuple", "items": [_encode(item) for item in value]}
    if isinstance(value, (set, frozenset)):
        kind = "frozenset" if isinstance(value, frozenset) else "set"
        return {_TAG: kind, "items": [_encode(item) for item in value]}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = {
            f.name: _encode(getattr(value, f.name)) for f in dataclasses.fields(value) if f.init
        }
        return {_TAG: "dataclass", "class": _class_path(type(value)), "fields": fields}
    if isinstance(value, dict) and all(isinstance(k, str) for k in value) and _TAG not in value:
        return {k: _encode(v) for k, v in value.items()}
    if isinstance(value, Mapping):
        kind = "dict" if isinstance(value, dict) else "mapping"
        pairs = [[_encode(k), _encode(v)] for k, v in value.items()]
        return {_TAG: kind, "items": pairs}
    raise TypeError(f"the cache keeps JSON data, not {type(value).__name__}")


def _decode(value: Any) -> Any:
    if isinstance(value, list):
        return [_decode(item) for item in value]
    if not isinstance(value, dict):
        return value
    tag = value.get(_TAG)
    if tag is None:
        return {k: _decode(v) for k, v in value.items()}
    if tag == "datetime":
        return datetime.fromisoformat(value["value"])
    if tag == "date":
        return date.fromisoformat(value["value"])
    if tag == "timedelta":
        return timedelta(seconds=float(value["value"]))
    if tag == "tuple":
        return tuple(_decode(item) for item in value["items"])
    if tag in {"set", "frozenset"}:
        items = (_decode(item) for item in value["items"])
        return frozenset(items) if tag == "frozenset" else set(items)
    if tag in {"dict", "mapping"}:
        decoded = {_decode(k): _decode(v) for k, v in value["items"]}
        return decoded if tag == "dict" else MappingProxyType(decoded)
    if tag == "enum":
        cls = _allowed_class(value["class"])
        if not issubclass(cls, enum.Enum):
            raise UnreadableValue(f"not an enum: {value['class']!r}")
        return cls(_decode(value["value"]))
    if tag == "dataclass":
        constructor = _allowed_class(value["class"])
        if not dataclasses.is_dataclass(constructor):
            raise UnreadableValue(f"not a dataclass: {value['class']!r}")
        fields = value["fields"]
        if not isinstance(fields, dict):
            raise UnreadableValue("dataclass fields must be an object")
        build: Any = constructor  # the class itself (``_allowed_class`` returns classes only)
        return build(**{str(k): _decode(v) for k, v in fields.items()})
    raise UnreadableValue(f"unknown tag {tag!r}")


class JsonSerializer:
    """``dumps``/``loads`` for ``django.core.cache.backends.redis.RedisCache``."""

    def dumps(self, obj: Any) -> bytes | int:
        # A plain int stays an int, so that Redis's INCR works on it (as in Django's own).
        if type(obj) is int:
            return obj
        return json.dumps(_encode(obj), separators=(",", ":")).encode()

    def loads(self, data: bytes) -> Any:
        try:
            return int(data)
        except ValueError:
            pass
        try:
            return _decode(json.loads(data))
        except (UnreadableValue, ValueError, TypeError, KeyError, RecursionError) as exc:
            # Never the value itself in the log: it may be anything.
            logger.warning("unreadable cache value ignored (%s)", type(exc).__name__)
            return None
