"""The load generator: reproducible by seed, realistic mix, bad input at the asked rate."""

from __future__ import annotations

from collections import Counter

import orjson

from loadtest.generator import Generator
from streams.codec import Rejection, decode_person_event


def _take(gen: Generator, n: int) -> list[bytes]:
    return [gen.next(now_ms=1_795_000_000_000).value for _ in range(n)]


def test_same_seed_same_traffic_other_seed_other_traffic() -> None:
    assert _take(Generator(leads=500, seed=7), 300) == _take(Generator(leads=500, seed=7), 300)
    assert _take(Generator(leads=500, seed=7), 300) != _take(Generator(leads=500, seed=8), 300)


def test_traffic_is_valid_segment_with_a_realistic_mix() -> None:
    values = _take(Generator(leads=2000, seed=3), 5000)
    events = [decode_person_event(v) for v in values]
    assert not [e for e in events if isinstance(e, Rejection)]
    kinds = Counter(orjson.loads(v)["type"] for v in values)
    assert kinds["page"] > kinds["track"] > kinds["identify"] > 0
    names = Counter(e.name for e in events if not isinstance(e, Rejection))
    assert names["/pricing"] > 0 and names["Whitepaper Downloaded"] > 0
    people = Counter(e.pk for e in events if not isinstance(e, Rejection))
    assert people.most_common(1)[0][1] > 20  # an active head ...
    assert sum(1 for c in people.values() if c == 1) > 500  # ... and a long tail


def test_bad_rate_produces_that_share_of_invalid_messages() -> None:
    values = _take(Generator(leads=100, seed=1, bad_rate=0.1), 5000)
    bad = sum(isinstance(decode_person_event(v), Rejection) for v in values)
    assert 400 < bad < 600
