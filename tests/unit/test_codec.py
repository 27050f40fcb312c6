"""The codec: every dead-letter reason from a concrete bad input, valid decodes, DLQ records."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import orjson
import pytest

from schemas.decisions import BreakdownLine, DeadLetter, LeadScored, NamedScore
from schemas.events import GroupEvent, IdentifyEvent, PageEvent, TrackEvent
from schemas.internal import Link, PersonEvent, PersonEventBatch
from streams.codec import (
    MAX_EVENT_BYTES,
    Rejection,
    dead_letter,
    decode_batch,
    decode_event,
    decode_forwarded,
    decode_person_event,
    encode,
    encode_batch,
)

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def track(**overrides: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "type": "track",
        "messageId": "m-1",
        "anonymousId": "anon-1",
        "event": "Demo Requested",
        "timestamp": "2026-11-20T09:00:00Z",
    }
    doc.update(overrides)
    return {k: v for k, v in doc.items() if v is not ...}


def raw(doc: Any) -> bytes:
    return orjson.dumps(doc)


@pytest.mark.parametrize(
    ("value", "reason", "message_has"),
    [
        pytest.param(None, "empty_value", "no value", id="none"),
        pytest.param(b"", "empty_value", "no value", id="empty"),
        pytest.param(
            b"{" + b" " * MAX_EVENT_BYTES + b"}",
            "too_large",
            f"is {MAX_EVENT_BYTES + 2} bytes; the limit is {MAX_EVENT_BYTES}",
            id="too-large",
        ),
        pytest.param(b"\xff\xfe\x00{", "not_utf8", "not UTF-8", id="binary"),
        pytest.param(b'{"type": "track", "event": "\xe9"}', "not_utf8", "not UTF-8", id="latin-1"),
        pytest.param(b'{"type": "track",', "invalid_json", "not JSON", id="truncated"),
        pytest.param(b"hello", "invalid_json", "not JSON", id="plain-text"),
        pytest.param(b"[1, 2]", "not_object", "not an object", id="array"),
        pytest.param(b"42", "not_object", "not an object", id="number"),
        pytest.param(b'"track"', "not_object", "not an object", id="string"),
        pytest.param(raw(track(type="alias")), "unknown_type", "type: ", id="alias"),
        pytest.param(raw(track(type=...)), "missing_field", "type: field required", id="no-type"),
        pytest.param(
            raw(track(messageId=...)), "missing_field", "messageId: field required", id="no-mid"
        ),
        pytest.param(
            raw(track(event=...)), "missing_field", "event: field required", id="no-event"
        ),
        pytest.param(raw(track(event=5)), "wrong_type", "event: ", id="event-int"),
        pytest.param(raw(track(userId=7)), "wrong_type", "userId: ", id="user-int"),
        pytest.param(raw(track(properties="x")), "wrong_type", "properties: ", id="props-str"),
        pytest.param(
            raw(track(timestamp=1763629200)),
            "invalid_timestamp",
            "timestamp: timestamp must be an ISO 8601 string",
            id="unix-seconds",
        ),
        pytest.param(
            raw(track(timestamp="yesterday")), "invalid_timestamp", "timestamp: ", id="words"
        ),
        pytest.param(
            raw(track(timestamp="2026-13-40T99:00:00Z")),
            "invalid_timestamp",
            "timestamp: ",
            id="month-13",
        ),
        pytest.param(
            raw(track(anonymousId=...)),
            "missing_identity",
            "at least one of anonymousId or userId is required",
            id="no-identity",
        ),
        pytest.param(
            raw(track(anonymousId=None, userId=None)),
            "missing_identity",
            "anonymousId or userId",
            id="null-identity",
        ),
        pytest.param(raw(track(messageId="")), "invalid_value", "messageId: ", id="empty-mid"),
        pytest.param(raw(track(event="")), "invalid_value", "event: ", id="empty-event"),
        pytest.param(raw(track(userId="u" * 257)), "invalid_value", "userId: ", id="long-user"),
    ],
)
def test_bad_input_is_rejected_with_reason_and_field(
    value: bytes | None, reason: str, message_has: str
) -> None:
    result = decode_event(value)

    assert isinstance(result, Rejection)
    assert result.reason == reason
    assert message_has in result.message


def test_unknown_type_message_lists_the_accepted_types() -> None:
    result = decode_event(raw(track(type="alias")))

    assert isinstance(result, Rejection)
    assert "'alias'" in result.message
    for kind in ("track", "page", "identify", "group"):
        assert f"'{kind}'" in result.message


def test_missing_timestamp_names_the_field() -> None:
    result = decode_event(raw(track(timestamp=...)))

    assert isinstance(result, Rejection)
    assert result.message.startswith("timestamp: ")


def test_value_of_exactly_the_limit_is_accepted() -> None:
    doc = track(properties={"pad": ""})
    short = len(raw(doc))
    doc["properties"]["pad"] = "x" * (MAX_EVENT_BYTES - short)
    value = raw(doc)
    assert len(value) == MAX_EVENT_BYTES

    assert isinstance(decode_event(value), TrackEvent)
    assert decode_event(value + b" ") == Rejection(
        "too_large", f"the value is {MAX_EVENT_BYTES + 1} bytes; the limit is {MAX_EVENT_BYTES}"
    )


@pytest.mark.parametrize(
    ("doc", "model", "checks"),
    [
        pytest.param(
            track(properties={"title": "Routing"}, sentAt="2026-11-20T09:00:01Z"),
            TrackEvent,
            {"event": "Demo Requested", "properties": {"title": "Routing"}},
            id="track",
        ),
        pytest.param(
            {
                "type": "page",
                "messageId": "m-2",
                "userId": "crm-1",
                "name": "Pricing",
                "timestamp": "2026-11-20T09:00:00Z",
                "properties": {"path": "/pricing"},
            },
            PageEvent,
            {"name": "Pricing", "user_id": "crm-1", "anonymous_id": None},
            id="page",
        ),
        pytest.param(
            {
                "type": "identify",
                "messageId": "m-3",
                "anonymousId": "anon-1",
                "userId": "crm-1",
                "timestamp": "2026-11-20T09:00:00Z",
                "traits": {"email": "a@b.com"},
            },
            IdentifyEvent,
            {"traits": {"email": "a@b.com"}, "user_id": "crm-1"},
            id="identify",
        ),
        pytest.param(
            {
                "type": "group",
                "messageId": "m-4",
                "userId": "crm-1",
                "groupId": "acct-9",
                "timestamp": "2026-11-20T09:00:00Z",
                "traits": {"name": "Acme"},
            },
            GroupEvent,
            {"group_id": "acct-9", "traits": {"name": "Acme"}},
            id="group",
        ),
    ],
)
def test_valid_messages_decode_to_their_type(
    doc: dict[str, Any], model: type, checks: dict[str, Any]
) -> None:
    event = decode_event(raw(doc))

    assert isinstance(event, model)
    assert event.message_id == doc["messageId"]
    assert event.timestamp == datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
    for name, expected in checks.items():
        assert getattr(event, name) == expected


@pytest.mark.parametrize(
    ("timestamp", "expected"),
    [
        ("2026-11-20T09:00:00", datetime(2026, 11, 20, 9, 0, tzinfo=UTC)),
        ("2026-11-20T09:00:00.250", datetime(2026, 11, 20, 9, 0, 0, 250_000, tzinfo=UTC)),
        ("2026-11-20T09:00:00Z", datetime(2026, 11, 20, 9, 0, tzinfo=UTC)),
        ("2026-11-20T18:00:00+09:00", datetime(2026, 11, 20, 9, 0, tzinfo=UTC)),
    ],
)
def test_timestamps_are_utc_and_naive_ones_read_as_utc(timestamp: str, expected: datetime) -> None:
    event = decode_event(raw(track(timestamp=timestamp)))

    assert isinstance(event, TrackEvent)
    assert event.timestamp == expected
    assert event.timestamp.utcoffset() == timedelta(0)


def test_dead_letter_keeps_utf8_value_verbatim() -> None:
    value = '{"type": "track", "note": "café 東京"'.encode()
    rejection = decode_event(value)
    assert isinstance(rejection, Rejection)

    record = dead_letter(
        rejection,
        value=value,
        key=b"anon-1",
        topic="engagement.raw",
        partition=3,
        offset=42,
        now=NOW,
    )

    assert record == DeadLetter(
        reason="invalid_json",
        message=rejection.message,
        source_topic="engagement.raw",
        partition=3,
        offset=42,
        key="anon-1",
        value='{"type": "track", "note": "café 東京"',
        value_encoding="utf-8",
        received_at=NOW,
    )


def test_dead_letter_base64_encodes_binary() -> None:
    value = b"\x00\xff\xfe binary \x80"
    rejection = decode_event(value)
    assert isinstance(rejection, Rejection)
    assert rejection.reason == "not_utf8"

    record = dead_letter(
        rejection, value=value, key=None, topic="engagement.raw", partition=0, offset=7, now=NOW
    )

    assert record.value_encoding == "base64"
    assert base64.b64decode(record.value) == value
    assert record.key is None
    assert record.reason == "not_utf8"


@pytest.mark.parametrize(
    ("key", "expected"),
    [(b"anon-1", "anon-1"), (b"\xffk", "\\xffk"), (b"", ""), (None, None)],
)
def test_dead_letter_key_is_readable_text(key: bytes | None, expected: str | None) -> None:
    record = dead_letter(
        Rejection("empty_value", "the record has no value"),
        value=None,
        key=key,
        topic="t",
        partition=0,
        offset=0,
        now=NOW,
    )

    assert record.key == expected
    assert (record.value, record.value_encoding) == ("", "utf-8")


def test_encode_round_trips_decision_records() -> None:
    lines = (BreakdownLine(rule="engagement:whitepaper", label="W", points=40, count=2),)
    scored = LeadScored(
        lead_id="ld_1",
        score=40,
        previous_score=10,
        breakdown=lines,
        scores=(
            NamedScore(id="engagement", points=40, threshold=100, breakdown=lines),
            NamedScore(id="robotics", points=0, threshold=60, breakdown=()),
        ),
        fit=15,
        grade="C",
        fit_breakdown=(BreakdownLine(rule="fit:executive", label="title vp", points=15),),
        stage="engaged",
        previous_stage="known",
        reason="first engagement",
        model_version="v1",
        message_id="m-9",
        occurred_at=datetime(2026, 11, 20, 9, 0, 0, 123_000, tzinfo=UTC),
        created_at=NOW,
    )

    assert LeadScored.model_validate_json(encode(scored)) == scored


def test_encode_round_trips_batches_and_events() -> None:
    batch = PersonEventBatch(
        events=(
            PersonEvent(mid="m1", pk="anon-1", kind="page", name="/pricing", ts_ms=1, aid="anon-1"),
            PersonEvent(
                mid="m2",
                pk="anon-1",
                kind="identify",
                name="",
                ts_ms=2,
                aid="anon-1",
                uid="u",
                traits={"email": "a@b.com", "employees": 120, "vip": True},
            ),
        )
    )
    event = decode_event(raw(track(properties={"n": 1})))
    assert isinstance(event, TrackEvent)

    assert decode_batch(encode(batch)) == batch
    assert decode_event(encode(event)) == event


def test_the_intakes_batches_encode_as_pydantic_would() -> None:
    """encode_batch writes what encode does, byte for byte: events from the fast path and
    from the models' path, odd traits, and batches holding identity messages."""
    messages: list[Any] = [
        track(messageId="m1", properties={"title": "Guide ü", "path": "/x"}),
        track(
            messageId="m2", userId="u-9", anonymousId=..., context={"campaign": {"source": "ads"}}
        ),
        {
            "type": "identify",
            "messageId": "m3",
            "anonymousId": "anon-1",
            "timestamp": "2026-11-20T09:00:00.123+09:00",
            "traits": {
                "email": "A.B@Example.com",
                "employees": "1,200",
                "score": 0.1 + 0.2,
                "vip": True,
                "title": 'CTO \u2028 "x"',
                "nothing": None,
            },
        },
        {
            "type": "page",
            "messageId": "m4",
            "userId": "u-1",
            "timestamp": "2026-11-20T09:00:00Z",
            "properties": {"url": "https://x.test/pricing?q=1"},
        },
        # A head count past 64 bits (given as text): orjson cannot write it, encode_batch
        # falls back.
        {
            "type": "identify",
            "messageId": "m5",
            "userId": "u-2",
            "timestamp": "2026-11-20T09:00:00Z",
            "traits": {"employees": "1180591620717411303424"},
        },
    ]
    events = []
    for doc in messages:
        event = decode_person_event(raw(doc), src=(3, len(events)))
        assert isinstance(event, PersonEvent), event
        events.append(event)
    batches = [
        PersonEventBatch(events=tuple(events[:4])),
        PersonEventBatch(events=tuple(events)),
        PersonEventBatch(events=tuple(events[4:])),
        PersonEventBatch(events=()),
        PersonEventBatch(
            events=tuple(events[:1]), links=(Link(key="u-1", owner="anon-1", why="userId"),)
        ),
    ]
    for batch in batches:
        assert encode_batch(batch) == encode(batch)
        assert decode_batch(encode_batch(batch)) == batch
        # The intake process's records, rebuilt for the handover: the same batch.
        rebuilt = decode_forwarded(encode_batch(batch))
        assert rebuilt == batch
        assert [e.__dict__ for e in rebuilt.events] == [e.__dict__ for e in batch.events]


def test_an_integer_past_64_bits_is_rebuilt_an_integer() -> None:
    """The intake keeps trait integers within 64 bits; one past them (a batch built
    otherwise) is written by pydantic, and orjson would read it back a float."""
    event = PersonEvent(
        mid="m", pk="p", kind="identify", name="", ts_ms=1, traits={"n": 2**70 + 1}, src=(1, 2)
    )
    batch = PersonEventBatch(events=(event,))
    rebuilt = decode_forwarded(encode_batch(batch))
    assert rebuilt == batch
    assert type(rebuilt.events[0].traits["n"]) is int


def test_encode_writes_field_names_and_nulls() -> None:
    event = decode_event(raw(track()))
    assert isinstance(event, TrackEvent)

    doc = orjson.loads(encode(event))

    assert doc["message_id"] == "m-1"
    assert "messageId" not in doc
    assert doc["user_id"] is None


def _scored_traffic(*, seed: int, events: int, payload: str = "lean") -> Any:
    """The core's BatchResult for `events` generated messages of 300 leads, as one batch."""
    from itertools import islice

    from loadtest.generator import Generator
    from loadtest.harness import MODEL
    from streams.codec import decode_person_event
    from streams.lead_model import load_model
    from streams.leads import Limits, apply_batch

    gen = Generator(leads=300, seed=seed, payload=payload)  # type: ignore[arg-type]
    now_ms = int(NOW.timestamp() * 1000)
    decoded = [decode_person_event(m.value) for m in islice(gen.messages(now_ms=now_ms), events)]
    return apply_batch(
        {},
        [e for e in decoded if isinstance(e, PersonEvent)],
        model=load_model(MODEL),
        rotation={},
        limits=Limits(),
        now=NOW,
    )


def test_a_lead_encodes_for_the_table_as_pydantic_would() -> None:
    """`encode_state` (orjson on the fields) writes the bytes `encode` writes, for leads
    the core built (tuples, nested dicts, floats, non-ASCII traits) and leads read back."""
    from streams.codec import decode_state, encode_state

    leads = list(_scored_traffic(seed=7, events=6000).leads.values())
    assert any(lead.rep for lead in leads) and any(lead.hits for lead in leads)
    first = leads[0]
    leads.append(
        first.model_copy(
            update={"traits": {"name": "Zoë 山田 \u2028", "employees": 12.5, "ok": True}}
        )
    )
    leads.append(
        first.model_copy(update={"account_confidence": 0.875, "sla": ("h", "p", "r", 1, 2)})
    )
    # A head count past 64 bits (a CRM account's may be one): orjson cannot write it.
    leads.append(first.model_copy(update={"traits": {"employees": 2**70}}))
    for lead in leads + [decode_state(encode(lead)) for lead in leads]:
        assert encode_state(lead) == encode(lead)


_KEPT_STATE_SCRIPT = """
from datetime import UTC, datetime
from itertools import islice

from loadtest.generator import Generator
from loadtest.harness import MODEL
from streams.codec import decode_person_event, encode_state
from streams.lead_model import load_model
from streams.leads import Limits, apply_batch
from schemas.internal import PersonEvent

now = datetime(2026, 11, 26, tzinfo=UTC)
gen = Generator(leads=300, seed=7)
events = [decode_person_event(m.value) for m in islice(gen.messages(now_ms=1_795_000_000_000), 6000)]
leads = list(apply_batch(
    {}, [e for e in events if isinstance(e, PersonEvent)],
    model=load_model(MODEL), rotation={}, limits=Limits(), now=now,
).leads.values())


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


before = rss()
kept = [encode_state(leads[i % len(leads)]) for i in range(30_000)]
print(rss() - before, sum(map(len, kept)))
"""


def test_a_lead_kept_in_the_table_holds_about_its_encoded_size_in_memory() -> None:
    """The leads table keeps each lead's encoded bytes for as long as the lead lives, so
    their memory is the worker's memory per lead. Measured in a fresh interpreter (the
    heap of this one is arbitrary): 30,000 encoded leads kept cost at most twice their
    length in RSS. orjson's output as it returns it took 5.6x its length here."""
    import subprocess
    import sys
    from pathlib import Path

    run = subprocess.run(
        [sys.executable, "-c", _KEPT_STATE_SCRIPT],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert run.returncode == 0, run.stderr
    grown, length = map(int, run.stdout.split())
    assert length > 30_000 * 300  # leads with some history and traits
    assert grown < 2 * length, f"RSS grew {grown:,} B for {length:,} B of encoded leads"


def test_the_intake_process_records_rebuild_to_what_decode_batch_reads() -> None:
    """decode_forwarded over realistic traffic (bad messages among it) forwarded as the
    intake does: each record gives the batch decode_batch gives, and the one the intake
    built; a batch of feedback or erasures is read by decode_batch."""
    from datetime import UTC, datetime
    from itertools import islice

    from loadtest.generator import Generator
    from streams.intake import RawRecord, intake_batch
    from streams.intake_service import forward_batches
    from streams.topics import Topics

    now = datetime(2026, 11, 26, tzinfo=UTC)
    gen = Generator(leads=300, seed=11, bad_rate=0.05)
    raw = [
        RawRecord(m.value, m.key, "engagement.raw", 0, i)
        for i, m in enumerate(islice(gen.messages(now_ms=1_795_000_000_000), 3000))
    ]
    topics = Topics()
    result = intake_batch(
        raw, partitions=8, now=now, feedback_topic=topics.feedback, erasure_topic=topics.erasure
    )
    forwarded = [(r.value, b) for r, b in forward_batches(result, topics) if b is not None]
    assert sum(len(b.events) for _, b in forwarded) > 2500
    for value, built in forwarded:
        assert value is not None
        rebuilt = decode_forwarded(value)
        assert rebuilt == decode_batch(value) == built
        assert all(isinstance(e.src, tuple) for e in rebuilt.events)


@pytest.mark.parametrize("payload", ["lean", "browser"])
def test_a_score_change_encodes_for_leads_scored_as_pydantic_would(payload: str) -> None:
    """`encode_scored` (orjson on the models' fields) writes the bytes `encode` writes, for
    the records the core makes on generated traffic and the same records read back."""
    from streams.codec import decode_output, encode_scored

    result = _scored_traffic(seed=11, events=4000, payload=payload)
    scored = [d for d in result.decisions if isinstance(d, LeadScored)]
    assert len(scored) > 100 and any(d.fit_breakdown for d in scored)
    assert any(len(d.scores) > 1 for d in scored)
    read_back = [decode_output(LeadScored, encode(d)) for d in scored]
    for record in scored + read_back:
        assert record is not None
        assert encode_scored(record) == encode(record)


def test_a_score_change_at_a_whole_second_or_in_another_zone_encodes_as_pydantic_would() -> None:
    from streams.codec import encode_scored

    line = BreakdownLine(rule="engagement:pricing", label="page /pricing* 価格", points=5, count=1)
    base = LeadScored(
        lead_id="ld_1",
        score=5,
        previous_score=0,
        breakdown=(line,),
        scores=(NamedScore(id="engagement", points=5, threshold=100, breakdown=(line,)),),
        fit=0,
        grade="D",
        fit_breakdown=(),
        stage="engaged",
        previous_stage="known",
        reason='a "quoted" reason\n',
        model_version="v1",
        message_id="m-1",
        occurred_at=datetime(2026, 11, 26, 9, 0, 0, tzinfo=UTC),  # no microseconds
        created_at=datetime(2026, 11, 26, 9, 0, 0, 1, tzinfo=UTC),
    )
    tokyo = timezone(timedelta(hours=9))
    for record in (
        base,
        base.model_copy(update={"occurred_at": datetime(2026, 11, 26, 18, 0, tzinfo=tokyo)}),
        base.model_copy(update={"created_at": datetime(2026, 11, 26, 9, 0, 0, 999_999)}),
    ):
        assert encode_scored(record) == encode(record)
    assert b'"occurred_at":"2026-11-26T18:00:00+09:00"' in encode_scored(
        base.model_copy(update={"occurred_at": datetime(2026, 11, 26, 18, 0, tzinfo=tokyo)})
    )
