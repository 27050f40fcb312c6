"""Activity retention: a lead's event history keeps nothing older than N days by its clock."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import pytest

from schemas.decisions import LeadScored
from schemas.internal import PersonEvent
from streams.lead_model import LeadModel
from streams.leads import Limits, merge_leads
from streams.settings import Settings
from tests.unit.test_leads import assert_adds_up, run

Segment = Callable[..., PersonEvent]
DAY_MS = 86_400_000
THIRTY_DAYS = Limits(activity_retention_ms=30 * DAY_MS)


def story(
    segment: Segment, *, anonymous_id: str = "anon-1", prefix: str = "r"
) -> list[PersonEvent]:
    """Pricing and a whitepaper on days 0-1, then a product page on day 45."""
    return [
        segment(
            "page", f"{prefix}-1", day=0, anonymous_id=anonymous_id, properties={"path": "/pricing"}
        ),
        segment(
            "track",
            f"{prefix}-2",
            day=1,
            anonymous_id=anonymous_id,
            event="Whitepaper Downloaded",
            properties={"title": "Robot ROI"},
        ),
        segment(
            "page",
            f"{prefix}-3",
            day=45,
            anonymous_id=anonymous_id,
            properties={"path": "/product/x"},
        ),
    ]


def test_activity_older_than_the_retention_leaves_the_history_when_the_lead_is_touched(
    segment: Segment, model: LeadModel, now: datetime
) -> None:
    events = story(segment)

    before = run(events[:2], model, now=now, limits=THIRTY_DAYS).lead
    after = run(events, model, now=now, limits=THIRTY_DAYS).lead

    assert before is not None and after is not None
    assert [name for _, _, name, _ in before.history] == ["/pricing", "Whitepaper Downloaded"]
    # Day 45 moves the lead's clock: days 0 and 1 are more than 30 days before it.
    assert [name for _, _, name, _ in after.history] == ["/product/x"]
    assert after.events == 3  # the count of events applied is not activity: it stays


def test_retention_keeps_the_scores_and_their_breakdowns(
    segment: Segment, model: LeadModel, now: datetime
) -> None:
    events = story(segment)

    kept = run(events, model, now=now)
    trimmed = run(events, model, now=now, limits=THIRTY_DAYS)

    assert kept.lead is not None and trimmed.lead is not None
    assert len(kept.lead.history) == 3 and len(trimmed.lead.history) == 1
    assert trimmed.lead.scores == kept.lead.scores
    assert trimmed.lead.score == kept.lead.score > 0
    last = [d for d in trimmed.decisions if isinstance(d, LeadScored)][-1]
    assert {line.rule for line in last.breakdown} >= {
        "engagement:whitepaper",
        "engagement:pricing-view",
    }
    assert_adds_up(trimmed.decisions)


def test_no_retention_is_the_default_and_keeps_history_by_count_only(
    segment: Segment, model: LeadModel, now: datetime
) -> None:
    lead = run(story(segment), model, now=now, limits=Limits()).lead
    assert lead is not None and len(lead.history) == 3
    assert Settings().core_limits().activity_retention_ms == 0
    days = Settings(activity_retention_days=90).core_limits().activity_retention_ms
    assert days == 90 * DAY_MS


def test_a_merge_with_a_history_trimmed_by_age_adds_engagement_up_instead_of_losing_it(
    segment: Segment, model: LeadModel, now: datetime
) -> None:
    a = run(
        story(segment, anonymous_id="anon-a", prefix="a"), model, now=now, limits=THIRTY_DAYS
    ).lead
    b = run(
        [segment("page", "b-1", day=46, anonymous_id="anon-b", properties={"path": "/careers"})],
        model,
        now=now,
        limits=THIRTY_DAYS,
    ).lead
    assert a is not None and b is not None and len(a.history) < a.events

    merged = merge_leads(a, b, model=model, rotation={}, limits=THIRTY_DAYS, now=now).lead

    # Replaying the one retained product page would have dropped the whitepaper's and the
    # pricing page's points; adding up keeps them (less the careers page's 10).
    assert merged.score == a.score - 10
    assert [name for _, _, name, _ in merged.history] == ["/product/x", "/careers"]


@pytest.mark.parametrize("days", [-1, 3651])
def test_the_retention_setting_is_bounded(days: float) -> None:
    with pytest.raises(ValueError, match="activity_retention_days"):
        Settings(activity_retention_days=days)
