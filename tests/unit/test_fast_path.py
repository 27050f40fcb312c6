"""The intake fast path never disagrees with the pydantic models (which define validity)."""

from __future__ import annotations

import random
from typing import Any

import orjson
import pytest

from loadtest.generator import Generator
from streams.codec import Rejection, _fast_path, decode_event, decode_person_event
from streams.normalize import normalize

_ODD_VALUES: list[Any] = [
    None,
    0,
    1.5,
    True,
    "",
    "x" * 300,
    [],
    {},
    {"name": "Acme"},
    [1, "a"],
    "2026-11-20",
    "2026-11-20T09:00:00",
    "2026-11-20T09:00:00.1234567Z",
    "2026-11-20T09:00:00+0900",
    " 2026-11-20T09:00:00Z",
    "2026-13-40T09:00:00Z",
    "2026-11-20T25:00:00Z",
    "track",
    "page",
    "identify",
    "group",
    "screen",
    "ünïcödé",
    float("inf"),
]
_KEYS = [
    "type",
    "messageId",
    "anonymousId",
    "userId",
    "timestamp",
    "event",
    "name",
    "properties",
    "traits",
    "context",
    "groupId",
    "message_id",
    "anonymous_id",
]


def _slow(value: bytes) -> object:
    decoded = decode_event(value)
    return decoded if isinstance(decoded, Rejection) else normalize(decoded)


def _mutations(seed: int, count: int) -> list[bytes]:
    rng = random.Random(seed)
    gen = Generator(leads=50, seed=seed, bad_rate=0.0)
    out = []
    for _ in range(count):
        doc = orjson.loads(gen.next(now_ms=1_795_000_000_123).value)
        for _ in range(rng.randint(0, 3)):
            key = rng.choice(_KEYS)
            if rng.random() < 0.3:
                doc.pop(key, None)
            else:
                doc[key] = rng.choice(_ODD_VALUES)
        try:
            out.append(orjson.dumps(doc))
        except TypeError:  # orjson refuses inf: send the text form instead
            out.append(orjson.dumps(doc, default=str))
    return out


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_fast_path_agrees_with_the_models_on_valid_and_mutated_messages(seed: int) -> None:
    fast_hits = 0
    for value in _mutations(seed, 4000):
        slow = _slow(value)
        fast = _fast_path(value)
        if fast is not None:
            fast_hits += 1
            assert fast == slow, value
        assert decode_person_event(value) == slow, value
    assert fast_hits > 1000  # the fast path is actually taken for ordinary traffic


def test_fast_path_defers_instead_of_guessing() -> None:
    snake = b'{"type":"track","message_id":"m","anonymousId":"a","event":"x","timestamp":"2026-01-01T00:00:00Z"}'
    assert _fast_path(snake) is None  # populate_by_name: the models decide
    assert decode_person_event(snake) == _slow(snake)
    assert _fast_path(b'{"type":"track"') is None
