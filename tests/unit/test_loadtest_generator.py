"""The load generator: reproducible by seed, realistic mix, bad input at the asked rate."""

from __future__ import annotations

from collections import Counter
from typing import cast

import orjson
import pytest

from loadtest.generator import Generator
from schemas.internal import PersonEvent
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


def _read_as(lean: list[bytes], other: list[bytes]) -> list[PersonEvent]:
    """`other` as Leadstream reads it: all valid, and the same events as `lean`, event for
    event; only the messageIds differ."""
    read = [decode_person_event(v) for v in lean]
    read_other = [decode_person_event(v) for v in other]
    assert not [e for e in read + read_other if isinstance(e, Rejection)]
    events = cast(list[PersonEvent], read_other)
    assert [e.model_copy(update={"mid": ""}) for e in cast(list[PersonEvent], read)] == [
        e.model_copy(update={"mid": ""}) for e in events
    ]
    return events


def test_browser_payload_is_the_same_traffic_as_analytics_js_sends_it() -> None:
    lean = _take(Generator(leads=2000, seed=3), 3000)
    browser = _take(Generator(leads=2000, seed=3, payload="browser"), 3000)
    ids = [e.mid for e in _read_as(lean, browser)]
    assert len(set(ids)) == len(ids) and all(i.startswith("ajs-next-") for i in ids)
    page = orjson.loads(browser[0])
    assert page["channel"] == "client" and page["integrations"] == {}
    assert {"ip", "library", "locale", "page", "userAgent"} <= page["context"].keys()
    assert page["context"]["page"]["url"].endswith(page["properties"]["path"])
    stamps = ("originalTimestamp", "receivedAt", "sentAt", "timestamp")
    assert all(page[s] == page["timestamp"] for s in stamps)
    # A person keeps one browser.
    agents = {}
    for value in browser:
        msg = orjson.loads(value)
        agents.setdefault(msg["anonymousId"], set()).add(msg["context"]["userAgent"])
    assert all(len(seen) == 1 for seen in agents.values())
    size = sum(map(len, browser)) / len(browser)
    assert 700 < size < 1000 and sum(map(len, lean)) / len(lean) < 250


def test_server_payload_is_the_same_traffic_as_analytics_node_sends_it() -> None:
    lean = _take(Generator(leads=2000, seed=3), 3000)
    server = _take(Generator(leads=2000, seed=3, payload="server"), 3000)
    ids = [e.mid for e in _read_as(lean, server)]
    assert len(set(ids)) == len(ids) and all(i.startswith("node-next-1795000000000-") for i in ids)
    messages = [orjson.loads(v) for v in server]
    page = next(m for m in messages if m["type"] == "page")
    assert page["context"] == {"library": {"name": "@segment/analytics-node", "version": "2.1.3"}}
    assert page["integrations"] == {} and page["_metadata"] == {"jsRuntime": "node"}
    assert page["properties"]["url"] == "https://www.example-saas.com" + page["properties"]["path"]
    # The stamps `leadstream ingest` adds to what a server library sends.
    assert all(m["receivedAt"] == m["originalTimestamp"] == m["timestamp"] for m in messages)
    assert 400 < sum(map(len, server)) / len(server) < 550


def test_an_unknown_payload_is_refused_with_the_choices() -> None:
    with pytest.raises(ValueError, match="lean, server, browser"):
        Generator(leads=10, seed=1, payload="mobile")  # type: ignore[arg-type]
