"""Hostile and broken input: every decoder answers (a model or a reason), none raises.

A fast subset of `python -m loadtest.fuzz`: hypothesis drives the same seeded generators
(through `st.randoms`) and adds its own raw bytes and JSON. The crashes the fuzzing found
are kept below as explicit cases.
"""

from __future__ import annotations

import base64
import random
from datetime import UTC, datetime
from typing import Any, get_args

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from loadtest.fuzz import (
    WRITE_KEY,
    Request,
    handle,
    hostile_account,
    hostile_event,
    hostile_feedback,
    hostile_request,
    valid_event,
)
from schemas.crm import CrmAccount
from schemas.decisions import DlqReason
from schemas.feedback import SalesFeedback
from streams.codec import (
    Rejection,
    _fast_path,
    decode_crm_account,
    decode_event,
    decode_person_event,
    decode_sales_feedback,
    encode,
)
from streams.ingest import Accepted, Refused
from streams.intake import RawRecord, intake_batch
from streams.normalize import normalize

FAST = settings(max_examples=200, deadline=None, database=None)
NOW = datetime(2026, 11, 26, tzinfo=UTC)
REASONS = set(get_args(DlqReason))
FEEDBACK = "sfa.feedback"

_seeded = st.randoms(use_true_random=False)
_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)  # what orjson writes
    | st.floats()  # NaN and infinities included: orjson writes them as null
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=20,
)
_field_values = st.one_of(
    _json,
    st.sampled_from([b"NaN", b"Infinity", b"-Infinity", b"1e999", b"[" * 300 + b"]" * 300]),
)


def _raw_event_with(field: str, value: Any, seed: int) -> bytes:
    doc = valid_event(random.Random(seed))
    members = [orjson.dumps(k) + b":" + orjson.dumps(v) for k, v in doc.items() if k != field]
    text = value if isinstance(value, bytes) else orjson.dumps(value)
    return b"{" + b",".join([*members, orjson.dumps(field) + b":" + text]) + b"}"


_hostile_values = st.one_of(
    st.binary(max_size=300),
    _seeded.map(lambda r: hostile_event(r)[1]),
    st.builds(
        _raw_event_with,
        st.sampled_from(
            [
                *("type", "messageId", "anonymousId", "userId", "timestamp", "event", "name"),
                *("properties", "traits", "context", "groupId", "message_id"),
            ]
        ),
        _field_values,
        st.integers(0, 1000),
    ),
)


def _record(value: bytes | None, offset: int, topic: str = "engagement.raw") -> RawRecord:
    return RawRecord(value=value, key=b"k", topic=topic, partition=2, offset=offset)


def _assert_one_outcome(value: bytes | None, *, topic: str = "engagement.raw") -> None:
    result = intake_batch(
        [_record(value, 7, topic)], partitions=4, now=NOW, feedback_topic=FEEDBACK
    )
    forwarded = sum(len(v) for v in result.forward.values())
    feedback = sum(len(v) for v in result.feedback.values())
    assert forwarded + feedback + len(result.dead) == 1
    if result.dead:
        _, letter = result.dead[0]
        assert letter.reason in REASONS
        assert letter.message
        assert letter.offset == 7 and letter.partition == 2 and letter.source_topic == topic
        kept = (
            letter.value.encode("utf-8")
            if letter.value_encoding == "utf-8"
            else base64.b64decode(letter.value)
        )
        assert kept == (value or b"")
        assert encode(letter)  # what the worker sends to the DLQ can be written


@FAST
@given(_hostile_values)
def test_intake_answers_every_engagement_record_with_an_event_or_a_dead_letter(
    value: bytes,
) -> None:
    _assert_one_outcome(value)


@FAST
@given(st.one_of(st.binary(max_size=300), _seeded.map(lambda r: hostile_feedback(r)[1])))
def test_intake_answers_every_feedback_record_with_feedback_or_a_dead_letter(value: bytes) -> None:
    _assert_one_outcome(value, topic=FEEDBACK)


@FAST
@given(st.one_of(st.binary(max_size=300), _seeded.map(lambda r: hostile_feedback(r)[1])))
def test_sales_feedback_decoder_never_raises(value: bytes) -> None:
    decoded = decode_sales_feedback(value)
    assert isinstance(decoded, SalesFeedback) or (decoded.reason in REASONS and decoded.message)


@FAST
@given(st.one_of(st.binary(max_size=300), _seeded.map(lambda r: hostile_account(r)[1])))
def test_crm_account_decoder_never_raises(value: bytes) -> None:
    decoded = decode_crm_account(value)
    assert isinstance(decoded, CrmAccount) or (decoded.reason in REASONS and decoded.message)


def _assert_answered(request: Request) -> None:
    answer = handle(request)
    if isinstance(answer, Refused):
        assert 400 <= answer.status < 500 and answer.message
        assert orjson.loads(answer.body())["success"] is False
    else:
        assert isinstance(answer, Accepted)
        for _, value in answer.records:
            orjson.loads(value)  # what is produced is JSON the intake can read


@FAST
@given(_seeded.map(hostile_request))
def test_ingest_answers_every_request_with_200_or_a_4xx_and_a_message(request: Request) -> None:
    _assert_answered(request)


@FAST
@given(
    st.sampled_from(["batch", "track", "page", "identify", "group"]),
    st.binary(max_size=300) | _json.map(orjson.dumps),
    st.none() | st.text(max_size=12),
    st.none() | st.text(max_size=30),
)
def test_ingest_answers_arbitrary_bodies_and_headers(
    endpoint: Any, body: bytes, encoding: str | None, auth: str | None
) -> None:
    _assert_answered(Request(endpoint, body, encoding, auth))


@FAST
@given(st.lists(st.integers(0, 10_000), min_size=2, max_size=12), _hostile_values, st.data())
def test_a_poison_record_never_blocks_the_valid_ones_behind_it(
    seeds: list[int], poison: bytes, data: st.DataObject
) -> None:
    valid = [
        orjson.dumps({**valid_event(random.Random(s)), "messageId": f"v{i}"})
        for i, s in enumerate(seeds)
    ]
    at = data.draw(st.integers(0, len(valid)))
    values = [*valid[:at], poison, *valid[at:]]
    result = intake_batch([_record(v, i) for i, v in enumerate(values)], partitions=1, now=NOW)
    forwarded = [e.mid for e in result.forward.get(0, [])]
    expected = [f"v{i}" for i in range(len(valid))]
    if result.dead:
        assert forwarded == expected
        assert [letter.offset for _, letter in result.dead] == [at]
    else:  # the "poison" happened to be a valid message: forwarded in its place
        assert forwarded[:at] + forwarded[at + 1 :] == expected


# --- Crashes the fuzzing found, kept as explicit cases. ---

_TRACK = b'"type":"track","anonymousId":"a","event":"x"'


@pytest.mark.parametrize(
    "stamp",
    ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"],
)
@pytest.mark.parametrize("id_field", ["messageId", "message_id"])
def test_a_timestamp_that_overflows_once_in_utc_is_dead_lettered(stamp: str, id_field: str) -> None:
    # datetime.astimezone raised OverflowError out of the model validator.
    value = b"{" + _TRACK + f',"{id_field}":"m","timestamp":"{stamp}"'.encode() + b"}"
    decoded = decode_person_event(value)
    assert isinstance(decoded, Rejection)
    assert decoded.reason == "invalid_timestamp"
    assert _fast_path(value) is None  # the fast path leaves the edge years to the models
    slow = decode_event(value)
    assert isinstance(slow, Rejection) and slow.reason == "invalid_timestamp"


def test_a_crm_account_updated_out_of_range_is_rejected() -> None:
    value = b'{"account_id":"a","name":"n","updated_at":"0001-01-01T00:00:00+01:00"}'
    decoded = decode_crm_account(value)
    assert isinstance(decoded, Rejection)
    assert decoded.reason == "invalid_value" and "out of range" in decoded.message


def test_edge_years_that_fit_in_utc_still_decode() -> None:
    value = b"{" + _TRACK + b',"messageId":"m","timestamp":"9999-12-31T23:59:59Z"}'
    decoded = decode_person_event(value)
    assert not isinstance(decoded, Rejection)
    slow = decode_event(value)
    assert not isinstance(slow, Rejection) and decoded == normalize(slow)


_DEEP = b"[" * 300 + b"]" * 300  # orjson reads 1024 levels but writes only 255


@pytest.mark.parametrize(
    ("endpoint", "body"),
    [
        ("batch", b'{"writeKey":"%s","batch":[{"properties":%s}]}' % (WRITE_KEY.encode(), _DEEP)),
        ("track", b'{"writeKey":"%s","properties":%s}' % (WRITE_KEY.encode(), _DEEP)),
        ("track", b'{"writeKey":"%s","type":%s}' % (WRITE_KEY.encode(), _DEEP)),
    ],
)
def test_ingest_refuses_a_message_nested_too_deeply_to_forward(endpoint: Any, body: bytes) -> None:
    # orjson.dumps raised "Recursion limit reached" out of ingest_request (a 500).
    answer = handle(Request(endpoint, body, None, None))
    assert isinstance(answer, Refused)
    assert answer.status == 400
    assert "nest" in answer.message


@pytest.mark.parametrize("depth", [1025, 10_000])
def test_deep_nesting_past_the_parsers_limit_is_dead_lettered_as_invalid_json(depth: int) -> None:
    value = b"[" * depth + b"]" * depth
    decoded = decode_person_event(value)
    assert isinstance(decoded, Rejection) and decoded.reason == "invalid_json"
    answer = handle(
        Request("batch", value, None, f"Basic {base64.b64encode(b'fuzz-key:').decode()}")
    )
    assert isinstance(answer, Refused) and answer.status == 400


ERASURE = "leadstream.erasure"

_erasure_docs = st.fixed_dictionaries(
    {},
    optional={
        "request_id": _field_values,
        "email": st.one_of(st.emails(), _field_values),
        "user_id": _field_values,
        "reason": _field_values,
        "requested_at": st.one_of(st.datetimes().map(lambda d: d.isoformat()), _field_values),
        "extra": _field_values,
    },
).map(lambda doc: orjson.dumps(doc, option=orjson.OPT_NON_STR_KEYS, default=str))


@FAST
@given(st.one_of(st.binary(max_size=300), _erasure_docs))
def test_intake_answers_every_erasure_request_with_a_forget_or_a_dead_letter(value: bytes) -> None:
    result = intake_batch(
        [_record(value, 7, ERASURE)], partitions=4, now=NOW, erasure_topic=ERASURE
    )
    forgets = sum(len(v) for v in result.forgets.values())
    assert forgets + len(result.dead) == 1
    if result.dead:
        _, letter = result.dead[0]
        assert letter.reason in REASONS
        assert letter.message
        assert letter.offset == 7 and letter.source_topic == ERASURE
        assert encode(letter)
