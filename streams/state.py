"""Per-lead state kept in the leads table: compact, bounded, and enough to score exactly."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from schemas.decisions import Stage
from schemas.internal import TraitValue

__all__ = ["LeadState", "Rotation"]


class LeadState(BaseModel):
    """One person's lead. Short field names: this is written once per batch per lead.

    Bounded by construction: `seen`, `activity` and `hits` are trimmed to settings-given
    lengths, and `rules` has at most one entry per rule of the model.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    lead_id: str
    pk: str  # person key
    aids: tuple[str, ...] = ()  # anonymousIds seen (most recent last, at most 5)
    uid: str | None = None
    traits: dict[str, TraitValue] = {}
    rules: dict[str, tuple[int, int]] = {}  # engagement rule id -> (points, events)
    hits: dict[str, tuple[int, ...]] = {}  # trigger id -> recent matching event times, ms
    fired: dict[str, int] = {}  # trigger id -> event time it last fired, ms
    pending: tuple[tuple[str, str, int], ...] = ()  # (trigger, messageId, ms) while anonymous
    score: int = 0
    stage: Stage = "anonymous"
    rep: str | None = None
    route_rule: str | None = None
    mql_ms: int | None = None
    activity: tuple[tuple[int, str, str], ...] = ()  # (event ms, kind, label), oldest first
    seen: tuple[str, ...] = ()  # digests of recent messageIds, oldest first


class Rotation(BaseModel):
    """Round-robin positions per pool of reps, kept per partition of the leads table."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    next: dict[str, int] = {}
