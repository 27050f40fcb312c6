"""`python -m loadtest.fuzz`: a seeded corpus of hostile input through every decoder.

Random bytes, invalid UTF-8, deep nesting, strings and arrays around the 64 KiB limit,
NaN and infinities, wrong types in every field, dates out of range and duplicated keys,
and well-formed messages with odd values inside `traits`, `context` and `properties`
(integers past 64 bits, digit strings of 5,000 digits, emails and phones of odd shapes,
10,000-character strings, objects where strings belong), run through the intake
(`engagement.raw`), the `sfa.feedback` and `crm.accounts` decoders and the Segment
ingest's request handling; first, every odd value at every place the normalization reads
(`odd_value_sweep`). What the intake forwards (and what the ingest accepts, through the
intake) goes on through the lead core as the worker runs it (`LeadStage`), with the CRM
accounts that decode in its account directory: the person-events records, the lead state
written and read back, every decision encoded. A crash is an exception, a
`processing_error` dead letter, an event the core sets aside as failed, anything that reads
back different, or an event the intake's fast path makes other than the models. Prints
cases/s, outcomes and crashes by kind with an example of each (which should be none);
`--json` for the figures. tests/unit/test_fuzz.py drives the same generators from
hypothesis.
"""

from __future__ import annotations

import argparse
import gzip
import logging
import random
import re
import sys
import time
import traceback
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, TypeVar

import orjson
from pydantic import BaseModel

from loadtest.harness import MODEL
from schemas.crm import CrmAccount
from schemas.internal import (
    FeedbackIn,
    Forget,
    LeadState,
    Link,
    MergeIn,
    MergeRequest,
    PersonEvent,
    PersonEventBatch,
    Unlink,
)
from streams import CORE
from streams.app import _records
from streams.codec import (
    MAX_EVENT_BYTES,
    Rejection,
    _fast_path,
    decode_batch,
    decode_crm_account,
    decode_event,
    decode_person_event,
    decode_rotation,
    decode_sales_feedback,
    decode_state,
    encode,
    encode_state,
)
from streams.identity import apply_person_batch
from streams.ingest import Accepted, Endpoint, WriteKeys, ingest_request
from streams.intake import IntakeResult, RawRecord, intake_batch
from streams.intake_service import forward_batches
from streams.lead_model import LeadModel, load_model
from streams.leads import Decision, Limits, apply_event, with_accounts
from streams.matching import AccountDirectory
from streams.normalize import _TRAIT_NAMES, normalize
from streams.routing import RoutingState
from streams.topics import Topics

__all__ = [
    "CATEGORIES",
    "INGEST_MAX_BODY_BYTES",
    "NOW",
    "WRITE_KEY",
    "Bug",
    "LeadStage",
    "Request",
    "check_account",
    "check_event",
    "check_feedback",
    "check_request",
    "handle",
    "hostile_account",
    "hostile_event",
    "hostile_feedback",
    "hostile_request",
    "main",
    "odd_value",
    "odd_value_sweep",
    "run",
    "valid_event",
]

_T = TypeVar("_T")

NOW: Final = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
WRITE_KEY: Final = "fuzz-key"
INGEST_MAX_BODY_BYTES: Final = 512 * 1024  # the ingest's default limit
_KEYS: Final = WriteKeys([WRITE_KEY])
_PARTITIONS: Final = 4

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


def _texts(*values: str) -> tuple[bytes, ...]:
    return tuple(orjson.dumps(v) for v in values)


# Odd values for the fields inside traits, context and properties, where the message around
# them is well-formed (JSON text, so numbers keep every digit and NaN can be written).
_BIG: Final = (2**63 - 1, 2**63, 2**64 - 1, 2**64, 2**70, -(2**63), -(2**63) - 1, 10**12 - 1)
_NUMBERS: Final = (
    *(str(n).encode() for n in _BIG),
    *(b"10000000000000", b"-250", b"-0", b"-0.0", b"1e308", b"-1e308"),
    *(b"1.7976931348623157e308", b"5e-324", b"999999999999.9", b"1e16", b"1E+2", b"0.5"),
    b"9" * 5000,  # a JSON number past Python's int conversion limit (4,300 digits)
)
_DIGITS: Final = _texts(
    "1" * 13,
    "18446744073709551616",  # 20 digits: 2**64
    "1180591620717411303424",  # 2**70, the head count of the incident
    "9" * 25,
    "7" * 5000,
    "1,2,3",
    "1,000,000,000,000",
    " 250 ",
    "0250",
    "-5",
    "+5",
    "1e3",
    "1_000",
    "12.5",
    "0x10",
    "²",  # str.isdigit, but not int()
    "①",
    "٣٤",  # Arabic-Indic: int() reads them
    "１２",
    "NaN",
    "Infinity",
)
_BLANK: Final = _texts(" ", "   ", "\t\n\r", "\u00a0", "\u3000", "\u200b", "\u2028", "\ufeff")
_LONG: Final = _texts(
    "x" * 10_000, "é" * 10_000, "😀" * 3000, " " * 10_000 + "a", "a" + " " * 10_000
)
_WORDS: Final = _texts(
    "株式会社テスト",
    "Ünïcødé",
    "😀",
    "\u202eevil",
    "e\u0301",
    "ß",  # upper() is two letters
    "ﬀ",
    "ı",
    "İ",
    "\x00",
    "\x7f",
    "<script>",
    "' OR 1=1 --",
    "%s%n{0}",
    "../../etc/passwd",
    "null",
    "true",
)
_EMAILS: Final = _texts(
    "@",
    "a@",
    "@b",
    "a@@b",
    "a@b@c",
    "user@例え.jp",
    "user@bücher.de",
    "ＵＳＥＲ@ＥＸＡＭＰＬＥ.ＣＯＭ",
    " A@B.COM ",
    "a@b.",
    "a@.",
    "a@b..c",
    '"q"@x.com',
    "+@gmail.com",
    ".@gmail.com",
    "a.b+tag@googlemail.com",
    "a@gmail.com.",
    "a@" + "b" * 300 + ".com",
    "a@xn--",
    "a@[127.0.0.1]",
    "jo@acme.example",
    "jo@ACME.example.",
)
_PHONES: Final = (
    *_texts("+", "++81", "0" * 40, "+81 (0)3-1234-5678 ext 9", "+1", "03-1234-5678"),
    *_texts("+999999999999999999999", "１２３", "tel:+81312345678", "+٨١٣١٢٣٤٥٦٧٨", "1" * 200),
    *(b"81312345678", b"1e20", b"-1", b"3.5"),
)
_COUNTRIES: Final = _texts("uk", "jp ", "XX", "ZZZ", "Ｊｐ", "日本", "ı", "ß", "ﬀ", "u\u0301s", "")
_URLS: Final = _texts(
    "http://[::1",
    "http://[",
    "http://]",
    "http://a:99999999",
    "//x",
    "://",
    "javascript:alert(1)",
    "http://exa mple.com/%zz",
    "/pricing?x=%ff",
    "http://user@[::1]:80/p",
    "\\\\server\\share",
    "data:,",
    "/pricing" + "/a" * 5000,
)
_ANSWERS: Final = _texts(  # purchase timeline and BANT answers
    "within 999 years",
    "999 weeks",
    "2099年度",
    "2099-12-31",
    "2026-02-30",
    "2026年2月30日",
    "13月",
    "Q4 2099",
    "H2",
    "下期",
    "来期",
    "3ヶ月以内",
    "more than 999 years",
    "next FY",
)
_CONTAINERS: Final = (
    b'{"name":{"name":"Acme"}}',
    b'["a@example.com"]',
    b"[[]]",
    b'{"":null}',
    b'{"first":"a","last":"b"}',
    b'{"name":18446744073709551616}',
)
#: Every odd value for a field inside traits, context or properties.
_ODD_VALUES: Final = (
    *_ODD,
    *_NUMBERS,
    *_DIGITS,
    *_BLANK,
    *_LONG,
    *_WORDS,
    *_EMAILS,
    *_PHONES,
    *_COUNTRIES,
    *_URLS,
    *_ANSWERS,
    *_CONTAINERS,
)
#: The odd values most likely to trouble a field, by its name (tried half of the time).
_ODD_FOR: Final[dict[str, tuple[bytes, ...]]] = {
    "email": _EMAILS,
    "phone": _PHONES,
    "employees": _NUMBERS + _DIGITS,
    "country": _COUNTRIES,
    "website": _URLS,
    "url": _URLS,
    "path": _URLS,
    "purchase_timeline": _ANSWERS,
    "purchaseTimeline": _ANSWERS,
    "budget": _ANSWERS + _NUMBERS,
    "authority": _ANSWERS,
    "need": _ANSWERS,
}
#: Segment's trait names the normalization reads (and so does the fuzz).
_TRAIT_KEYS: Final = tuple(_TRAIT_NAMES)
_PROPERTY_KEYS: Final = ("path", "url", "asset", "asset_id", "assetId", "title", "name")
_CONTEXT_PLACES: Final = (
    *(("context", "traits", k) for k in _TRAIT_KEYS),
    ("context", "traits", "company", "name"),
    ("context", "location", "country"),
    ("context", "campaign", "source"),
    ("context", "campaign", "name"),
)
_TRAIT_PLACES: Final = (*(("traits", k) for k in _TRAIT_KEYS), ("traits", "company", "name"))
_PROPERTY_PLACES: Final = tuple(("properties", k) for k in _PROPERTY_KEYS)

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
#: How `_mutate` breaks a message; "odd_values" keeps it well-formed.
CATEGORIES: Final = (
    "random_bytes",
    "invalid_utf8",
    "deep_nesting",
    "huge",
    "nan_infinity",
    "wrong_type",
    "bad_date",
    "duplicate_keys",
    "truncated",
    "odd_values",
    "valid",
)


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
    if rng.random() < 0.2:
        doc["context"]["traits"] = {"email": "a@example.com", "company": "Acme Corp"}
        doc["context"]["location"] = {"country": "US"}
    if kind == "track":
        doc["event"] = rng.choice(("Whitepaper Downloaded", "Demo Requested"))
        doc["properties"] = rng.choice(({"asset": "wp-1"}, {"title": "Robots 101"}))
    elif kind == "page":
        doc["name"] = "Pricing"
        doc["properties"] = rng.choice(({"path": "/pricing"}, {"url": "https://x.example/pricing"}))
    elif kind == "identify":
        doc["traits"] = {
            "email": rng.choice(("a@example.com", "jo@acme.example")),
            "employees": 250,
            "title": "CEO",
        }
        if rng.random() < 0.5:  # what the lead core reads further: phone, BANT, accounts
            doc["traits"] |= {
                "country": "JP",
                "phone": "03-1234-5678",
                "company": "Acme Corp",
                "purchase_timeline": "this quarter",
                "budget": "approved",
            }
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
        # A few ids only: the ones that decode make the lead stage's account directory.
        "account_id": f"001{rng.randrange(32):x}",
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


def odd_value(rng: random.Random, name: str = "") -> bytes:
    """An odd value (JSON text) for the field `name`: half of the time one of those that
    most trouble that field (head counts past 64 bits for `employees`), else any."""
    fitting = _ODD_FOR.get(name)
    if fitting and rng.random() < 0.5:
        return rng.choice(fitting)
    return rng.choice(_ODD_VALUES)


_SLOT: Final = "\x00fuzz-slot-{}\x00"


def _with_values(doc: dict[str, Any], values: list[tuple[tuple[str, ...], bytes]]) -> bytes:
    """`doc` as JSON with each raw value at its path (objects on the way made or replaced)."""
    doc = dict(doc)
    for i, (path, _) in enumerate(values):
        node = doc
        for key in path[:-1]:
            child = node.get(key)
            child = dict(child) if isinstance(child, dict) else {}
            node[key] = child
            node = child
        node[path[-1]] = _SLOT.format(i)
    text = orjson.dumps(doc)
    for i, (_, raw) in enumerate(values):
        text = text.replace(orjson.dumps(_SLOT.format(i)), raw)
    return text


def _odd_values(
    rng: random.Random, doc: dict[str, Any], places: tuple[tuple[str, ...], ...]
) -> bytes:
    """`doc`, well-formed, with one to three odd values at some of `places`."""
    chosen = [rng.choice(places) for _ in range(rng.choice((1, 1, 1, 2, 3)))]
    return _with_values(doc, [(path, odd_value(rng, path[-1])) for path in chosen])


def _mutate(
    rng: random.Random,
    doc: dict[str, Any],
    fields: tuple[str, ...],
    *,
    places: tuple[tuple[str, ...], ...] = (),
    category: str | None = None,
) -> tuple[str, bytes]:
    """One hostile variant of a well-formed document: (category, raw bytes).

    `places`: the paths "odd_values" puts values at (default: the top-level `fields`);
    `category`: one of CATEGORIES, else chosen at random."""
    members = [(k, orjson.dumps(v)) for k, v in doc.items()]
    category = category or rng.choice(CATEGORIES)
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
    if category == "odd_values":
        return category, _odd_values(rng, doc, places or tuple((f,) for f in fields))
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


def hostile_event(rng: random.Random, *, category: str | None = None) -> tuple[str, bytes]:
    """A record value for `engagement.raw`, mostly broken: (category, value).

    "odd_values" keeps the message well-formed and puts odd values at every trait name
    the normalization reads, in `traits` and `context.traits`, at `context.location.country`,
    `context.campaign.source`/`.name` and the `properties` a track or page reads; a
    quarter of those messages name the messageId `message_id`, which the models read and
    the intake's fast path leaves to them (they keep integers past 64 bits, for one)."""
    doc = valid_event(rng)
    fields = _EVENT_FIELDS[doc["type"]] + _EXTRA_FIELDS
    if doc["type"] in ("identify", "group"):
        places = _CONTEXT_PLACES + _TRAIT_PLACES * 2  # its own traits, twice as often
    else:
        places = _CONTEXT_PLACES + _PROPERTY_PLACES
    category = category or rng.choice(CATEGORIES)
    if category == "odd_values" and rng.random() < 0.25:
        doc = {("message_id" if k == "messageId" else k): v for k, v in doc.items()}
    return _mutate(rng, doc, fields, places=places, category=category)


#: The message shapes `odd_value_sweep` fills: a type, and the places it reads.
_SWEEP_SHAPES: Final = (
    ("identify", _TRAIT_PLACES),
    ("group", _TRAIT_PLACES),
    ("track", _PROPERTY_PLACES + tuple(p for p in _CONTEXT_PLACES if p[1] == "traits")),
    # context.location.country is read when context.traits has no country; a url when
    # there is no path
    ("page", (*(p for p in _CONTEXT_PLACES if p[1] != "traits"), ("properties", "path"))),
    ("page", (("properties", "url"),)),
)


def odd_value_sweep() -> Iterator[bytes]:
    """Every odd value at every place the normalization reads: for each value and message
    shape, messages with the value at all of the shape's places (split where they would
    pass the 64 KiB limit), once with `messageId` (the intake's fast path) and once with
    `message_id` (the models). Well-formed, each from its own person; ~2,000 messages."""
    n = 0
    for value in _ODD_VALUES:
        per_message = max(1, (MAX_EVENT_BYTES - 2000) // (len(value) + 64))
        for kind, places in _SWEEP_SHAPES:
            for start in range(0, len(places), per_message):
                for id_field in ("messageId", "message_id"):
                    n += 1
                    doc = {
                        "type": kind,
                        id_field: f"sweep-{n}",
                        "anonymousId": f"sweep-{n}",
                        "timestamp": "2026-11-20T09:00:00.123Z",
                    }
                    if kind == "track":
                        doc["event"] = "Whitepaper Downloaded"
                    chunk = places[start : start + per_message]
                    yield _with_values(doc, [(path, value) for path in chunk])


def hostile_feedback(rng: random.Random, *, category: str | None = None) -> tuple[str, bytes]:
    """A record value for `sfa.feedback`, mostly broken: (category, value)."""
    doc = _feedback(rng)
    fields = (*doc, "amount", "currency", "reason", "reason_text", "extra")
    return _mutate(rng, doc, fields, category=category)


def hostile_account(rng: random.Random, *, category: str | None = None) -> tuple[str, bytes]:
    """A record value for `crm.accounts`, mostly broken: (category, value)."""
    doc = _account(rng)
    return _mutate(rng, doc, (*doc, "extra"), category=category)


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


class Bug(Exception):
    """A fault of ours the fuzz found (bad input is not one: it has an outcome).

    `stage`: where (intake, person-events, lead core, state, outputs...); `kind`: what
    makes two of them one bug (the stage, the error's type, our innermost frame, or the
    field that differs); `where`: that frame; `trace`: the traceback of an exception."""

    def __init__(
        self, stage: str, error: str, *, kind: str = "", where: str = "", trace: str = ""
    ) -> None:
        super().__init__(f"{stage}: {error}" + (f" (at {where})" if where else ""))
        self.stage, self.error, self.where, self.trace = stage, error, where, trace
        self.kind = kind or f"{stage}: {error}"


_ROOT: Final = str(Path(__file__).resolve().parent.parent) + "/"


def _raised(stage: str, exc: BaseException) -> Bug:
    """A Bug for an exception, placed at the innermost frame in streams/ or schemas/ (the
    compiled core's frames name their files relative to the repository)."""
    frames = [
        (f.filename.removeprefix(_ROOT), f.lineno, f.name)
        for f in traceback.extract_tb(exc.__traceback__)
    ]
    ours = [f for f in frames if f[0].startswith(("streams/", "schemas/"))] or frames
    where = "{}:{} ({})".format(*ours[-1]) if ours else ""
    # The error's wording without its values: int('①') and int('7' * 5000) are two bugs.
    wording = re.sub(r"\d+", "N", str(exc).split(":", 1)[0])[:80]
    return Bug(
        stage,
        f"{type(exc).__name__}: {exc}"[:300],
        kind=f"{stage}: {type(exc).__name__} ({wording}) at {where}",
        where=where,
        trace="".join(traceback.format_exception(exc))[-4000:],
    )


def _step(stage: str, fn: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
    """`fn(*args, **kwargs)`; an exception out of it is a Bug of `stage`."""
    try:
        return fn(*args, **kwargs)
    except Bug:
        raise
    except Exception as exc:
        raise _raised(stage, exc) from exc


_MISSING: Final = object()


def _differs(a: Any, b: Any, path: str = "", kind: str = "") -> tuple[str, str]:
    """The first place two values differ: (`kind`, `path: a != b`). `kind` is the path
    without indices and keys (`events[].traits{}: float != NoneType`), one for all places
    of one bug."""
    if isinstance(a, BaseModel) and type(a) is type(b):
        for name in type(a).model_fields:
            x, y = getattr(a, name), getattr(b, name)
            if not _same(x, y):
                return _differs(x, y, f"{path}.{name}", f"{kind}.{name}")
    elif isinstance(a, dict) and isinstance(b, dict):
        for key in [*a, *(k for k in b if k not in a)]:
            x, y = a.get(key, _MISSING), b.get(key, _MISSING)
            if not _same(x, y):
                return _differs(x, y, f"{path}.{key}", f"{kind}{{}}")
    elif type(a) is type(b) and isinstance(a, tuple | list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            if not _same(x, y):
                return _differs(x, y, f"{path}[{i}]", f"{kind}[]")
    kind = f"{kind.lstrip('.') or 'value'}: {_type(a)} != {_type(b)}"
    return kind, f"{path.lstrip('.') or 'value'}: {_short(a)} != {_short(b)}"


def _read_back(stage: str, what: str, sent: Any, back: Any) -> None:
    """A Bug of `stage` if `back` (what was read back) differs from `sent`."""
    if back != sent:
        at, text = _differs(sent, back)
        raise Bug(
            stage,
            f"a {what} reads back different: {text}",
            kind=f"{stage}: a {what} reads back different at {at}",
        )


def _same(a: Any, b: Any) -> bool:
    """Equal and of the same types throughout (2**64 == 2.0**64, but not the same)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, BaseModel):
        return all(_same(getattr(a, f), getattr(b, f)) for f in type(a).model_fields)
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(v, b[k]) for k, v in a.items())
    if isinstance(a, tuple | list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def _type(value: Any) -> str:
    return "(missing)" if value is _MISSING else type(value).__name__


def _short(value: Any) -> str:
    text = "(missing)" if value is _MISSING else repr(value)
    return text if len(text) <= 80 else f"{text[:60]}... ({len(text)} chars)"


#: Messages the core sends to other entries of the identity graph (person-events again).
_INTERNAL: Final = (PersonEvent, Link, MergeRequest, MergeIn, FeedbackIn, Forget, Unlink)
_MAX_ROUNDS: Final = 64
_MAX_ENTRIES: Final = 200_000


class LeadStage:
    """The worker's work on what the intake forwards, in one process, checked at each step.

    An intake result becomes its person-events records (`forward_batches`), each read back
    with `decode_batch` as the worker reads it and applied with `apply_person_batch` to a
    table of leads kept from call to call; the identity messages the core sends to other
    entries go round the same way until there are none. Every lead the core changes is
    written with `write_state` (the worker's `encode_state`) and read back with
    `decode_state` before the next event reads it; the routing state too; every decision is
    encoded with `_records` and read back. Raises Bug at the first thing ours to fix: an
    exception, an event the core set aside as failed, state bytes other than `encode`'s,
    anything that reads back different.
    """

    def __init__(
        self,
        *,
        model: LeadModel,
        now: datetime = NOW,
        partitions: int = _PARTITIONS,
        accounts: AccountDirectory | None = None,
        write_state: Callable[[LeadState], bytes] = encode_state,
    ) -> None:
        self.model, self.now, self.partitions = model, now, partitions
        self.write_state = write_state
        self.accounts = accounts or AccountDirectory.build(())
        self.limits = with_accounts(Limits(), self.accounts)
        self.topics = Topics()
        self.entries: dict[str, LeadState] = {}
        self.rotation = RoutingState()
        self.counts: Counter[str] = Counter()
        self.spent_s = 0.0

    def fresh(self) -> LeadStage:
        """A stage like this one (model, clock, accounts, state encoder) with no leads."""
        return LeadStage(
            model=self.model,
            now=self.now,
            partitions=self.partitions,
            accounts=self.accounts,
            write_state=self.write_state,
        )

    def add_account(self, account: CrmAccount) -> None:
        """A CRM account (`crm.accounts`): leads are matched to it from now on."""
        self.accounts = self.accounts.updated({account.account_id: account})
        self.limits = with_accounts(self.limits, self.accounts)

    def take(self, result: IntakeResult) -> None:
        """What the worker does with one intake result."""
        started = time.perf_counter()
        try:
            records = _step("intake", forward_batches, result, self.topics)
            self._run([self._read(r.value, b) for r, b in records if b is not None])
        finally:
            self.spent_s += time.perf_counter() - started

    def _read(self, value: bytes | None, batch: PersonEventBatch) -> PersonEventBatch:
        decoded = _step("person-events", decode_batch, value or b"")
        _read_back("person-events", "batch", batch, decoded)
        return decoded

    def _run(self, queue: list[PersonEventBatch]) -> None:
        rounds = 0
        while queue:
            rounds += 1
            if rounds > _MAX_ROUNDS:
                raise Bug("identity", f"messages between entries still flow after {rounds} rounds")
            batch = queue.pop(0)
            result = _step(
                "lead core",
                apply_person_batch,
                self.entries,
                batch,
                model=self.model,
                rotation=self.rotation,
                limits=self.limits,
                now=self.now,
            )
            self.counts["events"] += len(batch.events)
            if result.failed:
                raise self._failed(*result.failed[0])
            self._write(result.leads, result.deleted, result.rotation)
            queue += self._outputs(result.decisions)

    def _failed(self, event: PersonEvent, error: str) -> Bug:
        """The core's error for an event it set aside, with the traceback if it repeats."""
        try:
            apply_event(
                self.entries.get(event.pk),
                event,
                model=self.model,
                rotation=self.rotation,
                limits=self.limits,
                now=self.now,
            )
        except Exception as exc:
            return _raised("lead core", exc)
        kind = error.split(":", 1)[0]
        return Bug("lead core", f"failed: {error}", kind=f"lead core: failed with {kind}")

    def _write(
        self, leads: dict[str, LeadState], deleted: Iterable[str], rotation: RoutingState
    ) -> None:
        if len(self.entries) > _MAX_ENTRIES:
            self.entries.clear()  # bounded memory on long runs: a worker starting afresh
        for key, lead in leads.items():
            written = _step("state", self.write_state, lead)
            if written != _step("state", encode, lead):
                raise Bug("state", "encode_state writes other bytes than encode")
            back = _step("state", decode_state, written)
            _read_back("state", "lead", lead, back)
            self.entries[key] = back
        for key in deleted:
            self.entries.pop(key, None)
        if _step("state", decode_rotation, encode(rotation)) != rotation:
            raise Bug("state", "the routing state reads back different")
        self.rotation = rotation
        self.counts["lead writes"] += len(leads)

    def _outputs(self, decisions: list[Decision]) -> list[PersonEventBatch]:
        """Encode `decisions` as the worker does; the identity messages, read back."""
        records = _step("outputs", _records, self.topics, decisions, self.partitions)
        for d in decisions:
            if isinstance(d, _INTERNAL):
                continue  # read back below, from their records
            back = _step("outputs", type(d).model_validate_json, encode(d))
            _read_back("outputs", type(d).__name__, d, back)
        batches = []
        for record in records:
            self.counts[f"records {record.topic}"] += 1
            if record.topic == self.topics.person_events:
                batch = _step("person-events", decode_batch, record.value or b"")
                if encode(batch) != record.value:
                    raise Bug("person-events", "an identity batch reads back different")
                batches.append(batch)
        return batches


def _raw(value: bytes, *, topic: str, offset: int) -> RawRecord:
    return RawRecord(value=value, key=None, topic=topic, partition=0, offset=offset)


def check_event(value: bytes, *, stage: LeadStage, offset: int = 0) -> str:
    """The intake's outcome for one `engagement.raw` record (`forwarded`, `dlq:<reason>`);
    what it forwards goes on through `stage`. Raises Bug for a `processing_error` dead
    letter (an exception inside the intake), for anything the stage finds, and for an
    event the intake's fast path makes other than the models would."""
    result = _step(
        "intake",
        intake_batch,
        [_raw(value, topic="engagement.raw", offset=offset)],
        partitions=stage.partitions,
        now=stage.now,
    )
    for _, letter in result.dead:
        if letter.reason == "processing_error":
            try:  # again outside the intake's guard, for the traceback
                decode_person_event(value, src=(0, offset))
            except Exception as exc:
                raise _raised("intake", exc) from exc
            raise Bug("intake", letter.message, kind="intake: processing_error")
    stage.take(result)
    if not result.dead:
        _same_on_both_paths(value, src=(0, offset))
    return f"dlq:{result.dead[0][1].reason}" if result.dead else "forwarded"


def _same_on_both_paths(value: bytes, *, src: tuple[int, int]) -> None:
    """The intake's fast path, where it takes a message, makes the event the models make
    (`_fast_path`: "never wrong")."""
    fast = _step("fast path", _fast_path, value, src)
    if fast is None:
        return
    slow = _step("fast path", decode_event, value)
    if isinstance(slow, Rejection):
        raise Bug(
            "fast path",
            f"takes a message the models reject: {slow.message}",
            kind=f"fast path: takes a message the models reject ({slow.reason})",
        )
    model = _step("fast path", normalize, slow, src=src)
    if not _same(fast, model):
        at, text = _differs(model, fast)
        raise Bug(
            "fast path",
            f"makes another event than the models (models != fast path): {text}",
            kind=f"fast path: makes another event than the models at {at}",
        )


def check_feedback(value: bytes) -> str:
    """The `sfa.feedback` decoder's outcome (`valid`, `rejected:<reason>`)."""
    decoded = _step("feedback", decode_sales_feedback, value)
    return f"rejected:{decoded.reason}" if isinstance(decoded, Rejection) else "valid"


def check_account(value: bytes, *, stage: LeadStage) -> str:
    """The `crm.accounts` decoder's outcome (`valid`, `rejected:<reason>`); a valid
    account joins the directory `stage` matches leads to."""
    decoded = _step("accounts", decode_crm_account, value)
    if isinstance(decoded, Rejection):
        return f"rejected:{decoded.reason}"
    _step("accounts", stage.add_account, decoded)
    return "valid"


def check_request(request: Request, *, stage: LeadStage) -> list[str]:
    """The ingest's status for `request`, then (`record:<outcome>`) `check_event`'s
    outcome for each record it accepted."""
    answer = _step("ingest", handle, request)
    if not isinstance(answer, Accepted):
        return [str(answer.status)]
    return ["200", *(f"record:{check_event(v, stage=stage)}" for _, v in answer.records)]


_Make = Callable[[random.Random], tuple[str, Any]]
_Check = Callable[[Any, int, LeadStage], list[str]]
_TARGETS: Final[tuple[tuple[str, _Make, _Check], ...]] = (
    ("intake", hostile_event, lambda v, i, stage: [check_event(v, stage=stage, offset=i)]),
    ("feedback", hostile_feedback, lambda v, i, stage: [check_feedback(v)]),
    ("accounts", hostile_account, lambda v, i, stage: [check_account(v, stage=stage)]),
    (
        "ingest",
        lambda rng: ("request", hostile_request(rng)),
        lambda request, i, stage: check_request(request, stage=stage),
    ),
)


def _shown(case: Any) -> str:
    """A case as text for a report: the value (a request: its parts), cut at 600 chars."""
    if isinstance(case, Request):
        head = f"{case.endpoint} encoding={case.content_encoding} auth={case.authorization} "
        try:
            return head + "gzip of " + _shown(gzip.decompress(case.body))
        except (OSError, EOFError, zlib.error):
            return head + _shown(case.body)
    text = case.decode("utf-8", "backslashreplace")
    return text if len(text) <= 600 else f"{text[:600]}... ({len(case)} bytes)"


def _cases(
    rng: random.Random, cases: int, *, sweep: bool
) -> Iterator[tuple[str, str, Any, _Check]]:
    """(target, category, input, check): the sweep's, then `cases` drawn from `rng`."""
    if sweep:
        intake = _TARGETS[0][2]
        for value in odd_value_sweep():
            yield "intake", "sweep", value, intake
    for i in range(cases):
        name, make, check = _TARGETS[i % len(_TARGETS)]
        category, case = make(rng)
        yield name, category, case, check


def run(
    *, cases: int, seed: int, sweep: bool = True, stage: LeadStage | None = None
) -> dict[str, Any]:
    """`odd_value_sweep` (unless not `sweep`) through the intake, then `cases` hostile
    inputs split evenly over the four targets, all on one lead stage (`stage`, else one
    with the load test's model); the figures.

    Crashes are counted by kind (`Bug.kind`), with an example of each: the case, its
    input, the error and traceback, and whether the input alone does it again on a lead
    stage with no leads (False: it needs the leads earlier cases made)."""
    rng = random.Random(seed)
    stage = stage or LeadStage(model=load_model(MODEL))
    outcomes: dict[str, Counter[str]] = {name: Counter() for name, _, _ in _TARGETS}
    categories: Counter[str] = Counter()
    kinds: Counter[str] = Counter()
    examples: dict[str, dict[str, Any]] = {}
    elapsed_s = 0.0
    i = -1
    for i, (name, category, case, check) in enumerate(_cases(rng, cases, sweep=sweep)):
        if name != "ingest":
            categories[category] += 1
        started = time.perf_counter()
        try:
            for outcome in check(case, i, stage):
                outcomes[name][outcome] += 1
        except Exception as exc:  # the point of the run: count them, keep one of each
            bug = exc if isinstance(exc, Bug) else _raised(name, exc)
            kinds[bug.kind] += 1
            if bug.kind not in examples and len(examples) < 30:
                examples[bug.kind] = _example(i, name, category, case, bug, check, stage)
        finally:
            elapsed_s += time.perf_counter() - started
    core_s = stage.spent_s
    return {
        "cases": i + 1,
        "seed": seed,
        "swept": categories["sweep"],
        "core": str(CORE),
        "decode_s": round(elapsed_s - core_s, 3),
        "lead_stage_s": round(core_s, 3),
        "cases_per_s": round((i + 1) / elapsed_s) if elapsed_s else None,
        "categories": dict(sorted(categories.items())),
        "outcomes": {k: dict(sorted(v.items())) for k, v in outcomes.items()},
        "lead_stage": dict(sorted(stage.counts.items())),
        "crashes": kinds.total(),
        "crash_kinds": dict(kinds.most_common()),
        "crash_examples": list(examples.values()),
    }


def _example(
    i: int, target: str, category: str, case: Any, bug: Bug, check: _Check, stage: LeadStage
) -> dict[str, Any]:
    try:
        check(case, i, stage.fresh())
        alone = False
    except Bug as again:
        alone = again.kind == bug.kind
    except Exception:
        alone = False
    return {
        "case": i,
        "target": target,
        "category": category,
        "kind": bug.kind,
        "error": str(bug),
        "alone": alone,
        "input": _shown(case),
        "traceback": bug.trace,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m loadtest.fuzz", description=__doc__)
    p.add_argument("--cases", type=int, default=100_000)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    p.add_argument("--traceback", action="store_true", help="print each crash's traceback")
    p.add_argument(
        "--no-sweep", action="store_true", help="only the random cases, not the odd-value sweep"
    )
    args = p.parse_args(argv)
    # The intake logs each record it fails to read, with its traceback: the run reports
    # them itself (counted by kind, one example each), so not thousands of times.
    logging.getLogger("streams.intake").addHandler(logging.NullHandler())
    logging.getLogger("streams.intake").propagate = False
    started = time.perf_counter()
    figures = run(cases=args.cases, seed=args.seed, sweep=not args.no_sweep)
    figures["wall_s"] = round(time.perf_counter() - started, 1)
    if args.json:
        sys.stdout.write(orjson.dumps(figures, option=orjson.OPT_INDENT_2).decode() + "\n")
        return 1 if figures["crashes"] else 0
    print(
        f"{figures['cases']} cases ({figures['swept']} of the sweep; seed {figures['seed']}; "
        f"{figures['core']} core): "
        f"{figures['cases_per_s']} cases/s ({figures['decode_s']} s in the decoders, "
        f"{figures['lead_stage_s']} s in the lead stage; {figures['wall_s']} s with "
        f"generation); crashes: {figures['crashes']}"
    )
    for target, counts in figures["outcomes"].items():
        if counts:
            print(f"  {target:10} " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    print("  lead stage " + ", ".join(f"{k} {v}" for k, v in figures["lead_stage"].items()))
    for example in figures["crash_examples"]:
        count = figures["crash_kinds"][example["kind"]]
        print(f"  crash x{count} (first at case {example['case']}): {example['error']}")
        print(f"    {example['target']} input ({example['category']}, alone: {example['alone']}):")
        print(f"    {example['input'][:300]}")
        if args.traceback:
            print("    " + example["traceback"].replace("\n", "\n    "))
    return 1 if figures["crashes"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
