"""`sfa.feedback`: what sales reports back about a lead, from the SFA (or a file for replay)."""

from __future__ import annotations

from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

__all__ = ["REJECT_REASONS", "RejectReason", "SalesFeedback", "Status"]

#: accepted -> sal; rejected -> recycled (back to marketing, with the reason); contacted
#: keeps the stage (the clock of the hand-off SLA stops at accepted or contacted);
#: opportunity, won, lost -> the stage of that name.
Status = Literal["accepted", "rejected", "contacted", "opportunity", "won", "lost"]

#: Why a rep rejected a lead; `other` needs `reason_text`.
RejectReason = Literal[
    "bad_timing", "no_budget", "not_decision_maker", "duplicate", "bad_data", "other"
]
REJECT_REASONS: tuple[str, ...] = RejectReason.__args__  # type: ignore[attr-defined]


class SalesFeedback(BaseModel):
    """One status change of one lead, reported by the SFA; keyed by `lead_id` on the topic."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    feedback_id: str = Field(min_length=1, max_length=128, description="Unique; for dedupe.")
    lead_id: str = Field(min_length=1, max_length=64)
    rep_id: str | None = Field(default=None, max_length=64)
    status: Status
    reason: str | None = Field(
        default=None,
        max_length=64,
        description="rejected: one of " + ", ".join(REJECT_REASONS) + "; lost: free text.",
    )
    reason_text: str | None = Field(default=None, max_length=500)
    amount: float | None = Field(default=None, ge=0, description="opportunity, won: deal value.")
    currency: str | None = Field(default=None, pattern=r"^[A-Z]{3}$", description="ISO 4217.")
    occurred_at: AwareDatetime

    @model_validator(mode="after")
    def _reason_fits_status(self) -> SalesFeedback:
        if self.status == "rejected":
            if self.reason not in REJECT_REASONS:
                raise ValueError(f"a rejection needs a reason: one of {', '.join(REJECT_REASONS)}")
            if self.reason == "other" and not self.reason_text:
                raise ValueError("reason 'other' needs reason_text")
        return self
