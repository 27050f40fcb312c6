"""`python -m loadtest.fuzz`: a seeded corpus of hostile input through every decoder.

Random bytes, invalid UTF-8, deep nesting, strings and arrays around the 64 KiB limit,
NaN and infinities, wrong types in every field, dates out of range and duplicated keys,
run through the intake (`engagement.raw`), the `sfa.feedback` and `crm.accounts` decoders
and the Segment ingest's request handling. Prints cases/s, outcomes and crashes (which
should be none); `--json` for the figures. tests/unit/test_fuzz.py drives the same
generators from hypothesis.
"""

from __future__ import annotations

import argparse
import gzip
import random
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import orjson

from streams.codec import MAX_EVENT_BYTES, Rejection, decode_crm_account, decode_sales_feedback
from streams.ingest import Accepted, Endpoint, WriteKeys, ingest_request
from streams.intake import RawRecord, intake_batch

__all__ = [
    "INGEST_MAX_BODY_BYTES",
    "WRITE_KEY",
    "Request",
    "handle",
    "hostile_account",
    "hostile_event",
    "hostile_feedback",
    "hostile_request",
    "main",
    "run",
    "valid_event",
]

NOW: Final = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
WRITE_KEY: Final = "fuzz-key"
INGEST_MAX_BODY_BYTES: Final = 512 * 1024  # the ingest's default limit
_KEYS: Final = WriteKeys([WRITE_KEY])

#: Values of every JSON type and then some: each field of a message is tried with these.
_ODD: Final[tuple[bytes, ...]] = (
    b"null",
    b"true",
    b"0",
    b"-1",
    b"1.5",
    b"1e400",
    b"-1e400",
    b"18446744073709551616",
    b"NaN",
    b"Infinity",
    b"-Infinity",
    b'""',
    b'" "',
    b'"\\u0000"',
    b'"\\ud800"',
    b"[]",
    b"{}",
    b'[1,"a",null]',
    b'{"name":"Acme"}',
    b'"' + b"x" * 300 + b'"',
    b'"\xc3\xa9t\xc3\xa9"',
)
_DATES: Final[tuple[str, ...]] = (
    "0000-01-01T00:00:00Z",
    "0001-01-01T00:00:00+01:00",
    "0001-01-01T00:00:00Z",
    "9999-12-31T23:59:59-01:00",
    "9999-12-31T23:59:59Z",
    "99999-01-01T00:00:00Z",
    "-0001-01-01T00:00:00Z",
    "2026-02-30T00:00:00Z",
    "2026-11-20T24:00:00Z",
    "2026-11-20T09:00:00+25:00",
    "2026-11-20",
    "1e20",
    "",
)
_EPOCHS: Final[tuple[bytes, ...]] = (
    b"0",
    b"-62135596801",
    b"253402300800",
    b"1e20",
    b"99999999999999999999999",
    b"-9223372036854775809",
)
_INVALID_UTF8: Final[tuple[bytes, ...]] = (
    b"\xff",
    b"\xc3\x28",
    b"\xed\xa0\x80",  # an encoded surrogate
    b"\xf4\x90\x80\x80",  # past U+10FFFF
    b"\xc0\xaf",  # overlong
    b"\xe2\x82",  # truncated
)
_DEPTHS: Final = (200, 254, 256, 1023, 1025, 10_000)
_EVENT_FIELDS: Final = {
    "track": ("type", "messageId", "anonymousId", "userId", "timestamp", "event", "properties"),
    "page": ("type", "messageId", "anonymousId", "userId", "timestamp", "name", "properties"),
    "identify": ("type", "messageId", "anonymousId", "userId", "timestamp", "traits"),
    "group": ("type", "messageId", "anonymousId", "userId", "timestamp", "groupId", "traits"),
}
_EXTRA_FIELDS: Final = ("context", "message_id", "anonymous_id", "user_id", "group_id")


def valid_event(rng: random.Random) -> dict[str, Any]:
    """One well-formed Segment message of any type, small and realistic."""
    kind = rng.choice(("track", "page", "identify", "group"))
    doc: dict[str, Any] = {
        "type": kind,
        "messageId": f"m-{rng.getrandbits(48):x}",
        "anonymousId": f"anon-{rng.randrange(1000)}",
        "timestamp": "2026-11-20T09:00:00.123Z",
        "context": {"campaign": {"source": "google", "name": "q4"}},
    }
    if rng.random() < 0.3:
        doc["userId"] = f"user-{rng.randrange(1000)}"
    if kind == "track":
        doc["event"] = rng.choice(("Whitepaper Downloaded", "Demo Requested"))
        doc["properties"] = {"asset": "wp-1"}
    elif kind == "page":
        doc["name"] = "Pricing"
        doc["properties"] = {"path": "/pricing"}
    elif kind == "identify":
        doc["traits"] = {"email": "a@example.com", "employees": 250, "title": "CEO"}
    else:
        doc["groupId"] = "acct-1"
        doc["traits"] = {"name": "Acme", "employees": "1,200"}
    return doc


def _feedback(rng: random.Random) -> dict[str, Any]:
    status = rng.choice(("accepted", "rejected", "contacted", "opportunity", "won", "lost"))
    doc: dict[str, Any] = {
        "feedback_id": f"f-{rng.getrandbits(32):x}",
        "lead_id": f"lead-{rng.randrange(1000)}",
        "rep_id": "rep-1",
        "status": status,
        "occurred_at": "2026-11-20T09:00:00Z",
    }
    if status == "rejected":
        doc["reason"] = "other"
        doc["reason_text"] = "already a customer"
    if status in ("opportunity", "won"):
        doc["amount"] = 12_000.5
        doc["currency"] = "USD"
    return doc


def _account(rng: random.Random) -> dict[str, Any]:
    return {
        "account_id": f"001{rng.getrandbits(32):x}",
        "name": "Acme Corp",
        "domains": ["acme.example", "www.acme.example"],
        "employees": 1200,
        "industry": "Software",
        "country": "US",
        "region": "West",
        "owner_rep": "rep-1",
        "updated_at": "2026-11-20T09:00:00Z",
    }


def _object(fields: list[tuple[str, bytes]]) -> bytes:
    """A JSON object from raw member texts: keys may repeat, values may be non-standard."""
    return b"{" + b",".join(orjson.dumps(k) + b":" + v for k, v in fields) + b"}"


def _nested(depth: int, rng: random.Random) -> bytes:
    if rng.random() < 0.5:
        return b"[" * depth + b"]" * depth
    return b'{"a":' * depth + b"null" + b"}" * depth


def _huge(rng: random.Random) -> bytes:
    """A string or array that puts the message just under, at or over the 64 KiB limit."""
    size = MAX_EVENT_BYTES + rng.choice((-600, -300, -1, 0, 1, 300, 6000, 1_000_000))
    size = max(size, 1)
    if rng.random() < 0.5:
        return b'"' + b"x" * size + b'"'
    return b"[" + b",".join([b"1"] * (size // 2)) + b"]"


def _mutate(rng: random.Random, doc: dict[str, Any], fields: tuple[str, ...]) -> tuple[str, bytes]:
    """One hostile variant of a well-formed document: (category, raw bytes)."""
    members = [(k, orjson.dumps(v)) for k, v in doc.items()]
    category = rng.choice(
        (
            "random_bytes",
            "invalid_utf8",
            "deep_nesting",
            "huge",
            "nan_infinity",
            "wrong_type",
            "bad_date",
            "duplicate_keys",
            "truncated",
            "valid",
        )
    )
    field = rng.choice(fields)

    def put(value: bytes) -> None:
        nonlocal members
        members = [(k, v) for k, v in members if k != field] + [(field, value)]

    if category == "random_bytes":
        return category, rng.randbytes(rng.choice((0, 1, 2, 7, 64, 4096)))
    if category == "invalid_utf8":
        text = orjson.dumps(doc)
        cut = rng.randrange(len(text) + 1)
        return category, text[:cut] + rng.choice(_INVALID_UTF8) + text[cut:]
    if category == "deep_nesting":
        nest = _nested(rng.choice(_DEPTHS), rng)
        if rng.random() < 0.3:
            return category, nest
        put(nest)
    elif category == "huge":
        put(_huge(rng))
    elif category == "nan_infinity":
        put(rng.choice((b"NaN", b"Infinity", b"-Infinity", b'{"x":NaN}', b"[Infinity]")))
    elif category == "wrong_type":
        put(rng.choice(_ODD))
    elif category == "bad_date":
        date = rng.choice(_DATES)
        value = orjson.dumps(date) if rng.random() < 0.7 else rng.choice(_EPOCHS)
        stamp = next((k for k in fields if k in ("timestamp", "occurred_at", "updated_at")), field)
        members = [(k, v) for k, v in members if k != stamp] + [(stamp, value)]
    elif category == "duplicate_keys":
        members.append((field, rng.choice(_ODD)))
    elif category == "truncated":
        text = _object(members)
        return category, text[: rng.randrange(len(text))]
    return category, _object(members)


def hostile_event(rng: random.Random) -> tuple[str, bytes]:
    """A record value for `engagement.raw`, mostly broken: (category, value)."""
    doc = valid_event(rng)
    fields = _EVENT_FIELDS[doc["type"]] + _EXTRA_FIELDS
    return _mutate(rng, doc, fields)


def hostile_feedback(rng: random.Random) -> tuple[str, bytes]:
    """A record value for `sfa.feedback`, mostly broken: (category, value)."""
    doc = _feedback(rng)
    fields = (*doc, "amount", "currency", "reason", "reason_text", "extra")
    return _mutate(rng, doc, fields)


def hostile_account(rng: random.Random) -> tuple[str, bytes]:
    """A record value for `crm.accounts`, mostly broken: (category, value)."""
    doc = _account(rng)
    return _mutate(rng, doc, (*doc, "extra"))


@dataclass(frozen=True, slots=True)
class Request:
    """The parts of an HTTP request the Segment ingest reads."""

    endpoint: Endpoint
    body: bytes
    content_encoding: str | None
    authorization: str | None


_AUTH: Final = (
    None,
    "Basic ZnV6ei1rZXk6",  # fuzz-key:
    "Basic ZnV6ei1rZXk=",  # fuzz-key, no colon
    "Basic d3Jvbmc6",  # wrong:
    "Basic !!!",
    "Basic /w==",  # \xff: not UTF-8
    "Bearer fuzz-key",
    "",
    "Basic",
)


def hostile_request(rng: random.Random) -> Request:
    """A Tracking API request with a hostile body, headers or both."""
    endpoint: Endpoint = rng.choice(("batch", "batch", "track", "page", "identify", "group"))
    if endpoint == "batch":
        _, message = hostile_event(rng)
        messages = [orjson.dumps(valid_event(rng)) for _ in range(rng.randrange(3))]
        messages.insert(rng.randrange(len(messages) + 1), message)
        members = [(b"batch", b"[" + b",".join(messages) + b"]")]
        if rng.random() < 0.2:
            members.append((b"context", rng.choice((*_ODD, b'{"ip":"1.2.3.4"}'))))
    else:
        _, message = hostile_event(rng)
        members = []
    if rng.random() < 0.9:
        members.append((b"writeKey", b'"fuzz-key"' if rng.random() < 0.8 else rng.choice(_ODD)))
    if endpoint == "batch":
        body = b"{" + b",".join(b'"' + k + b'":' + v for k, v in members) + b"}"
    elif message.startswith(b"{") and message.endswith(b"}") and len(message) > 2:
        extra = b",".join(b'"' + k + b'":' + v for k, v in members)
        body = message[:-1] + (b"," + extra if extra else b"") + b"}"
    else:
        body = message
    encoding = rng.choice((None, None, None, "gzip", "identity", "br", "GZIP ", "x-gzip"))
    if encoding is not None and "gzip" in encoding.lower():
        body = gzip.compress(body, compresslevel=1)
        if rng.random() < 0.2:
            body = body[: rng.randrange(len(body) + 1)]
    auth = rng.choice(_AUTH) if rng.random() < 0.3 else rng.choice((None, "Basic ZnV6ei1rZXk6"))
    return Request(endpoint, body, encoding, auth)


def handle(request: Request) -> Accepted | Any:
    """The ingest's answer to `request` (Accepted, or Refused with a status)."""
    return ingest_request(
        endpoint=request.endpoint,
        body=request.body,
        content_encoding=request.content_encoding,
        authorization=request.authorization,
        keys=_KEYS,
        max_body_bytes=INGEST_MAX_BODY_BYTES,
        now=NOW,
    )


def _raw(value: bytes, *, topic: str, offset: int) -> RawRecord:
    return RawRecord(value=value, key=None, topic=topic, partition=0, offset=offset)


def _intake_outcome(value: bytes, offset: int) -> str:
    result = intake_batch(
        [_raw(value, topic="engagement.raw", offset=offset)], partitions=4, now=NOW
    )
    if result.dead:
        return f"dlq:{result.dead[0][1].reason}"
    return "forwarded"


def _feedback_outcome(value: bytes, offset: int) -> str:
    decoded = decode_sales_feedback(value)
    return f"rejected:{decoded.reason}" if isinstance(decoded, Rejection) else "valid"


def _account_outcome(value: bytes, offset: int) -> str:
    decoded = decode_crm_account(value)
    return f"rejected:{decoded.reason}" if isinstance(decoded, Rejection) else "valid"


def _ingest_outcome(request: Request) -> str:
    answer = handle(request)
    return "200" if isinstance(answer, Accepted) else str(answer.status)


_TARGETS: Final[
    tuple[
        tuple[str, Callable[[random.Random], tuple[str, bytes]], Callable[[bytes, int], str]], ...
    ]
] = (
    ("intake", hostile_event, _intake_outcome),
    ("feedback", hostile_feedback, _feedback_outcome),
    ("accounts", hostile_account, _account_outcome),
)


def run(*, cases: int, seed: int) -> dict[str, Any]:
    """Run `cases` hostile inputs (split evenly over the four targets); the figures."""
    rng = random.Random(seed)
    outcomes: dict[str, Counter[str]] = {
        name: Counter() for name in ("intake", "feedback", "accounts", "ingest")
    }
    categories: Counter[str] = Counter()
    crashes: list[dict[str, str]] = []
    crash_count = 0
    elapsed_s = 0.0
    for i in range(cases):
        target = i % 4
        try:
            if target == 3:
                request = hostile_request(rng)
                started = time.perf_counter()
                outcome = _ingest_outcome(request)
                elapsed_s += time.perf_counter() - started
                outcomes["ingest"][outcome] += 1
                continue
            name, make, decide = _TARGETS[target]
            category, value = make(rng)
            categories[category] += 1
            started = time.perf_counter()
            outcomes[name][decide(value, i)] += 1
            elapsed_s += time.perf_counter() - started
        except Exception as exc:  # the point of the run: count them, keep a few to replay
            crash_count += 1
            if len(crashes) < 10:
                crashes.append({"case": str(i), "error": f"{type(exc).__name__}: {exc}"})
    return {
        "cases": cases,
        "seed": seed,
        "decode_s": round(elapsed_s, 3),
        "cases_per_s": round(cases / elapsed_s) if elapsed_s else None,
        "categories": dict(sorted(categories.items())),
        "outcomes": {k: dict(sorted(v.items())) for k, v in outcomes.items()},
        "crashes": crash_count,
        "crash_examples": crashes,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m loadtest.fuzz", description=__doc__)
    p.add_argument("--cases", type=int, default=100_000)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = p.parse_args(argv)
    started = time.perf_counter()
    figures = run(cases=args.cases, seed=args.seed)
    figures["wall_s"] = round(time.perf_counter() - started, 1)
    if args.json:
        sys.stdout.write(orjson.dumps(figures, option=orjson.OPT_INDENT_2).decode() + "\n")
        return 1 if figures["crashes"] else 0
    print(
        f"{figures['cases']} cases (seed {figures['seed']}): {figures['cases_per_s']} cases/s "
        f"in the decoders ({figures['wall_s']} s with generation); crashes: {figures['crashes']}"
    )
    for target, counts in figures["outcomes"].items():
        shown = ", ".join(f"{k} {v}" for k, v in counts.items())
        print(f"  {target:9} {shown}")
    for crash in figures["crash_examples"]:
        print(f"  crash at case {crash['case']}: {crash['error']}")
    return 1 if figures["crashes"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
