"""What sales reports back about a lead: the outcomes that move it through the lifecycle."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

__all__ = ["Outcome", "SalesOutcome"]

#: accepted -> sal; rejected and recycled -> recycled (back to marketing);
#: opportunity, won, lost -> the stage of that name.
Outcome = Literal["accepted", "rejected", "opportunity", "won", "lost", "recycled"]


class SalesOutcome(BaseModel):
    """One outcome for one lead, from the SFA (or a feedback file for `model replay`)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    lead_id: str = Field(min_length=1, max_length=64)
    outcome: Outcome
    occurred_at: AwareDatetime
    amount: float | None = Field(default=None, ge=0, description="Deal value, for won.")
    reason: str | None = Field(default=None, max_length=500)

    @property
    def at(self) -> datetime:
        return self.occurred_at
