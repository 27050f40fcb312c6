"""Normalization: a validated Segment message to the compact event the lead core reads."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from schemas.decisions import trusted
from schemas.events import EngagementEvent, GroupEvent, IdentifyEvent, PageEvent, TrackEvent
from schemas.internal import PersonEvent, TraitValue

__all__ = ["EPOCH", "MS", "normalize", "normalize_email", "person_event", "person_key"]

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
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MS = timedelta(milliseconds=1)


def person_key(event: EngagementEvent) -> str:
    """Whose event this is: the browser's anonymousId when there is one, else the userId.

    Browser SDKs send the anonymousId on every call, before and after `identify`, so an
    anonymous visitor and the person they turn out to be share one key and one partition.
    """
    return _person_key(event.anonymous_id, event.user_id)


def _person_key(anonymous_id: str | None, user_id: str | None) -> str:
    return anonymous_id or user_id or ""


def normalize_email(value: str) -> str | None:
    email = value.strip().lower()
    if "@" not in email or email.startswith("@") or email.endswith("@"):
        return None
    return email


def normalize(event: EngagementEvent) -> PersonEvent:
    """The compact, normalized form the lead core works on."""
    return person_event(
        kind=event.type,
        message_id=event.message_id,
        anonymous_id=event.anonymous_id,
        user_id=event.user_id,
        ts_ms=(event.timestamp - EPOCH) // MS,  # exact: no float rounding
        context=event.context,
        event=event.event if isinstance(event, TrackEvent) else None,
        properties=event.properties if isinstance(event, TrackEvent | PageEvent) else {},
        page_name=event.name if isinstance(event, PageEvent) else None,
        traits=event.traits if isinstance(event, IdentifyEvent | GroupEvent) else {},
    )


def person_event(
    *,
    kind: str,
    message_id: str,
    anonymous_id: str | None,
    user_id: str | None,
    ts_ms: int,
    context: Mapping[str, Any],
    event: str | None,
    properties: Mapping[str, Any],
    page_name: str | None,
    traits: Mapping[str, Any],
) -> PersonEvent:
    """Normalization from validated fields; shared by the model path and the fast path."""
    ours: dict[str, TraitValue] = _traits(traits) if traits else {}
    asset = None
    if kind == "track":
        name = event or ""
        asset = _asset(properties)
    elif kind == "page":
        name = _page_path(properties, page_name)
    else:
        name = ""
    # Segment puts known traits in context.traits on track/page calls too.
    context_traits = context.get("traits")
    if isinstance(context_traits, dict):
        ours = {**_traits(context_traits), **ours}
    location = context.get("location")
    if "country" not in ours and isinstance(location, dict):
        country = location.get("country")
        if isinstance(country, str):
            ours["country"] = country
    if isinstance(ours.get("country"), str):
        ours["country"] = str(ours["country"]).strip().upper()
    return trusted(
        PersonEvent,
        {
            "mid": message_id,
            "pk": _person_key(anonymous_id, user_id),
            "kind": kind,
            "name": name[:_MAX_TRAIT_CHARS],
            "ts_ms": ts_ms,
            "aid": anonymous_id,
            "uid": user_id,
            "traits": ours,
            "asset": asset,
        },
    )


_ASSET_PROPERTIES = ("asset", "asset_id", "assetId", "title", "name", "url")


def _asset(properties: Mapping[str, Any]) -> str | None:
    """What a track event was about (the whitepaper, the webinar), for per-asset caps."""
    for key in _ASSET_PROPERTIES:
        value = properties.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip()[:_MAX_TRAIT_CHARS]
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
    return None


def _page_path(properties: Mapping[str, Any], page_name: str | None) -> str:
    path = properties.get("path")
    if isinstance(path, str) and path:
        return path
    url = properties.get("url")
    if isinstance(url, str) and url:
        return urlsplit(url).path or "/"
    return page_name or "/"


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
