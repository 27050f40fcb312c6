"""Intake: turn a validated Segment message into a normalized event addressed to one person."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from schemas.decisions import DeadLetter, trusted
from schemas.events import EngagementEvent, GroupEvent, IdentifyEvent, PageEvent, TrackEvent
from schemas.internal import PersonEvent, TraitValue
from streams.codec import Rejection, dead_letter, decode_event
from streams.topics import person_partition


@dataclass(frozen=True, slots=True)
class RawRecord:
    """A record as read from `engagement.raw` (where it came from matters for the DLQ)."""

    value: bytes | None
    key: bytes | None
    topic: str
    partition: int
    offset: int


__all__ = [
    "IntakeResult",
    "RawRecord",
    "group_by_partition",
    "intake_batch",
    "normalize",
    "normalize_email",
    "person_key",
]

# Segment trait names (and common variants) -> our trait names.
_TRAIT_NAMES = {
    "email": "email",
    "name": "name",
    "firstName": "first_name",
    "first_name": "first_name",
    "lastName": "last_name",
    "last_name": "last_name",
    "title": "title",
    "phone": "phone",
    "company": "company",
    "employees": "employees",
    "industry": "industry",
    "country": "country",
    "website": "website",
    "purchase_timeline": "purchase_timeline",
    "purchaseTimeline": "purchase_timeline",
    "budget": "budget",
    "authority": "authority",
}
_MAX_TRAIT_CHARS = 256
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)


def person_key(event: EngagementEvent) -> str:
    """Whose event this is: the browser's anonymousId when there is one, else the userId.

    Browser SDKs send the anonymousId on every call, before and after `identify`, so an
    anonymous visitor and the person they turn out to be share one key and one partition.
    """
    return event.anonymous_id or event.user_id or ""


def normalize_email(value: str) -> str | None:
    email = value.strip().lower()
    if "@" not in email or email.startswith("@") or email.endswith("@"):
        return None
    return email


def normalize(event: EngagementEvent) -> PersonEvent:
    """The compact, normalized form the lead core works on."""
    traits: dict[str, TraitValue] = {}
    name = ""
    if isinstance(event, TrackEvent):
        name = event.event
    elif isinstance(event, PageEvent):
        name = _page_path(event)
    elif isinstance(event, IdentifyEvent | GroupEvent):
        traits = _traits(event.traits)
    # Segment puts known traits in context.traits on track/page calls too.
    context_traits = event.context.get("traits")
    if isinstance(context_traits, dict):
        traits = {**_traits(context_traits), **traits}
    location = event.context.get("location")
    if "country" not in traits and isinstance(location, dict):
        country = location.get("country")
        if isinstance(country, str):
            traits["country"] = country
    if isinstance(traits.get("country"), str):
        traits["country"] = str(traits["country"]).strip().upper()
    return trusted(
        PersonEvent,
        {
            "mid": event.message_id,
            "pk": person_key(event),
            "kind": event.type,
            "name": name[:_MAX_TRAIT_CHARS],
            "ts_ms": (event.timestamp - _EPOCH) // _MS,  # exact: no float rounding
            "aid": event.anonymous_id,
            "uid": event.user_id,
            "traits": traits,
        },
    )


def _page_path(event: PageEvent) -> str:
    path = event.properties.get("path")
    if isinstance(path, str) and path:
        return path
    url = event.properties.get("url")
    if isinstance(url, str) and url:
        return urlsplit(url).path or "/"
    return event.name or "/"


def _traits(raw: Mapping[str, Any]) -> dict[str, TraitValue]:
    out: dict[str, TraitValue] = {}
    for key, value in raw.items():
        ours = _TRAIT_NAMES.get(key)
        if ours is None:
            continue
        if ours == "company" and isinstance(value, dict):
            value = value.get("name")  # Segment allows company as an object
        if ours == "employees":
            value = _int_or_none(value)
        elif ours == "email" and isinstance(value, str):
            value = normalize_email(value)
        elif isinstance(value, str):
            value = value.strip()[:_MAX_TRAIT_CHARS] or None
        elif not isinstance(value, int | float | bool):
            value = None
        if value is not None:
            out[ours] = value
    return out


def _int_or_none(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value == value and abs(value) < 1e12:
        return int(value)
    if isinstance(value, str):
        digits = value.replace(",", "").strip()
        if digits.isdigit():
            return int(digits)
    return None


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
    dead: list[tuple[bytes | None, DeadLetter]] = field(default_factory=list)  # (key, record)
    rejected: Counter[str] = field(default_factory=Counter)  # reason -> count
    received: int = 0
    valid: int = 0


def intake_batch(records: Iterable[RawRecord], *, partitions: int, now: datetime) -> IntakeResult:
    """Validate and normalize raw records; route good ones by person, bad ones to the DLQ."""
    out = IntakeResult()
    for raw in records:
        out.received += 1
        decoded = decode_event(raw.value)
        if isinstance(decoded, Rejection):
            out.rejected[decoded.reason] += 1
            out.dead.append(
                (
                    raw.key,
                    dead_letter(
                        decoded,
                        value=raw.value,
                        key=raw.key,
                        topic=raw.topic,
                        partition=raw.partition,
                        offset=raw.offset,
                        now=now,
                    ),
                )
            )
            continue
        event = normalize(decoded)
        out.valid += 1
        out.forward.setdefault(person_partition(event.pk, partitions), []).append(event)
    return out
