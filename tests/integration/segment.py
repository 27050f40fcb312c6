"""Builders of Segment Spec messages for the integration tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

NOW = datetime.now(UTC)


def ts(days_ago: float = 0.0) -> str:
    return (NOW - timedelta(days=days_ago)).isoformat().replace("+00:00", "Z")


def page(
    mid: str, path: str, *, anon: str | None = None, user: str | None = None, days_ago: float = 0.0
) -> dict[str, Any]:
    return _base("page", mid, anon, user, days_ago) | {"properties": {"path": path}}


def track(
    mid: str, event: str, *, anon: str | None = None, user: str | None = None, days_ago: float = 0.0
) -> dict[str, Any]:
    return _base("track", mid, anon, user, days_ago) | {"event": event, "properties": {}}


def identify(
    mid: str,
    *,
    anon: str | None = None,
    user: str | None = None,
    days_ago: float = 0.0,
    **traits: Any,
) -> dict[str, Any]:
    return _base("identify", mid, anon, user, days_ago) | {"traits": traits}


def _base(
    kind: str, mid: str, anon: str | None, user: str | None, days_ago: float
) -> dict[str, Any]:
    msg: dict[str, Any] = {"type": kind, "messageId": mid, "timestamp": ts(days_ago)}
    if anon:
        msg["anonymousId"] = anon
    if user:
        msg["userId"] = user
    return msg
