"""Sales outcomes move a lead through the sales stages; recycling sends it back to marketing."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from schemas.decisions import HandOff, LeadScored, RepAlert
from schemas.feedback import SalesFeedback
from schemas.internal import PersonEvent
from streams.lead_model import LeadModel
from streams.leads import Limits, apply_event, apply_outcome
from streams.state import LeadState

Segment = Callable[..., PersonEvent]
AT = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)


def mql_lead(segment: Segment, model: LeadModel, now: datetime) -> LeadState:
    """Jane: fit A, a demo request and a whitepaper: 90 points... plus pricing: an MQL."""
    events = [
        segment(
            "identify",
            "i",
            traits={
                "email": "jane@acme-robotics.com",
                "employees": 120,
                "country": "US",
                "title": "VP Operations",
            },
        ),
        segment("track", "d", day=1, event="Demo Requested"),
        segment("track", "w", day=1, event="Whitepaper Downloaded", properties={"asset": "g"}),
        segment("page", "p", day=1, properties={"path": "/pricing"}),
    ]
    lead = None
    for event in events:
        lead = apply_event(lead, event, model=model, rotation={}, limits=Limits(), now=now).lead
    assert lead is not None and lead.stage == "mql"
    return lead


def outcome(lead: LeadState, what: str, **extra: Any) -> SalesFeedback:
    if what == "rejected":
        extra.setdefault("reason", "bad_timing")
    return SalesFeedback(
        feedback_id=f"f-{what}", lead_id=lead.lead_id, status=what, occurred_at=AT, **extra
    )  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("what", "stage", "reason"),
    [
        ("accepted", "sal", "accepted by rep"),
        ("opportunity", "opportunity", "opportunity created"),
        ("won", "won", "won"),
        ("lost", "lost", "lost"),
        ("rejected", "recycled", "rejected by rep: bad_timing"),
        ("contacted", "sal", "contacted by rep"),
    ],
)
def test_each_outcome_moves_the_lead_to_its_stage_with_the_reason(
    segment: Segment, model: LeadModel, now: datetime, what: str, stage: str, reason: str
) -> None:
    lead = mql_lead(segment, model, now)

    applied = apply_outcome(lead, outcome(lead, what), model=model, now=now)

    (scored,) = applied.decisions
    assert isinstance(scored, LeadScored)
    assert (scored.previous_stage, scored.stage, scored.reason) == ("mql", stage, reason)
    assert scored.occurred_at == AT and scored.model_version == model.version
    assert applied.lead.stage == stage


def test_the_reason_given_by_sales_is_kept(
    segment: Segment, model: LeadModel, now: datetime
) -> None:
    lead = mql_lead(segment, model, now)

    applied = apply_outcome(lead, outcome(lead, "lost", reason="no budget"), model=model, now=now)

    (scored,) = applied.decisions
    assert isinstance(scored, LeadScored) and scored.reason == "lost: no budget"


def test_engagement_does_not_move_a_lead_out_of_a_sales_stage(
    segment: Segment, model: LeadModel, now: datetime
) -> None:
    lead = apply_outcome(
        mql_lead(segment, model, now),
        outcome(mql_lead(segment, model, now), "opportunity"),
        model=model,
        now=now,
    ).lead

    later = apply_event(
        lead,
        segment("track", "d2", day=3, event="Demo Requested"),
        model=model,
        rotation={},
        limits=Limits(),
        now=now,
    )

    assert later.lead.stage == "opportunity"
    assert later.lead.score > lead.score  # still scored: marketing sees the engagement
    assert not [
        d for d in later.decisions if isinstance(d, HandOff | RepAlert) and d.trigger is None
    ]


def test_a_recycled_lead_starts_over_and_must_earn_its_mql_again(
    segment: Segment, model: LeadModel, now: datetime
) -> None:
    lead = mql_lead(segment, model, now)

    recycled = apply_outcome(lead, outcome(lead, "rejected"), model=model, now=now)

    (scored,) = recycled.decisions
    assert isinstance(scored, LeadScored)
    assert (scored.score, scored.previous_score, scored.breakdown) == (0, lead.score, ())
    assert recycled.lead.rules == {} and recycled.lead.stage == "recycled"
    # Re-engaging past the threshold makes it an MQL again, handed off again.
    back = recycled.lead
    for event in [
        segment("track", "d9", day=4, event="Demo Requested"),
        segment("track", "f9", day=4, event="Form Submitted"),
        segment("track", "x9", day=4, event="Trade Show Visited"),
    ]:
        step = apply_event(back, event, model=model, rotation={}, limits=Limits(), now=now)
        back = step.lead
    assert back.stage == "mql"
    (last,) = [d for d in step.decisions if isinstance(d, LeadScored)]
    assert last.reason is not None and last.reason.startswith("re-qualified: engagement 105 >= 100")
    assert [d.reason for d in step.decisions if isinstance(d, HandOff)] == ["mql"]


def test_an_outcome_that_changes_nothing_emits_nothing(
    segment: Segment, model: LeadModel, now: datetime
) -> None:
    lead = mql_lead(segment, model, now)
    won = apply_outcome(lead, outcome(lead, "won"), model=model, now=now).lead

    again = apply_outcome(won, outcome(won, "won"), model=model, now=now)

    assert again.decisions == () and again.lead is won


def test_sales_feedback_rejects_bad_input() -> None:
    base = {"feedback_id": "f", "lead_id": "ld_1", "occurred_at": "2026-11-25T10:00:00Z"}
    with pytest.raises(ValueError, match="status"):
        SalesFeedback.model_validate({**base, "status": "maybe"})
    with pytest.raises(ValueError, match="timezone"):
        SalesFeedback.model_validate(
            {**base, "status": "won", "occurred_at": "2026-11-25T10:00:00"}
        )
    with pytest.raises(ValueError, match="a rejection needs a reason"):
        SalesFeedback.model_validate({**base, "status": "rejected"})
    with pytest.raises(ValueError, match="reason 'other' needs reason_text"):
        SalesFeedback.model_validate({**base, "status": "rejected", "reason": "other"})
    ok = SalesFeedback.model_validate(
        {**base, "status": "rejected", "reason": "other", "reason_text": "wrong country"}
    )
    assert ok.reason_text == "wrong country"
