"""Segment HTTP Tracking API requests to engagement.raw records: auth, body, split. No I/O.

What Segment's own API does, so its SDKs work unchanged: `POST /v1/batch` takes
`{"batch": [...], "context"?, "writeKey"?}` and merges the batch `context` into each message;
`/v1/track|page|identify|group` take one message whose `type` defaults to the path's (and
analytics.js's one-letter paths, `/v1/b|t|p|i|g`, are the same endpoints). The
server stamps `receivedAt`. Every message that is a JSON value inside a well-formed request
is forwarded, the invalid ones included: the intake dead-letters those with their reason,
exactly as if they had been produced to the topic directly.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import math
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Literal, get_args

import orjson

from streams.codec import Rejection, decode_person_event, read_timestamp

__all__ = [
    "ENDPOINTS",
    "EXPANSION_LIMIT",
    "SHORT_PATHS",
    "SUCCESS_BODY",
    "Accepted",
    "Endpoint",
    "RateLimiter",
    "Refused",
    "WriteKeys",
    "basic_auth_user",
    "decode_body",
    "ingest_request",
]

log = logging.getLogger(__name__)

Endpoint = Literal["batch", "track", "page", "identify", "group"]
ENDPOINTS: Final[tuple[Endpoint, ...]] = get_args(Endpoint)
#: The one-letter paths analytics.js posts to (/v1/t, /v1/b, ...), which Segment's API takes.
SHORT_PATHS: Final[dict[str, Endpoint]] = {e[0]: e for e in ENDPOINTS}

#: What Segment answers on success, byte for byte.
SUCCESS_BODY: Final = b'{"success":true}'

#: Merging a batch's `context` into each message can multiply its size; the records produced
#: for one request may be at most this many times the body limit (else 413, nothing produced).
EXPANSION_LIMIT: Final = 4

_GZIP_WBITS: Final = 16 + zlib.MAX_WBITS


@dataclass(frozen=True, slots=True)
class Refused:
    """The request is refused as a whole and nothing is produced.

    `code` and `message` are what Segment's SDKs read from an error answer.
    """

    status: int
    code: str
    message: str
    #: Whole seconds for a `Retry-After` header (429 only).
    retry_after_s: int | None = None

    def body(self) -> bytes:
        return orjson.dumps({"success": False, "code": self.code, "message": self.message})


@dataclass(frozen=True, slots=True)
class Accepted:
    """Records for engagement.raw, (key, value), in request order.

    `invalid` of them break the input contract; the intake will dead-letter them.
    """

    records: tuple[tuple[bytes | None, bytes], ...]
    invalid: int


class WriteKeys:
    """The write keys that may send; a check takes the same time whichever key matches.

    Both sides are hashed first, so the comparison is of equal-length digests, and every key
    is compared (no early exit that would tell which key, or whether any, matched).
    """

    def __init__(self, keys: Iterable[str]) -> None:
        self._digests = tuple(_digest(k) for k in keys)

    def __bool__(self) -> bool:
        return bool(self._digests)

    def __len__(self) -> int:
        return len(self._digests)

    def accepts(self, candidate: str) -> bool:
        digest = _digest(candidate)
        matched = False
        for known in self._digests:
            matched |= hmac.compare_digest(known, digest)
        return matched


class RateLimiter:
    """A token bucket per write key: `burst` requests at once, refilled at `rate_per_s`.

    Only keys that authenticated are kept (so at most one bucket per configured key), under
    their digest rather than the key itself. The time comes in (`now_s`, seconds); a clock
    that steps back refills nothing.
    """

    def __init__(self, *, rate_per_s: float, burst: int) -> None:
        if rate_per_s <= 0 or burst < 1:
            raise ValueError("the rate must be positive and the burst at least 1")
        self._rate_per_s = rate_per_s
        self._burst = float(burst)
        self._buckets: dict[bytes, tuple[float, float]] = {}  # digest -> (tokens, at_s)

    def take(self, key: str, now_s: float) -> float:
        """Spend one request of `key`: 0.0 if allowed, else the seconds until one is."""
        digest = _digest(key)
        tokens, at_s = self._buckets.get(digest, (self._burst, now_s))
        tokens = min(self._burst, tokens + max(0.0, now_s - at_s) * self._rate_per_s)
        if tokens >= 1.0:
            self._buckets[digest] = (tokens - 1.0, now_s)
            return 0.0
        self._buckets[digest] = (tokens, now_s)
        return (1.0 - tokens) / self._rate_per_s


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()


def basic_auth_user(header: str) -> str | None:
    """The user name of an HTTP Basic `Authorization` header, or None if it is not one."""
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "basic" or not token.strip():
        return None
    try:
        decoded = base64.b64decode(token.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return decoded.partition(":")[0]


def decode_body(body: bytes, *, content_encoding: str | None, max_bytes: int) -> bytes | Refused:
    """The request body as sent before compression, at most `max_bytes` either side of it.

    Gzip is inflated incrementally and stops as soon as the output passes the limit, so a
    small "gzip bomb" costs at most `max_bytes` of memory.
    """
    encoding = (content_encoding or "identity").strip().lower()
    if encoding not in ("identity", "gzip", "x-gzip"):
        return Refused(
            415,
            "unsupported_encoding",
            f"Content-Encoding {content_encoding!r} is not supported; send gzip or no encoding",
        )
    if len(body) > max_bytes:
        return _too_large(f"the body is {len(body)} bytes; the limit is {max_bytes}")
    if encoding == "identity":
        return body
    if not body:
        return _bad_request("the gzip body is empty")
    out = bytearray()
    pending = body
    inflater = zlib.decompressobj(_GZIP_WBITS)
    try:
        while True:
            out += inflater.decompress(pending, max_bytes + 1 - len(out))
            if len(out) > max_bytes:
                return _too_large(f"the body is over {max_bytes} bytes once decompressed")
            if inflater.eof:
                pending = inflater.unused_data
                if not pending:
                    return bytes(out)
                inflater = zlib.decompressobj(_GZIP_WBITS)  # concatenated gzip members
            else:
                pending = inflater.unconsumed_tail
                if not pending:
                    return _bad_request("the gzip body is truncated")
    except zlib.error as exc:
        return _bad_request(f"the body is not valid gzip ({exc})")


def ingest_request(
    *,
    endpoint: Endpoint,
    body: bytes,
    content_encoding: str | None,
    authorization: str | None,
    keys: WriteKeys,
    max_body_bytes: int,
    now: datetime,
    limiter: RateLimiter | None = None,
) -> Accepted | Refused:
    """One Tracking API request to the records to produce, or why it is refused.

    Auth: an `Authorization` header, when present, decides (HTTP Basic, the write key as the
    user name). Without one, the body's `writeKey` does, as Segment's browser SDK sends it.
    A key over its rate (`limiter`) is refused 429 as soon as it is known, before any work.
    """
    header_ok = False
    if authorization is not None:
        user = basic_auth_user(authorization)
        if user is None:
            return _unauthorized(
                "the Authorization header must be HTTP Basic with the write key as the user name"
            )
        if not keys.accepts(user):
            return _unauthorized("the write key is not valid")
        header_ok = True
        if limited := _over_rate(limiter, user, now):
            return limited

    raw = decode_body(body, content_encoding=content_encoding, max_bytes=max_body_bytes)
    if isinstance(raw, Refused):
        return raw
    if not raw.strip():
        return _bad_request("the body is empty; send a JSON object")
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return _bad_request(f"the body is not valid JSON: {exc}")
    if type(doc) is not dict:
        return _bad_request("the body must be a JSON object")

    if not header_ok:
        key = doc.get("writeKey")
        if key is None:
            return _unauthorized(
                "no write key: use HTTP Basic auth with the write key as the user name "
                "(or writeKey in the body)"
            )
        if type(key) is not str or not keys.accepts(key):
            return _unauthorized("the write key is not valid")
        if limited := _over_rate(limiter, key, now):
            return limited

    received_at = _iso(now)
    messages: list[Any]
    if endpoint == "batch":
        batch = doc.get("batch")
        if batch is None:
            return _bad_request("batch: field required (a list of messages)")
        if type(batch) is not list:
            return _bad_request("batch must be a list of messages")
        context = doc.get("context")
        if context is not None and type(context) is not dict:
            return _bad_request("context must be an object")
        sent_at = doc.get("sentAt")  # the SDKs stamp a batch once
        messages = [_stamped(m, context, received_at, now=now, sent_at=sent_at) for m in batch]
    else:
        kind = doc.get("type", endpoint)
        if kind != endpoint:
            shown = _shown(kind)
            return _bad_request(f"type {shown} does not match the endpoint /v1/{endpoint}")
        messages = [_stamped({**doc, "type": endpoint}, None, received_at, now=now)]

    records: list[tuple[bytes | None, bytes]] = []
    invalid = 0
    total = 0
    limit = max_body_bytes * EXPANSION_LIMIT
    for message in messages:
        try:
            value = orjson.dumps(message)
        except orjson.JSONEncodeError:  # orjson reads 1024 levels of nesting, writes 255
            return _bad_request(f"a message nests deeper than {_MAX_DEPTH} levels")
        total += len(value)
        if total > limit:
            return _too_large(
                f"the messages are over {limit} bytes with the batch context merged into "
                f"each; send smaller batches"
            )
        try:
            decoded = decode_person_event(value)  # the path the intake takes
        except Exception:
            # A bug, by definition (bad input is a Rejection). Forwarded all the same: the
            # intake dead-letters it as a processing error. A 500 would have the sender
            # retry the whole batch, and fail again, for ever.
            log.exception("ingest: reading a message failed; forwarded for the DLQ")
            decoded = Rejection("processing_error", "reading the message failed")
        if isinstance(decoded, Rejection):
            invalid += 1
            records.append((None, value))
        else:
            records.append((decoded.pk.encode("utf-8"), value))
    return Accepted(records=tuple(records), invalid=invalid)


def _stamped(
    message: Any,
    context: dict[str, Any] | None,
    received_at: str,
    *,
    now: datetime,
    sent_at: Any = None,
) -> Any:
    """A message as Segment stores it: batch context merged in, receivedAt set, no writeKey,
    and the device's clock corrected (`_corrected`).

    Anything but an object is forwarded unchanged (the intake dead-letters it). The message's
    own context keys win over the batch's.
    """
    if type(message) is not dict:
        return message
    out = {k: v for k, v in message.items() if k != "writeKey"}  # a secret, not event data
    if context:
        own = out.get("context")
        if own is None:
            out["context"] = context
        elif type(own) is dict:
            out["context"] = {**context, **own}
    out["receivedAt"] = received_at
    _corrected(out, sent_at=out.get("sentAt", sent_at), now=now)
    return out


def _corrected(message: dict[str, Any], *, sent_at: Any, now: datetime) -> None:
    """Correct a device clock as Segment's API does: `timestamp` becomes receivedAt -
    (sentAt - timestamp), and the device's own goes to `originalTimestamp`. A phone whose
    clock runs a year ahead would otherwise move its lead's clock there (scores decay by
    the lead's clock).

    Only with a `sentAt` (the device's clock when it sent; Segment's SDKs set it) and a
    `timestamp` the intake reads; a message with an `originalTimestamp` was corrected
    already (one Segment delivered), and is left alone.
    """
    if "originalTimestamp" in message:
        return
    stamp = message.get("timestamp")
    at, sent = read_timestamp(stamp), read_timestamp(sent_at)
    if at is None or sent is None:
        return
    try:
        fixed = now - (sent - at)
    except OverflowError:  # past the calendar either way: the intake reads it as sent
        return
    text = _iso(fixed)
    if read_timestamp(text) is None:
        return  # at the calendar's edge: the intake reads it as sent
    message["originalTimestamp"] = stamp
    message["timestamp"] = text


def _over_rate(limiter: RateLimiter | None, key: str, now: datetime) -> Refused | None:
    if limiter is None:
        return None
    wait_s = limiter.take(key, now.timestamp())
    if wait_s <= 0:
        return None
    return Refused(
        429,
        "rate_limited",
        "too many requests for this write key; retry after the Retry-After seconds",
        retry_after_s=max(1, math.ceil(wait_s)),
    )


#: The deepest nesting orjson writes (it reads deeper): a message past it cannot be forwarded.
_MAX_DEPTH: Final = 255


def _shown(value: Any) -> str:
    """A JSON value quoted in an error message (nesting too deep to write is not shown)."""
    try:
        return orjson.dumps(value).decode()
    except orjson.JSONEncodeError:
        return f"(nested deeper than {_MAX_DEPTH} levels)"


def _iso(at: datetime) -> str:
    return at.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _bad_request(message: str) -> Refused:
    return Refused(400, "invalid_request", message)


def _unauthorized(message: str) -> Refused:
    return Refused(401, "unauthorized", message)


def _too_large(message: str) -> Refused:
    return Refused(413, "payload_too_large", message)
