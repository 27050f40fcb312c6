"""Segment HTTP ingest, the pure part: write keys, bodies (gzip, limits), batch and single calls."""

from __future__ import annotations

import base64
import gzip
import tracemalloc
import zlib
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from pydantic import ValidationError

from streams.ingest import (
    EXPANSION_LIMIT,
    Accepted,
    Endpoint,
    RateLimiter,
    Refused,
    WriteKeys,
    basic_auth_user,
    decode_body,
    ingest_request,
)
from streams.settings import Settings

NOW = datetime(2026, 12, 1, 12, 0, 0, 123456, tzinfo=UTC)
KEYS = WriteKeys(["wk_live_1", "wk_live_2"])
LIMIT = 64 * 1024


def basic(user: str, password: str = "") -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def message(**overrides: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "type": "track",
        "messageId": "m-1",
        "anonymousId": "anon-1",
        "timestamp": "2026-11-20T09:00:00.000Z",
        "event": "Whitepaper Downloaded",
        "properties": {},
    }
    doc.update(overrides)
    return {k: v for k, v in doc.items() if v is not ...}


def call(
    endpoint: Endpoint,
    body: bytes | dict[str, Any] | list[Any],
    *,
    authorization: str | None = basic("wk_live_1"),
    encoding: str | None = None,
    limit: int = LIMIT,
) -> Accepted | Refused:
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    return ingest_request(
        endpoint=endpoint,
        body=raw,
        content_encoding=encoding,
        authorization=authorization,
        keys=KEYS,
        max_body_bytes=limit,
        now=NOW,
    )


def accepted(result: Accepted | Refused) -> tuple[list[bytes | None], list[dict[str, Any]]]:
    assert isinstance(result, Accepted), result
    return [k for k, _ in result.records], [orjson.loads(v) for _, v in result.records]


def refused(result: Accepted | Refused) -> tuple[int, str]:
    assert isinstance(result, Refused), result
    return result.status, result.message


# --- write keys -------------------------------------------------------------------------------


def test_every_configured_key_is_accepted_and_nothing_else() -> None:
    assert KEYS.accepts("wk_live_1")
    assert KEYS.accepts("wk_live_2")
    for other in ("", "wk_live_", "wk_live_12", "WK_LIVE_1", "wk_live_1 "):
        assert not KEYS.accepts(other)
    assert not WriteKeys([])
    assert not WriteKeys([]).accepts("")


@pytest.mark.parametrize(
    ("header", "user"),
    [
        (basic("wk_live_1"), "wk_live_1"),
        (basic("wk_live_1", "ignored"), "wk_live_1"),
        ("basic " + base64.b64encode(b"wk_live_1").decode(), "wk_live_1"),  # no colon at all
        ("Bearer eyJhbGciOi", None),
        ("Basic", None),
        ("Basic not*base64", None),
        ("Basic " + base64.b64encode(b"\xff\xfe:").decode(), None),
    ],
)
def test_basic_auth_user(header: str, user: str | None) -> None:
    assert basic_auth_user(header) == user


def test_a_valid_basic_key_is_accepted() -> None:
    assert isinstance(call("track", message()), Accepted)


def test_a_wrong_basic_key_is_401_even_when_the_body_holds_a_good_one() -> None:
    result = call("track", message(writeKey="wk_live_2"), authorization=basic("wk_nope"))
    assert refused(result) == (401, "the write key is not valid")


def test_a_header_that_is_not_basic_auth_is_401() -> None:
    status, text = refused(call("track", message(), authorization="Bearer abc"))
    assert status == 401
    assert "HTTP Basic" in text


def test_without_a_header_the_body_write_key_authenticates() -> None:
    assert isinstance(call("track", message(writeKey="wk_live_2"), authorization=None), Accepted)
    batch = {"batch": [message()], "writeKey": "wk_live_1"}
    assert isinstance(call("batch", batch, authorization=None), Accepted)
    assert refused(call("track", message(writeKey="bad"), authorization=None)) == (
        401,
        "the write key is not valid",
    )
    assert refused(call("track", message(writeKey=7), authorization=None))[0] == 401


def test_no_key_anywhere_is_401_saying_how_to_send_one() -> None:
    status, text = refused(call("track", message(), authorization=None))
    assert status == 401
    assert text.startswith("no write key: use HTTP Basic auth with the write key")


def test_the_write_key_never_reaches_the_topic() -> None:
    _, [single] = accepted(call("track", message(writeKey="wk_live_1")))
    _, [item] = accepted(
        call("batch", {"batch": [message(writeKey="wk_live_1")], "writeKey": "wk_live_1"})
    )
    assert "writeKey" not in single
    assert "writeKey" not in item


def test_refusals_are_json_the_segment_sdks_read() -> None:
    result = call("track", message(), authorization=basic("nope"))
    assert isinstance(result, Refused)
    assert orjson.loads(result.body()) == {
        "success": False,
        "code": "unauthorized",
        "message": "the write key is not valid",
    }


# --- single calls -----------------------------------------------------------------------------


@pytest.mark.parametrize("endpoint", ["track", "page", "identify", "group"])
def test_a_single_call_takes_its_type_from_the_path(endpoint: Endpoint) -> None:
    keys, [doc] = accepted(call(endpoint, message(type=...)))
    assert doc["type"] == endpoint
    assert keys == [b"anon-1"]


def test_a_message_the_ingest_fails_to_read_is_forwarded_for_the_dlq(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A bug in reading one message (bad input is a rejection, not an exception) must not
    answer 500: the sender would retry the whole batch, and fail again, for ever. The
    message goes on unkeyed, for the intake to dead-letter; the others as always."""
    from streams import ingest

    real = ingest.decode_person_event

    def flaky(value: bytes, **kwargs: Any) -> Any:
        if b"m-bad" in value:
            raise ValueError("boom")
        return real(value, **kwargs)

    monkeypatch.setattr(ingest, "decode_person_event", flaky)
    batch = {"batch": [message(messageId="m-1"), message(messageId="m-bad"), message()]}
    result = call("batch", batch)
    keys, docs = accepted(result)
    assert [d["messageId"] for d in docs] == ["m-1", "m-bad", "m-1"]
    assert keys == [b"anon-1", None, b"anon-1"]
    assert isinstance(result, Accepted) and result.invalid == 1
    assert "ingest: reading a message failed" in caplog.text


def test_a_type_contradicting_the_path_is_400() -> None:
    assert refused(call("page", message(type="track"))) == (
        400,
        'type "track" does not match the endpoint /v1/page',
    )
    assert refused(call("page", message(type=None)))[0] == 400


def test_received_at_is_stamped_by_the_server_and_other_fields_are_kept() -> None:
    sent = message(receivedAt="1999-01-01T00:00:00Z", channel="x")
    _, [doc] = accepted(call("track", sent))
    assert doc == {**sent, "receivedAt": "2026-12-01T12:00:00.123Z"}


def test_a_device_clock_is_corrected_as_segment_does() -> None:
    """timestamp = receivedAt - (sentAt - timestamp), the device's own kept as
    originalTimestamp: the event happened 1 s before the device sent it, whatever its
    clock said (here: a year ahead, and 11 days behind)."""
    ahead = message(timestamp="2027-12-01T11:59:59.000Z", sentAt="2027-12-01T12:00:00Z")
    _, [doc] = accepted(call("track", ahead))
    assert (doc["timestamp"], doc["originalTimestamp"]) == (
        "2026-12-01T11:59:59.123Z",
        "2027-12-01T11:59:59.000Z",
    )
    assert (
        doc["sentAt"] == "2027-12-01T12:00:00Z" and doc["receivedAt"] == "2026-12-01T12:00:00.123Z"
    )
    behind = message(timestamp="2026-11-20T08:59:59+09:00", sentAt="2026-11-20T09:00:00+09:00")
    _, [doc] = accepted(call("track", behind))
    assert doc["timestamp"] == "2026-12-01T11:59:59.123Z"


def test_a_batch_sent_at_corrects_each_message_that_has_none_of_its_own() -> None:
    batch = {
        "sentAt": "2026-12-01T13:00:00Z",  # an hour ahead
        "batch": [
            message(messageId="a", timestamp="2026-12-01T12:59:50Z"),
            message(messageId="b", timestamp="2026-12-01T12:59:50Z", sentAt="2026-12-01T12:59:55Z"),
        ],
    }
    _, docs = accepted(call("batch", batch))
    assert [d["timestamp"] for d in docs] == [
        "2026-12-01T11:59:50.123Z",
        "2026-12-01T11:59:55.123Z",
    ]


@pytest.mark.parametrize(
    "fields",
    [
        pytest.param({}, id="no-sentAt"),
        pytest.param({"sentAt": "yesterday"}, id="sentAt-unreadable"),
        pytest.param({"sentAt": 1700000000}, id="sentAt-a-number"),
        pytest.param(
            {"sentAt": "2026-11-20T09:00:05Z", "timestamp": "2026-11-20"}, id="timestamp-unreadable"
        ),
        pytest.param(
            {"sentAt": "2026-11-20T09:00:05Z", "originalTimestamp": "2026-11-20T08:00:00Z"},
            id="corrected-already",
        ),
        pytest.param(
            {"sentAt": "9999-12-31T23:00:00Z", "timestamp": "0002-01-01T00:00:00Z"},
            id="past-the-calendar",
        ),
    ],
)
def test_a_timestamp_is_kept_as_sent_when_it_cannot_be_corrected(fields: dict[str, Any]) -> None:
    sent = message(**fields)
    _, [doc] = accepted(call("track", sent))
    assert doc["timestamp"] == sent["timestamp"]
    assert doc.get("originalTimestamp") == fields.get("originalTimestamp")


def test_records_are_keyed_by_anonymous_id_else_user_id() -> None:
    keys, _ = accepted(
        call(
            "batch",
            {
                "batch": [
                    message(messageId="a"),
                    message(messageId="b", anonymousId="anon-2", userId="crm-2"),
                    message(messageId="c", anonymousId=..., userId="crm-3"),
                ]
            },
        )
    )
    assert keys == [b"anon-1", b"anon-2", b"crm-3"]


# --- batches ----------------------------------------------------------------------------------


def test_batch_context_is_merged_into_each_message_and_the_message_wins() -> None:
    batch = {
        "batch": [
            message(messageId="a"),
            message(messageId="b", context={"ip": "10.0.0.2", "locale": "de-DE"}),
            message(messageId="c", context="not an object"),
        ],
        "context": {"ip": "10.0.0.1", "library": {"name": "analytics.js"}},
    }
    _, docs = accepted(call("batch", batch))
    assert [d["context"] for d in docs] == [
        {"ip": "10.0.0.1", "library": {"name": "analytics.js"}},
        {"ip": "10.0.0.2", "locale": "de-DE", "library": {"name": "analytics.js"}},
        "not an object",  # left as sent: the intake dead-letters it as wrong_type
    ]
    assert all(d["receivedAt"] == "2026-12-01T12:00:00.123Z" for d in docs)


def test_invalid_messages_in_a_batch_are_forwarded_and_counted() -> None:
    batch = {
        "batch": [
            message(messageId="ok-1"),
            message(messageId="no-one", anonymousId=...),
            "not an object",
            message(messageId="ok-2", timestamp=1763629200),
            message(messageId="ok-3", anonymousId="anon-3"),
        ]
    }
    result = call("batch", batch)
    keys, docs = accepted(result)
    assert isinstance(result, Accepted)
    assert result.invalid == 3
    assert keys == [b"anon-1", None, None, None, b"anon-3"]
    assert docs[2] == "not an object"  # verbatim: the intake says not_object
    assert [d["messageId"] for d in docs if isinstance(d, dict)] == [
        "ok-1",
        "no-one",
        "ok-2",
        "ok-3",
    ]


def test_an_empty_batch_is_accepted_with_nothing_to_produce() -> None:
    assert accepted(call("batch", {"batch": []})) == ([], [])


@pytest.mark.parametrize(
    ("endpoint", "body", "text"),
    [
        ("batch", b'{"batch": [', "the body is not valid JSON: "),
        ("track", b"\xff\xfe", "the body is not valid JSON: "),
        ("batch", b"", "the body is empty; send a JSON object"),
        ("track", b"  \n", "the body is empty; send a JSON object"),
        ("batch", b"[1, 2]", "the body must be a JSON object"),
        ("track", b'"text"', "the body must be a JSON object"),
        ("batch", b'{"messages": []}', "batch: field required (a list of messages)"),
        ("batch", b'{"batch": {"type": "track"}}', "batch must be a list of messages"),
        ("batch", b'{"batch": [], "context": []}', "context must be an object"),
    ],
)
def test_malformed_bodies_are_400_with_a_clear_message(
    endpoint: Endpoint, body: bytes, text: str
) -> None:
    status, message_ = refused(call(endpoint, body))
    assert status == 400
    assert message_.startswith(text)


def test_a_batch_whose_context_would_multiply_its_size_is_413() -> None:
    context = {"blob": "x" * 8000}
    small = {"batch": [message(messageId=str(i)) for i in range(20)], "context": context}
    assert isinstance(call("batch", small), Accepted)
    many = {"batch": [{} for _ in range(40)], "context": context}
    assert len(orjson.dumps(many)) < LIMIT
    status, text = refused(call("batch", many))
    assert status == 413
    assert f"over {LIMIT * EXPANSION_LIMIT} bytes with the batch context merged" in text


# --- bodies: gzip and limits ------------------------------------------------------------------


def test_a_gzip_body_is_read_as_the_plain_one() -> None:
    body = orjson.dumps({"batch": [message(messageId="a"), message(messageId="b")]})
    plain = call("batch", body)
    for encoding in ("gzip", "GZIP", "x-gzip"):
        assert call("batch", gzip.compress(body), encoding=encoding) == plain
    assert call("batch", body, encoding="identity") == plain


def test_concatenated_gzip_members_are_one_body() -> None:
    body = orjson.dumps(message())
    half = len(body) // 2
    joined = gzip.compress(body[:half]) + gzip.compress(body[half:])
    assert decode_body(joined, content_encoding="gzip", max_bytes=LIMIT) == body


@pytest.mark.parametrize(
    ("body", "text"),
    [
        (b"not gzip at all", "the body is not valid gzip"),
        (gzip.compress(b'{"type": "track"}')[:-12], "the gzip body is truncated"),
        (gzip.compress(b"{}") + b"trailing junk", "the body is not valid gzip"),
        (b"", "the gzip body is empty"),
    ],
)
def test_bad_gzip_is_400(body: bytes, text: str) -> None:
    status, message_ = refused(call("track", body, encoding="gzip"))
    assert status == 400
    assert message_.startswith(text)


def test_an_unsupported_encoding_is_415() -> None:
    status, text = refused(call("track", zlib.compress(b"{}"), encoding="deflate"))
    assert status == 415
    assert text == "Content-Encoding 'deflate' is not supported; send gzip or no encoding"


def test_a_body_over_the_limit_is_413_compressed_or_not() -> None:
    big = orjson.dumps({"batch": [message(properties={"pad": "x" * (LIMIT // 2)})] * 3})
    assert refused(call("batch", big)) == (
        413,
        f"the body is {len(big)} bytes; the limit is {LIMIT}",
    )
    random_ish = base64.b64encode(bytes(range(256)) * (LIMIT // 128))
    packed = gzip.compress(random_ish, compresslevel=0)  # stored: no smaller than the input
    assert refused(call("batch", packed, encoding="gzip"))[0] == 413
    status, text = refused(call("batch", gzip.compress(big), encoding="gzip"))
    assert (status, text) == (413, f"the body is over {LIMIT} bytes once decompressed")


def test_a_gzip_bomb_is_refused_without_inflating_it() -> None:
    deflater = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    chunk = bytes(1 << 20)
    bomb = b"".join(deflater.compress(chunk) for _ in range(200)) + deflater.flush()
    assert len(bomb) < LIMIT * 4  # 200 MiB of zeros in ~200 KiB
    tracemalloc.start()
    try:
        result = decode_body(bomb, content_encoding="gzip", max_bytes=len(bomb) + 1)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert isinstance(result, Refused)
    assert result.status == 413
    assert peak < 8 * len(bomb)  # not the 200 MiB the bomb inflates to


# --- settings ---------------------------------------------------------------------------------


def test_write_keys_come_comma_separated_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LEADSTREAM_WRITE_KEYS", " wk_a, wk_b,,wk_c ")
    settings = Settings()
    assert [k.get_secret_value() for k in settings.write_keys] == ["wk_a", "wk_b", "wk_c"]
    assert "wk_a" not in repr(settings)
    # A child process gets the keys themselves, not pydantic's '**********'.
    assert settings.to_env()["LEADSTREAM_WRITE_KEYS"] == "wk_a,wk_b,wk_c"
    monkeypatch.setenv("LEADSTREAM_WRITE_KEYS", settings.to_env()["LEADSTREAM_WRITE_KEYS"])
    assert Settings().write_keys == settings.write_keys


def test_no_write_keys_by_default_and_unusable_keys_are_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("LEADSTREAM_WRITE_KEYS", raising=False)
    assert Settings().write_keys == ()
    assert Settings().to_env()["LEADSTREAM_WRITE_KEYS"] == ""
    monkeypatch.setenv("LEADSTREAM_WRITE_KEYS", "user:password")
    with pytest.raises(ValidationError, match="may not contain ',', ':' or whitespace"):
        Settings()


# --- rate limit per write key -----------------------------------------------------------------


def test_a_key_may_send_its_burst_at_once_then_waits_for_the_refill() -> None:
    limiter = RateLimiter(rate_per_s=2.0, burst=3)
    assert [limiter.take("wk_live_1", 100.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.take("wk_live_1", 100.0) == pytest.approx(0.5)
    assert limiter.take("wk_live_1", 100.25) == pytest.approx(0.25)  # refilled by half a token
    assert limiter.take("wk_live_1", 100.5) == 0.0
    assert limiter.take("wk_live_1", 100.5) > 0


def test_the_bucket_refills_at_most_to_the_burst() -> None:
    limiter = RateLimiter(rate_per_s=10.0, burst=2)
    limiter.take("wk_live_1", 0.0)
    assert [limiter.take("wk_live_1", 3600.0) for _ in range(3)][:2] == [0.0, 0.0]
    assert limiter.take("wk_live_1", 3600.0) > 0


def test_each_key_has_its_own_bucket_and_a_clock_stepping_back_refills_nothing() -> None:
    limiter = RateLimiter(rate_per_s=1.0, burst=1)
    assert limiter.take("wk_live_1", 50.0) == 0.0
    assert limiter.take("wk_live_2", 50.0) == 0.0
    assert limiter.take("wk_live_1", 10.0) == pytest.approx(1.0)


@pytest.mark.parametrize(("rate", "burst"), [(0.0, 1), (-1.0, 5), (1.0, 0)])
def test_a_limiter_that_would_refuse_everything_is_refused(rate: float, burst: int) -> None:
    with pytest.raises(ValueError, match="positive"):
        RateLimiter(rate_per_s=rate, burst=burst)


def _limited(limiter: RateLimiter, *, at: datetime, **kwargs: Any) -> Accepted | Refused:
    return ingest_request(
        endpoint="track",
        body=orjson.dumps(kwargs.pop("body", message())),
        content_encoding=None,
        authorization=kwargs.pop("authorization", basic("wk_live_1")),
        keys=KEYS,
        max_body_bytes=LIMIT,
        now=at,
        limiter=limiter,
    )


def test_a_key_over_its_rate_is_429_with_retry_after_in_whole_seconds() -> None:
    limiter = RateLimiter(rate_per_s=0.25, burst=1)
    assert isinstance(_limited(limiter, at=NOW), Accepted)
    result = _limited(limiter, at=NOW)
    assert isinstance(result, Refused)
    assert (result.status, result.retry_after_s) == (429, 4)
    assert orjson.loads(result.body()) == {
        "success": False,
        "code": "rate_limited",
        "message": "too many requests for this write key; retry after the Retry-After seconds",
    }
    # the other key, and the body's writeKey path, are counted apart and alike
    assert isinstance(_limited(limiter, at=NOW, authorization=basic("wk_live_2")), Accepted)
    in_body = {"body": message(writeKey="wk_live_2"), "authorization": None}
    assert refused(_limited(limiter, at=NOW, **in_body))[0] == 429


def test_a_wrong_key_is_401_and_spends_nothing() -> None:
    limiter = RateLimiter(rate_per_s=1.0, burst=1)
    for _ in range(3):
        assert refused(_limited(limiter, at=NOW, authorization=basic("nope")))[0] == 401
    assert isinstance(_limited(limiter, at=NOW), Accepted)


def test_rate_limit_settings_have_defaults_and_refuse_nonsense() -> None:
    settings = Settings()
    assert (settings.ingest_rate_per_s, settings.ingest_burst) == (200.0, 1000)
    with pytest.raises(ValidationError):
        Settings(ingest_rate_per_s=0)
    with pytest.raises(ValidationError):
        Settings(ingest_burst=0)
