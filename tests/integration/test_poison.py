"""Poison records between one person's events: each goes to the DLQ, none holds up the rest."""

from __future__ import annotations

import base64
from typing import Any

from tests.integration.segment import page

_TRACK = b'"type":"track","anonymousId":"anon-p","event":"x"'
POISON: list[tuple[str, bytes]] = [
    ("invalid_json", b"[" * 10_000 + b"]" * 10_000),
    ("not_utf8", b"{" + _TRACK + b',"messageId":"\xff\xfe","timestamp":"2026-01-01T00:00:00Z"}'),
    ("wrong_type", b"{" + _TRACK + b',"messageId":NaN,"timestamp":"2026-01-01T00:00:00Z"}'),
    ("too_large", b'{"type":"page","padding":"' + b"x" * 70_000 + b'"}'),
    (
        "invalid_timestamp",
        b"{" + _TRACK + b',"message_id":"p","timestamp":"0001-01-01T00:00:00+01:00"}',
    ),
]


def test_poison_records_are_dead_lettered_and_the_events_behind_them_all_scored(
    make_worker: Any,
) -> None:
    worker = make_worker()
    messages: list[dict[str, Any] | bytes] = []
    for i, (_, poison) in enumerate(POISON):
        messages.append(page(f"ok-{i}", "/pricing", anon="anon-p", days_ago=len(POISON) - i))
        messages.append(poison)
    messages.append(page("ok-last", "/pricing", anon="anon-p"))
    worker.send(*messages)

    dead = worker.read(worker.topics.dlq, lambda r: len(r) >= len(POISON))
    assert sorted(d["reason"] for d in dead) == sorted(reason for reason, _ in POISON)
    for record in dead:
        original = dict(POISON)[record["reason"]]
        kept = (
            base64.b64decode(record["value"])
            if record["value_encoding"] == "base64"
            else record["value"].encode()
        )
        assert kept == original and record["message"]

    # Six pricing views of 10 points each: every valid event counted, in order.
    final = 10 * (len(POISON) + 1)
    scored = worker.read(worker.topics.scored, lambda r: any(s["score"] == final for s in r))
    assert [s["score"] for s in scored] == list(range(10, final + 1, 10))
    assert "leadstream_events_received_total" in worker.metrics()  # still up
