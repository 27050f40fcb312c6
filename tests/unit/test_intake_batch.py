"""intake_batch and forward_batches: one raw fetch to dead letters and per-partition batches."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from aiokafka.structs import ConsumerRecord

from streams import intake, intake_service
from streams.codec import decode_batch
from streams.intake import IntakeResult, RawRecord, intake_batch
from streams.intake_service import forward_batches
from streams.producer import Record
from streams.topics import Topics, person_partition

NOW = datetime(2026, 11, 26, tzinfo=UTC)


def _page(i: int) -> bytes:
    return orjson.dumps(
        {
            "type": "page",
            "messageId": f"m{i}",
            "anonymousId": f"v{i % 7}",
            "timestamp": "2026-11-25T10:00:00Z",
            "properties": {"path": "/pricing"},
        }
    )


def _raw(values: list[bytes | None]) -> list[RawRecord]:
    return [RawRecord(v, b"k", "engagement.raw", 3, 100 + i) for i, v in enumerate(values)]


def test_good_events_are_grouped_by_person_partition_in_arrival_order() -> None:
    result = intake_batch(_raw([_page(i) for i in range(40)]), partitions=4, now=NOW)
    assert (result.valid, result.dead) == (40, [])
    for partition, events in result.forward.items():
        assert all(person_partition(e.pk, 4) == partition for e in events)
        mids = [int(e.mid[1:]) for e in events]
        assert mids == sorted(mids)
    assert sum(len(v) for v in result.forward.values()) == 40


def test_bad_records_become_dead_letters_that_say_where_they_came_from() -> None:
    result = intake_batch(_raw([_page(0), b"{oops", None, _page(1)]), partitions=2, now=NOW)
    assert result.valid == 2
    assert dict(result.rejected) == {"invalid_json": 1, "empty_value": 1}
    (key, first), (_, second) = result.dead
    assert key == b"k"
    assert (first.reason, first.partition, first.offset, first.value) == (
        "invalid_json",
        3,
        101,
        "{oops",
    )
    assert (second.reason, second.offset) == ("empty_value", 102)


def test_aiokafka_consumer_records_are_read_as_they_come() -> None:
    """The intake service hands intake_batch aiokafka's records without copying them."""
    records = [
        ConsumerRecord(
            topic="engagement.raw",
            partition=5,
            offset=7 + i,
            timestamp=0,
            timestamp_type=0,
            key=b"k",
            value=value,
            checksum=None,
            serialized_key_size=1,
            serialized_value_size=len(value),
            headers=(),
        )
        for i, value in enumerate([_page(0), b"{oops"])
    ]
    result = intake_batch(records, partitions=2, now=NOW)
    (event,) = [e for events in result.forward.values() for e in events]
    assert (event.mid, event.src) == ("m0", (5, 7))
    ((key, dead),) = result.dead
    assert (key, dead.reason, dead.source_topic, dead.partition, dead.offset) == (
        b"k",
        "invalid_json",
        "engagement.raw",
        5,
        8,
    )


def _records(result: IntakeResult, topics: Topics) -> list[Record]:
    return [record for record, _ in forward_batches(result, topics)]


def test_a_fetch_sends_one_record_per_partition_addressed_explicitly() -> None:
    """Each record costs the leads stage something of its own whatever it holds: a
    fetch's events for one partition go in one record, while they fit."""
    result = intake_batch(_raw([_page(i) for i in range(1_000)]), partitions=1, now=NOW)
    records = _records(result, Topics("x."))
    assert {r.topic for r in records} == {"x.leadstream.person-events"}
    assert [(r.partition, r.key) for r in records] == [(0, b"p0")]
    assert len(orjson.loads(records[0].value)["events"]) == 1_000


def test_events_past_the_record_budget_are_split_in_order(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(intake_service, "_RECORD_BYTES", 10_000)
    result = intake_batch(_raw([_page(i) for i in range(400)]), partitions=1, now=NOW)
    forwarded = forward_batches(result, Topics())
    assert len(forwarded) > 1
    mids = []
    for record, batch in forwarded:
        assert record.value is not None and batch is not None
        assert len(record.value) <= 10_000
        assert decode_batch(record.value) == batch
        mids += [e.mid for e in batch.events]
    assert mids == [f"m{i}" for i in range(400)]


def test_forward_records_put_dead_letters_on_the_dlq_with_the_original_key() -> None:
    result = intake_batch(_raw([b"[]"]), partitions=2, now=NOW)
    (record,) = _records(result, Topics())
    assert (record.topic, record.key, record.partition) == ("engagement.dlq", b"k", None)
    assert orjson.loads(record.value)["reason"] == "not_object"


def test_every_event_carries_where_it_was_read_on_the_raw_topic() -> None:
    # A lead tells a re-read after a crash by it; both decoders must set it. An event with
    # a context the fast path is unsure of goes through the pydantic models.
    odd = orjson.loads(_page(1))
    odd["message_id"] = "m1"  # a field name the models also read: the fast path steps aside
    del odd["messageId"]
    result = intake_batch(_raw([_page(0), orjson.dumps(odd)]), partitions=4, now=NOW)
    events = sorted((e for es in result.forward.values() for e in es), key=lambda e: e.mid)
    assert [(e.mid, e.src) for e in events] == [("m0", (3, 100)), ("m1", (3, 101))]


def test_the_batch_handed_over_is_what_the_consumer_decodes_from_its_record() -> None:
    """The handover applies the batch as the intake built it, the consumer path (and every
    replay) what it decodes from the record: the two must be equal, traits and all."""
    identify = orjson.dumps(
        {
            "type": "identify",
            "messageId": "i1",
            "anonymousId": "v1",
            "userId": "u1",
            "timestamp": "2026-11-25T10:00:00.123+02:00",
            "traits": {
                "email": "Ana@Example.com",
                "employees": 120,
                "arr": 1.5e6,
                "vip": True,
                "phone": "+1 415 555 0100",
                "country": "US",
                "nothing": None,
            },
            "context": {"campaign": {"source": "news", "name": "q4"}},
        }
    )
    track = orjson.dumps(
        {
            "type": "track",
            "messageId": "t1",
            "anonymousId": "v1",
            "event": "Whitepaper Downloaded",
            "timestamp": "2026-11-25T10:01:00Z",
            "properties": {"asset": "wp-1", "path": "/wp"},
        }
    )
    result = intake_batch(_raw([identify, track, _page(3), b"{oops"]), partitions=2, now=NOW)
    handed = [(r, b) for r, b in forward_batches(result, Topics()) if b is not None]
    assert handed and sum(len(b.events) for _, b in handed) == 3
    for record, batch in handed:
        assert record.value is not None
        assert decode_batch(record.value) == batch


def test_a_record_whose_reading_fails_is_dead_lettered_and_the_rest_go_on(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A bug in reading one record (bad input is a rejection, not an exception) must not
    stop the intake: the record goes to the DLQ as a processing error, saying what failed."""
    real = intake.decode_person_event

    def flaky(value: bytes | None, **kwargs: Any) -> Any:
        if value == _page(1):
            raise ValueError("boom")
        return real(value, **kwargs)

    monkeypatch.setattr(intake, "decode_person_event", flaky)
    result = intake_batch(_raw([_page(0), _page(1), _page(2)]), partitions=2, now=NOW)
    assert sorted(e.mid for events in result.forward.values() for e in events) == ["m0", "m2"]
    ((key, dead),) = result.dead
    assert (key, dead.reason, dead.offset, dead.value) == (
        b"k",
        "processing_error",
        101,
        _page(1).decode(),
    )
    assert dead.message == "reading the record failed: ValueError: boom"
    assert dict(result.rejected) == {"processing_error": 1}
    assert "reading engagement.raw[3]@101 failed" in caplog.text
