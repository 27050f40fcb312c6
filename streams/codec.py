"""The one codec: bytes on the wire to typed models and back (orjson + pydantic)."""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar, cast

import orjson
from pydantic import BaseModel, TypeAdapter, ValidationError

from schemas.crm import CrmAccount
from schemas.decisions import DeadLetter, DlqReason, LeadScored
from schemas.erasure import ErasureRequest
from schemas.events import MAX_ID_LENGTH, EngagementEvent
from schemas.feedback import SalesFeedback
from schemas.internal import ContactUpdateBatch, PersonEvent, PersonEventBatch
from schemas.model_record import PublishedModel
from streams.construct import trusted
from streams.normalize import EPOCH, MS, normalize, person_event
from streams.routing import RoutingState
from streams.state import AccountState, LeadState

__all__ = [
    "MAX_EVENT_BYTES",
    "Rejection",
    "dead_letter",
    "decode_account",
    "decode_batch",
    "decode_contact_batch",
    "decode_crm_account",
    "decode_erasure_request",
    "decode_event",
    "decode_forwarded",
    "decode_output",
    "decode_person_event",
    "decode_published_model",
    "decode_rotation",
    "decode_sales_feedback",
    "decode_state",
    "encode",
    "encode_batch",
    "encode_scored",
    "encode_state",
    "read_timestamp",
]

#: Inputs larger than this are dead-lettered unread: no real engagement event is this big.
MAX_EVENT_BYTES = 64 * 1024

_EVENT: TypeAdapter[Any] = TypeAdapter(EngagementEvent)
_Out = TypeVar("_Out", bound=BaseModel)
_BATCH = TypeAdapter(PersonEventBatch)
_STATE = TypeAdapter(LeadState)
_ROUTING = TypeAdapter(RoutingState)
_PUBLISHED = TypeAdapter(PublishedModel)
_CONTACTS = TypeAdapter(ContactUpdateBatch)
_ACCOUNT = TypeAdapter(AccountState)
_FEEDBACK = TypeAdapter(SalesFeedback)
_ERASURE = TypeAdapter(ErasureRequest)
_CRM_ACCOUNT = TypeAdapter(CrmAccount)


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


def decode_person_event(
    value: bytes | None, *, src: tuple[int, int] | None = None
) -> PersonEvent | Rejection:
    """Raw bytes to the normalized event, or the reason they cannot be used. `src`: where
    it was read on engagement.raw (partition, offset).

    Well-formed messages take a fast path (orjson and a few checks, ~4x cheaper than
    pydantic on a discriminated union); anything the fast path is not sure of goes through
    the pydantic models, which stay the definition of valid and word every rejection.
    """
    if value and len(value) <= MAX_EVENT_BYTES:
        fast = _fast_path(value, src)
        if fast is not None:
            return fast
    decoded = decode_event(value)
    if isinstance(decoded, Rejection):
        return decoded
    return normalize(decoded, src=src)


_ISO = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?(Z|[+-]\d{2}:\d{2})?")


def _fast_path(value: bytes, src: tuple[int, int] | None = None) -> PersonEvent | None:
    """The normalized event if `value` is plainly valid; None when unsure (never wrong)."""
    if value.count(b"{") + value.count(b"[") > _FAST_PATH_MAX_BRACKETS:
        return None  # maybe nested deeper than the models read (orjson reads deeper)
    try:
        doc = orjson.loads(value)
    except orjson.JSONDecodeError:
        return None
    if type(doc) is not dict:
        return None
    kind = doc.get("type")
    if type(kind) is not str or kind not in _KINDS:
        return None
    if not _FIELD_NAMES.isdisjoint(doc):
        return None  # the models also read field names (populate_by_name): let them decide
    mid, aid, uid = doc.get("messageId"), doc.get("anonymousId"), doc.get("userId")
    if not (_is_id(mid) and _is_id_or_none(aid) and _is_id_or_none(uid)) or (aid is uid is None):
        return None
    at = read_timestamp(doc.get("timestamp"))
    if at is None:
        return None
    context = doc.get("context", {})
    properties = doc.get("properties", {})
    traits = doc.get("traits", {})
    if type(context) is not dict or type(properties) is not dict or type(traits) is not dict:
        return None
    event = page_name = None
    if kind == "track":
        event = doc.get("event")
        if type(event) is not str or not 0 < len(event) <= MAX_ID_LENGTH:
            return None
    elif kind == "page":
        page_name = doc.get("name")
        if page_name is not None and type(page_name) is not str:
            return None
    elif kind == "group":
        group_id = doc.get("groupId")
        if group_id is not None and type(group_id) is not str:
            return None
    return person_event(
        kind=kind,
        message_id=cast(str, mid),
        anonymous_id=aid,
        user_id=uid,
        ts_ms=(at - EPOCH) // MS,
        context=context,
        event=event,
        properties=properties if kind in ("track", "page") else {},
        page_name=page_name,
        traits=traits if kind in ("identify", "group") else {},
        src=src,
    )


#: The models reject a document nested 200 levels deep (orjson reads 1,024): one with more
#: opening brackets than this, however nested, is left to them.
_FAST_PATH_MAX_BRACKETS = 150


def read_timestamp(value: object) -> datetime | None:
    """An ISO 8601 timestamp as the intake's fast path takes one (UTC when it names no
    zone); None when it does not (the models then decide, and word the rejection)."""
    if type(value) is not str or not _ISO.fullmatch(value):
        return None
    try:
        at = datetime.fromisoformat(value)
    except ValueError:
        return None
    if at.year in (1, 9999):
        return None  # near datetime's limits an offset can overflow UTC: the models decide
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


_KINDS = frozenset({"track", "page", "identify", "group"})
_FIELD_NAMES = frozenset({"message_id", "anonymous_id", "user_id", "group_id"})


def _is_id(value: Any) -> bool:
    return type(value) is str and 0 < len(value) <= MAX_ID_LENGTH


def _is_id_or_none(value: Any) -> bool:
    return value is None or _is_id(value)


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


def decode_published_model(value: bytes | None) -> PublishedModel | Rejection:
    """A `lead.model` record, or why it cannot be used; never raises on bad input.

    Anyone with produce rights can write there, so it is read as untrusted input.
    """
    if not value:
        return Rejection("empty_value", "the record has no value")
    try:
        return _PUBLISHED.validate_json(value)
    except ValidationError as exc:
        return _rejection(value, exc)


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


def encode_batch(batch: PersonEventBatch) -> bytes:
    """A `leadstream.person-events` record: the same bytes as `encode`, at a third of the
    cost for the intake's batches of events alone (every event is written once this way).

    A PersonEvent holds only JSON's own types, in field order, so orjson writes its fields
    as pydantic would. Other batches (identity messages, feedback, erasure: they hold
    datetimes), and an event orjson cannot write (an integer trait past 64 bits), take
    `encode`.
    """
    if any(getattr(batch, name) for name in _NO_MESSAGES):
        return encode(batch)
    try:
        return orjson.dumps({"events": [e.__dict__ for e in batch.events], **_NO_MESSAGES})
    except orjson.JSONEncodeError:
        return encode(batch)


def encode_scored(scored: LeadScored) -> bytes:
    """A `leads.scored` record: the same bytes as `encode`, at ~60% of the cost (it runs for
    every change of a lead's scores; pydantic's serializer took ~7.3 µs for one here, this
    ~4.4; ~5% of the worker's main thread in a backlog before).

    orjson writes each model's `__dict__`: its fields in their order, holding JSON's own
    types and the nested models (score lines), as `encode_state` does for a lead. Times in
    UTC only (pydantic writes them as orjson does with OPT_UTC_Z); a time in any other
    zone, and anything else orjson cannot write, takes `encode`. The codec's tests compare
    the two on generated traffic."""
    fields = scored.__dict__
    if fields["occurred_at"].tzinfo is not UTC or fields["created_at"].tzinfo is not UTC:
        return encode(scored)
    try:
        return orjson.dumps(fields, default=_model_fields, option=orjson.OPT_UTC_Z)
    except orjson.JSONEncodeError:
        return encode(scored)


def _model_fields(value: object) -> dict[str, Any]:
    if isinstance(value, BaseModel):
        return value.__dict__
    raise TypeError(f"not a model: {type(value).__name__}")


#: The fields of a PersonEventBatch after `events`, empty, in their order.
_NO_MESSAGES: dict[str, list[object]] = {
    name: [] for name in PersonEventBatch.model_fields if name != "events"
}


def encode_state(lead: LeadState) -> bytes:
    """A lead for the leads table: the same bytes as `encode`, at half the cost.

    LeadState holds only JSON's own types (str, int, float, bool, None, dicts with str keys,
    tuples), in field order, so orjson writes its fields as pydantic would. This runs for
    every changed lead at every state flush.

    The bytes are copied once to their own size before they are kept (in the table's
    in-memory store, for as long as the lead lives). Kept as orjson returns them, each
    held ~8 KiB of the worker's memory instead of its ~0.8 KiB (measured: 3.5x the RSS at
    100,000 leads): orjson builds its output in a larger buffer and shrinks it in place,
    and the space that frees is left in pieces the next values do not fit.
    """
    try:
        return memoryview(orjson.dumps(lead.__dict__)).tobytes()
    except orjson.JSONEncodeError:
        # A value orjson cannot write (an integer past 64 bits: a CRM account's head count
        # may be one): pydantic writes it, and the same bytes for the rest.
        return encode(lead)


def decode_state(value: bytes) -> LeadState:
    """A lead from the leads table. We wrote it, so errors are bugs: raise."""
    return _STATE.validate_json(value)


def decode_rotation(value: bytes) -> RoutingState:
    """A partition's routing state from the leads table. Written before routing rules
    existed, it held only the round-robin positions (`{"next": ...}`): read as those."""
    doc = orjson.loads(value)
    if isinstance(doc, dict) and set(doc) == {"next"}:
        return RoutingState(rotation=doc["next"])
    return _ROUTING.validate_json(value)


def decode_batch(value: bytes) -> PersonEventBatch:
    """Decode a `leadstream.person-events` record. We wrote it, so errors are bugs: raise."""
    return _BATCH.validate_json(value)


def decode_forwarded(value: bytes) -> PersonEventBatch:
    """A person-events record this worker's intake process wrote (`encode_batch`), for the
    handover: the batch `decode_batch` gives, for less. `encode_batch` writes every field of
    an event, of JSON's own types, so events are rebuilt unvalidated; a record of anything
    else (feedback, erasure) goes through `decode_batch`."""
    data = orjson.loads(value)
    if any(data.get(name) for name in _NO_MESSAGES) or data.keys() != _BATCH_FIELDS:
        return decode_batch(value)
    events = data["events"]
    for fields in events:
        src = fields["src"]
        if src is not None:
            fields["src"] = tuple(src)
        traits = fields["traits"]
        if traits and float in map(type, traits.values()) and _past_64_bits(traits):
            # An integer past 64 bits (the intake keeps traits within them, but a batch
            # built otherwise may hold one): orjson reads it as a float, pydantic exactly.
            return decode_batch(value)
    return trusted(
        PersonEventBatch,
        {"events": tuple([trusted(PersonEvent, fields) for fields in events]), **_EMPTY_MESSAGES},
    )


def _past_64_bits(traits: dict[str, Any]) -> bool:
    """A float orjson may have read from an integer it holds no other way."""
    return any(
        type(v) is float and v.is_integer() and not -(2**63) <= v < 2**64 for v in traits.values()
    )


_BATCH_FIELDS = PersonEventBatch.model_fields.keys()
_EMPTY_MESSAGES: dict[str, tuple[()]] = {
    name: () for name in PersonEventBatch.model_fields if name != "events"
}


def decode_contact_batch(value: bytes) -> ContactUpdateBatch:
    """Decode a `leadstream.account-updates` record. We wrote it, so errors are bugs: raise."""
    return _CONTACTS.validate_json(value)


def decode_account(value: bytes) -> AccountState:
    """An account from the accounts table. We wrote it, so errors are bugs: raise."""
    return _ACCOUNT.validate_json(value)


def decode_sales_feedback(value: bytes | None) -> SalesFeedback | Rejection:
    """One `sfa.feedback` record (or feedback file line); never raises on bad input."""
    if not value:
        return Rejection("empty_value", "the record has no value")
    try:
        return _FEEDBACK.validate_json(value)
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in err["loc"])
        if err["type"] == "json_invalid":
            return Rejection("invalid_json", f"the value is not JSON: {err['msg']}")
        if err["type"] == "missing":
            return Rejection("missing_field", f"{where}: field required")
        return Rejection("invalid_value", f"{where}: {err['msg']}" if where else err["msg"])


def decode_erasure_request(value: bytes | None) -> ErasureRequest | Rejection:
    """One `leadstream.erasure` record; never raises on bad input. The rejection never
    quotes the value: it names a person."""
    if not value:
        return Rejection("empty_value", "the record has no value")
    try:
        return _ERASURE.validate_json(value)
    except ValidationError as exc:
        err = exc.errors(include_url=False, include_input=False)[0]
        where = ".".join(str(p) for p in err["loc"])
        if err["type"] == "json_invalid":
            return Rejection("invalid_json", "the value is not JSON")
        if err["type"] == "missing":
            return Rejection("missing_field", f"{where}: field required")
        return Rejection("invalid_value", f"{where}: {err['type']}" if where else err["type"])


def decode_crm_account(value: bytes | None) -> CrmAccount | Rejection:
    """A `crm.accounts` record, or why it cannot be used; never raises on bad input.

    A null value is a tombstone, not an error: callers check for it before decoding.
    """
    if not value:
        return Rejection("empty_value", "the record has no value")
    try:
        return _CRM_ACCOUNT.validate_json(value)
    except ValidationError as exc:
        return _rejection(value, exc)


def decode_output(cls: type[_Out], value: bytes | None) -> _Out | None:
    """One of our own output records read back (reports, tools); None if it is not one."""
    if not value:
        return None
    try:
        return cls.model_validate_json(value)
    except ValidationError:
        return None
