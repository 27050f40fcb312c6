"""Per-lead state kept in the leads table: compact, bounded, and enough to score exactly."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from schemas.decisions import Stage
from schemas.internal import TraitValue

__all__ = ["AccountState", "LeadState", "Rotation"]


class LeadState(BaseModel):
    """One person's lead. Short field names: this is written once per batch per lead.

    Bounded by construction: `seen`, `history`, `hits` and the cap memories are trimmed to
    fixed or settings-given lengths, and the per-rule maps have at most one entry per rule
    of the model.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    lead_id: str
    pk: str  # person key
    aids: tuple[str, ...] = ()  # anonymousIds seen (most recent last, at most 5)
    uid: str | None = None
    traits: dict[str, TraitValue] = {}
    # Engagement since each score last reset: rule id -> (raw points, counted points,
    # events, counted events, score id); "counted" is after caps. Rules a newer model
    # dropped stay until their score resets: their points are still in it.
    rules: dict[str, tuple[int, int, int, int, str]] = {}
    days: dict[str, tuple[tuple[int, int], ...]] = {}  # rule -> recent (UTC day, counted)
    assets: dict[str, tuple[str, ...]] = {}  # rule -> digests of assets counted
    # score id -> (decayed value at as_of, as_of ms, ms the current run started)
    decay: dict[str, tuple[float, int, int]] = {}
    scores: dict[str, int] = {}  # score id -> points as last reported
    score: int = 0  # the primary score as last reported
    fit: int = 0
    grade: str = "D"
    last_ms: int = 0  # latest event time seen: the lead's clock for decay
    hits: dict[str, tuple[int, ...]] = {}  # trigger id -> recent matching event times, ms
    fired: dict[str, int] = {}  # trigger id -> event time it last fired, ms
    pending: tuple[tuple[str, str, int], ...] = ()  # (trigger, messageId, ms) while anonymous
    stage: Stage = "anonymous"
    stage_ms: int = 0  # event time of the last stage change
    rep: str | None = None
    route_rule: str | None = None
    mql_ms: int | None = None
    model: str = ""  # version of the model that last scored this lead
    # Recent events, oldest first: (event ms, kind, name, asset). The scoring history a
    # `--rescore` replays, and the recent activity on a hand-off.
    history: tuple[tuple[int, str, str, str | None], ...] = ()
    seen: tuple[str, ...] = ()  # digests of recent messageIds, oldest first


class Rotation(BaseModel):
    """Round-robin positions per pool of reps, kept per partition of the leads table."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    next: dict[str, int] = {}


class AccountState(BaseModel):
    """One account (company email domain): its engaged contacts, for the roll-up."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    domain: str
    contacts: dict[str, tuple[int, int]] = {}  # lead id -> (primary score, event ms)
    score: int = 0
    rep: str | None = None
    fired_ms: int | None = None  # event time the buying-group trigger last fired
    seen: tuple[str, ...] = ()  # ids of updates applied, for idempotence
