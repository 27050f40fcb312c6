"""The one codec: bytes on the wire to typed models and back (orjson + pydantic)."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from pydantic import BaseModel, TypeAdapter, ValidationError

from schemas.decisions import DeadLetter, DlqReason
from schemas.events import EngagementEvent
from schemas.internal import PersonEventBatch
from streams.state import LeadState, Rotation

__all__ = [
    "MAX_EVENT_BYTES",
    "Rejection",
    "dead_letter",
    "decode_batch",
    "decode_event",
    "decode_json",
    "decode_rotation",
    "decode_state",
    "encode",
]

#: Inputs larger than this are dead-lettered unread: no real engagement event is this big.
MAX_EVENT_BYTES = 64 * 1024

_EVENT: TypeAdapter[Any] = TypeAdapter(EngagementEvent)
_BATCH = TypeAdapter(PersonEventBatch)
_STATE = TypeAdapter(LeadState)
_ROTATION = TypeAdapter(Rotation)


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why an input cannot be used: a machine-readable reason and a sentence for people."""

    reason: DlqReason
    message: str


def decode_event(value: bytes | None) -> EngagementEvent | Rejection:
    """Parse and validate one raw Segment message; never raises on bad input."""
    if not value:
        return Rejection("empty_value", "the record has no value")
    if len(value) > MAX_EVENT_BYTES:
        return Rejection(
            "too_large", f"the value is {len(value)} bytes; the limit is {MAX_EVENT_BYTES}"
        )
    try:
        return _EVENT.validate_json(value)
    except ValidationError as exc:
        return _rejection(value, exc)


def _rejection(value: bytes, exc: ValidationError) -> Rejection:
    err = exc.errors(include_url=False)[0]
    kind: str = err["type"]
    loc = tuple(str(p) for p in err["loc"])
    # Discriminated unions put the tag first in loc ("track", "timestamp"); drop it.
    if loc and loc[0] in {"track", "page", "identify", "group"}:
        loc = loc[1:]
    field = ".".join(loc)
    where = f"{field}: " if field else ""
    message = f"{where}{err['msg']}"
    if kind == "json_invalid":
        try:
            value.decode("utf-8")
        except UnicodeDecodeError as ude:
            return Rejection("not_utf8", f"the value is not UTF-8 text ({ude.reason})")
        return Rejection("invalid_json", f"the value is not JSON: {err['msg']}")
    if kind in {"model_attributes_type", "model_type", "dict_type"} and not loc:
        return Rejection("not_object", "the value is JSON but not an object")
    if kind == "union_tag_invalid":
        return Rejection("unknown_type", f"type: {err['msg']}")
    if kind == "union_tag_not_found":
        return Rejection("missing_field", "type: field required")
    if kind == "missing_identity":
        return Rejection("missing_identity", message)
    if kind == "missing":
        return Rejection("missing_field", f"{field}: field required")
    if kind == "invalid_timestamp" or loc[:1] == ("timestamp",):
        return Rejection("invalid_timestamp", message)
    if kind.endswith("_type") or kind.endswith("_parsing"):
        return Rejection("wrong_type", message)
    return Rejection("invalid_value", message)


def dead_letter(
    rejection: Rejection,
    *,
    value: bytes | None,
    key: bytes | None,
    topic: str,
    partition: int,
    offset: int,
    now: datetime,
) -> DeadLetter:
    """The DLQ record for a rejected input: the original kept verbatim, or base64 if binary."""
    raw = value or b""
    try:
        text, encoding = raw.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        text, encoding = base64.b64encode(raw).decode("ascii"), "base64"
    return DeadLetter(
        reason=rejection.reason,
        message=rejection.message,
        source_topic=topic,
        partition=partition,
        offset=offset,
        key=key.decode("utf-8", "backslashreplace") if key is not None else None,
        value=text,
        value_encoding=encoding,
        received_at=now,
    )


def encode(record: BaseModel) -> bytes:
    """Serialize any of our models to compact JSON (field names as declared, not aliases)."""
    # pydantic-core's serializer writes JSON bytes directly (no dict in between).
    return record.__pydantic_serializer__.to_json(record)


def decode_state(value: bytes) -> LeadState:
    """A lead from the leads table. We wrote it, so errors are bugs: raise."""
    return _STATE.validate_json(value)


def decode_rotation(value: bytes) -> Rotation:
    return _ROTATION.validate_json(value)


def decode_batch(value: bytes) -> PersonEventBatch:
    """Decode a `leadstream.person-events` record. We wrote it, so errors are bugs: raise."""
    return _BATCH.validate_json(value)


def decode_json(value: bytes) -> Any:
    return orjson.loads(value)
