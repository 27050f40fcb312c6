"""Per-lead state kept in the leads table: compact, bounded, and enough to score exactly."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from schemas.internal import LeadState

__all__ = ["AccountState", "LeadState", "Rotation"]


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
