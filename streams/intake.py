"""Intake: a batch of raw records to dead letters and normalized events by person partition."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from schemas.decisions import DeadLetter
from schemas.erasure import ErasureRequest
from schemas.feedback import SalesFeedback
from schemas.internal import FeedbackIn, Forget, PersonEvent
from streams.codec import (
    Rejection,
    dead_letter,
    decode_erasure_request,
    decode_person_event,
    decode_sales_feedback,
)
from streams.erasure import forget_of
from streams.normalize import (
    DEFAULT_EMAIL_RULES,
    EmailRules,
    normalize,
    normalize_email,
    person_event,
    person_key,
)
from streams.topics import person_partition


@dataclass(frozen=True, slots=True)
class RawRecord:
    """A record as read from `engagement.raw` (where it came from matters for the DLQ)."""

    value: bytes | None
    key: bytes | None
    topic: str
    partition: int
    offset: int


log = logging.getLogger(__name__)


class RawLike(Protocol):
    """What the intake reads of a record: a RawRecord, or aiokafka's ConsumerRecord as the
    consumer returns it (not copied into a RawRecord: that cost ~1 us an event)."""

    @property
    def value(self) -> bytes | None: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...


__all__ = [
    "IntakeResult",
    "RawLike",
    "RawRecord",
    "group_by_partition",
    "intake_batch",
    "normalize",
    "normalize_email",
    "person_event",
    "person_key",
]


def group_by_partition(
    events: Iterable[PersonEvent], partitions: int
) -> dict[int, list[PersonEvent]]:
    """Split events by their person partition, keeping arrival order within each."""
    groups: dict[int, list[PersonEvent]] = {}
    for event in events:
        groups.setdefault(person_partition(event.pk, partitions), []).append(event)
    return groups


@dataclass(slots=True)
class IntakeResult:
    """What one batch of raw records becomes."""

    forward: dict[int, list[PersonEvent]] = field(default_factory=dict)  # by person partition
    feedback: dict[int, list[FeedbackIn]] = field(default_factory=dict)  # by partition too
    forgets: dict[int, list[Forget]] = field(default_factory=dict)  # erasure requests, too
    dead: list[tuple[bytes | None, DeadLetter]] = field(default_factory=list)  # (key, record)
    rejected: Counter[str] = field(default_factory=Counter)  # reason -> count
    valid: int = 0


def intake_batch(
    records: Iterable[RawLike],
    *,
    partitions: int,
    now: datetime,
    feedback_topic: str | None = None,
    erasure_topic: str | None = None,
    email_rules: EmailRules = DEFAULT_EMAIL_RULES,
) -> IntakeResult:
    """Validate and normalize raw records; route good ones by person, bad ones to the DLQ.

    Records from `feedback_topic` are sales feedback: each goes to the partition of the
    entry `lead:<lead_id>` (streams/identity.py), which knows the lead it belongs to.
    Records from `erasure_topic` are erasure requests: each goes to the partition of the
    entry of the email (in its identity form, by `email_rules`) or userId it names. A bad
    one is dead-lettered without its value, which names a person.
    """
    out = IntakeResult()
    good: list[PersonEvent] = []
    for raw in records:
        decoded: PersonEvent | SalesFeedback | ErasureRequest | Rejection
        try:
            if raw.topic == feedback_topic:
                decoded = decode_sales_feedback(raw.value)
            elif raw.topic == erasure_topic:
                decoded = decode_erasure_request(raw.value)
            else:
                # Where it was read: a lead recognises a re-read by it (streams.leads).
                decoded = decode_person_event(raw.value, src=(raw.partition, raw.offset))
        except Exception as exc:
            # A bug, by definition (bad input is a Rejection): dead-lettered, so that one
            # record does not stop the intake, and every restart on it again.
            log.exception("intake: reading %s[%d]@%d failed", raw.topic, raw.partition, raw.offset)
            why = (
                type(exc).__name__ if raw.topic == erasure_topic else f"{type(exc).__name__}: {exc}"
            )
            decoded = Rejection("processing_error", f"reading the record failed: {why}"[:500])
        if isinstance(decoded, SalesFeedback):
            key = f"lead:{decoded.lead_id}"
            out.feedback.setdefault(person_partition(key, partitions), []).append(
                FeedbackIn(to=key, feedback=decoded, offset=raw.offset, partition=raw.partition)
            )
            out.valid += 1
            continue
        if isinstance(decoded, ErasureRequest):
            forget = forget_of(decoded, rules=email_rules)
            out.forgets.setdefault(person_partition(forget.to, partitions), []).append(forget)
            out.valid += 1
            continue
        if isinstance(decoded, Rejection):
            out.rejected[decoded.reason] += 1
            out.dead.append(
                (
                    raw.key,
                    dead_letter(
                        decoded,
                        value=None if raw.topic == erasure_topic else raw.value,
                        key=raw.key,
                        topic=raw.topic,
                        partition=raw.partition,
                        offset=raw.offset,
                        now=now,
                    ),
                )
            )
            continue
        good.append(decoded)
    out.valid += len(good)
    out.forward = group_by_partition(good, partitions)
    return out
