"""The data-quality report's figures, from records as the topics hold them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from schemas.decisions import DeadLetter, HandOff, LeadMerged
from streams.quality import quality_report, render_quality
from streams.quality_cli import parse_when

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def handoff(
    lead: str,
    *,
    email: str | None,
    domain: str | None,
    timeline: str,
    hours: int = 0,
    account: str | None = None,
) -> HandOff:
    return HandOff(
        handoff_id=f"h-{lead}-{hours}",
        lead_id=lead,
        reason="mql",
        trigger=None,
        email=email,
        name=None,
        company=None,
        account_domain=domain,
        account_id=account,
        account_match="domain" if account else None,
        account_match_confidence=1.0 if account else None,
        rep_id="r",
        rep_name="R",
        rep_email="r@x.example",
        routing_rule="fallback",
        routing_team=None,
        routing_trail=(),
        score=100,
        breakdown=(),
        qualified_by=("engagement",),
        fit=0,
        grade="D",
        stage="mql",
        purchase_timeline=timeline,
        purchase_timeline_text=None,
        budget="unknown",
        budget_text=None,
        authority="unknown",
        authority_text=None,
        need="unknown",
        need_text=None,
        recent_activity=(),
        model_version="v",
        created_at=NOW + timedelta(hours=hours),
    )


def dead(reason: str) -> DeadLetter:
    return DeadLetter(
        reason=reason,
        message="m",
        source_topic="engagement.raw",
        partition=0,
        offset=1,
        key=None,
        value="x",
        value_encoding="utf-8",
        received_at=NOW,
    )  # type: ignore[arg-type]


def test_the_report_counts_each_lead_once_as_it_is_now() -> None:
    report = quality_report(
        since=NOW - timedelta(days=7),
        until=NOW,
        merges=[
            LeadMerged(
                lead_id="a",
                merged_lead_ids=("b", "c"),
                why="email",
                score=1,
                stage="known",
                model_version="v",
                created_at=NOW,
            ),
            LeadMerged(
                lead_id="d",
                merged_lead_ids=("e",),
                why="userId",
                score=1,
                stage="known",
                model_version="v",
                created_at=NOW,
            ),
        ],
        handoffs=[
            handoff(
                "a",
                email="pat@acme.example",
                domain="acme.example",
                timeline="unknown",
                account="crm-1",
            ),
            # handed off again later, now with a timeline: counts once, as it is now
            handoff(
                "a",
                email="pat@acme.example",
                domain="acme.example",
                timeline="within_3_months",
                hours=1,
                account="crm-1",
            ),
            handoff("f", email="kim@gmail.com", domain=None, timeline="unknown"),
            handoff("g", email=None, domain=None, timeline="within_3_months"),
        ],
        dead_letters=[dead("invalid_json"), dead("invalid_json"), dead("missing_identity")],
        free_mail=frozenset({"gmail.com"}),
    )

    assert (report.merges, report.merged_leads, report.merges_by_why) == (
        2,
        3,
        {"email": 1, "userId": 1},
    )
    assert (report.handoffs, report.unknown_timeline, report.free_mail) == (3, 1, 1)
    assert (report.unmatched, report.no_email) == (2, 1)
    assert (report.dead_letters, report.dead_by_reason) == (
        3,
        {"invalid_json": 2, "missing_identity": 1},
    )
    text = render_quality(report)
    assert "duplicates merged          3 leads in 2 merges (email 1, userId 1)" in text
    assert "  with unknown timeline    1 (33%)" in text
    assert "  invalid_json             2" in text


def test_an_empty_range_prints_no_division_by_zero() -> None:
    report = quality_report(
        since=NOW, until=NOW, merges=[], handoffs=[], dead_letters=[], free_mail=frozenset()
    )
    assert "with unknown timeline    0 (n/a)" in render_quality(report)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("7d", NOW - timedelta(days=7)),
        ("12h", NOW - timedelta(hours=12)),
        ("2026-11-01", datetime(2026, 11, 1, tzinfo=UTC)),
        ("2026-11-01T09:30:00Z", datetime(2026, 11, 1, 9, 30, tzinfo=UTC)),
    ],
)
def test_time_range_arguments(text: str, expected: datetime) -> None:
    assert parse_when(text, now=NOW) == expected


def test_a_bad_time_is_an_error() -> None:
    with pytest.raises(ValueError):
        parse_when("last tuesday", now=NOW)
