"""The alignment checklist: each item's status and evidence from hand-offs, feedback, SLA
steps, merges and raw events, and the verdict bands."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from schemas.decisions import Activity, HandOff, LeadMerged, SlaEvent
from schemas.feedback import SalesFeedback
from streams.checklist import CHECKLIST_SIZE, Checklist, Evidence, evaluate, render_checklist
from streams.checklist_cli import count_sources, span_words
from streams.lead_model import DEFAULT_MODEL_PATH, load_model

NOW = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)
SPAN = "in the last 30 days"
MODEL = load_model(DEFAULT_MODEL_PATH)


def handoff(lead: str, **facts: Any) -> HandOff:
    return HandOff(
        handoff_id=f"h-{lead}",
        lead_id=lead,
        reason="mql",
        trigger=None,
        email=f"{lead}@acme.example",
        name=None,
        company=None,
        account_domain="acme.example",
        account_id=facts.pop("account_id", None),
        account_match=None,
        account_match_confidence=None,
        rep_id="carla",
        rep_name="Carla",
        rep_email="carla@sales.example",
        routing_rule="fallback",
        routing_team=None,
        routing_trail=(),
        score=100,
        breakdown=(),
        qualified_by=("engagement",),
        fit=20,
        grade="B",
        stage="mql",
        purchase_timeline=facts.pop("timeline", "unknown"),
        purchase_timeline_text=None,
        budget=facts.pop("budget", "unknown"),
        budget_text=None,
        authority=facts.pop("authority", "unknown"),
        authority_text=None,
        need="unknown",
        need_text=None,
        recent_activity=facts.pop("activity", ()),
        model_version="v1",
        created_at=NOW - timedelta(days=1),
    )


def feedback(lead: str, status: str, **extra: Any) -> SalesFeedback:
    return SalesFeedback.model_validate(
        {
            "feedback_id": f"f-{lead}-{status}",
            "lead_id": lead,
            "status": status,
            "occurred_at": NOW.isoformat(),
            **extra,
        }
    )


def sla(step: str, **extra: Any) -> SlaEvent:
    return SlaEvent(
        lead_id="a",
        handoff_id="h-a",
        priority="hot",
        step=step,  # type: ignore[arg-type]
        rep_id="carla",
        to_rep_id=None,
        started_at=NOW,
        due_at=None,
        time_to_accept_s=extra.get("time_to_accept_s"),
        reason="r",
        model_version="v1",
        created_at=NOW,
    )


EMPTY = Evidence(
    since=NOW - timedelta(days=30),
    until=NOW,
    model=MODEL,
    model_source="the model file lead_model.yaml",
    handoffs=(),
    feedback=(),
    sla=(),
    merges=(),
    online_events=0,
    offline_by_source={},
)
ACTIVITY = (Activity(at=NOW, kind="page", label="/pricing"),)


def item(checklist: Checklist, number: int) -> tuple[str, str]:
    found = checklist.items[number - 1]
    assert found.number == number
    return found.status, found.evidence


def test_an_empty_deployment_is_urgent_and_says_why() -> None:
    checklist = evaluate(EMPTY, span=SPAN)
    assert len(checklist.items) == CHECKLIST_SIZE
    assert item(checklist, 2) == ("missing", "no hand-offs in the last 30 days")
    assert item(checklist, 6)[0] == "missing"
    assert [i.status for i in checklist.items[-3:]] == ["cannot-see"] * 3
    # The model is written and agreed; the SLA is in it; dedupe is always on.
    assert {i.number for i in checklist.items if i.status == "good"} == {1, 3, 11}
    assert item(checklist, 9)[0] == "partial"
    assert checklist.verdict.startswith("urgent")


def test_bant_coverage_is_the_share_of_leads_as_last_handed_off() -> None:
    leads = (
        handoff("a", timeline="within_3_months", budget="approved", authority="decision_maker"),
        handoff("b", timeline="within_1_month", budget="planned"),
        handoff("c", timeline="no_plan"),
        handoff("d"),
        handoff("e"),
    )
    ev = replace(EMPTY, handoffs=leads)
    status, evidence = item(evaluate(ev, span=SPAN), 2)
    assert status == "partial"
    assert evidence == (
        "timeline known on 60% of hand-offs in the last 30 days, budget on 40%, "
        "authority on 20% (5 leads)"
    )
    # A re-hand-off of the same lead replaces its first.
    later = handoff("d", timeline="within_1_month", budget="none", authority="user")
    later = later.model_copy(update={"created_at": NOW})
    update = {"budget": "approved", "authority": "influencer"}
    all_known = (*(h.model_copy(update=update) for h in leads[:3]), leads[3], later)
    status, evidence = item(evaluate(replace(EMPTY, handoffs=all_known), span=SPAN), 2)
    assert status == "good"
    assert evidence.startswith("timeline known on 100% of hand-offs")
    assert evidence.endswith("(4 leads)")


def test_feedback_outcomes_roi_and_kpis() -> None:
    leads = tuple(handoff(x, activity=ACTIVITY) for x in "abcd")
    fb = (
        feedback("a", "accepted"),
        feedback("b", "rejected", reason="no_budget"),
        feedback("a", "won", amount=48000, currency="USD"),
    )
    checklist = evaluate(replace(EMPTY, handoffs=leads, feedback=fb), span=SPAN)
    assert item(checklist, 5) == (
        "good",
        "100% of hand-offs in the last 30 days carry the lead's recent activity (pages, "
        "downloads, events) and its score breakdown",
    )
    assert item(checklist, 6) == (
        "good",
        "1 outcomes on sfa.feedback in the last 30 days (accepted 1, rejected 1, won 1)",
    )
    assert item(checklist, 7)[0] == "good"
    assert "4 handed off in the last 30 days, 2 (50%) answered by sales" in item(checklist, 7)[1]
    assert item(checklist, 8) == (
        "good",
        "1 won deals with amounts in the last 30 days (USD 48,000), each traced to a lead",
    )
    assert item(checklist, 10) == (
        "good",
        "sales answered 50% of hand-offs in the last 30 days on sfa.feedback",
    )
    only_accepts = evaluate(
        replace(EMPTY, handoffs=leads, feedback=(feedback("a", "accepted"),)), span=SPAN
    )
    assert item(only_accepts, 6)[0] == "partial"
    assert item(only_accepts, 8)[0] == "missing"
    assert item(only_accepts, 10)[0] == "partial"  # 1 of 4


def test_sla_is_good_once_clocks_run_and_missing_without_a_policy() -> None:
    steps = (
        sla("started"),
        sla("started"),
        sla("accepted", time_to_accept_s=120),
        sla("accepted", time_to_accept_s=240),
        sla("reassigned"),
    )
    status, evidence = item(evaluate(replace(EMPTY, sla=steps), span=SPAN), 9)
    assert status == "good"
    assert evidence.startswith("hot 3/5/15 min, mql ")
    assert evidence.endswith(
        "2 clocks in the last 30 days: 2 accepted, median 3.0 min to accept, 0 escalated, "
        "1 reassigned"
    )
    no_sla = replace(EMPTY, model=MODEL.model_copy(update={"sla": None}))
    assert item(evaluate(no_sla, span=SPAN), 9) == (
        "missing",
        "the lead model has no sla: section",
    )


def test_offline_and_online_joined_and_merges_counted() -> None:
    merged = LeadMerged(
        lead_id="a",
        merged_lead_ids=("b", "c"),
        why="email",
        score=10,
        stage="known",
        model_version="v1",
        created_at=NOW,
    )
    ev = replace(
        EMPTY,
        online_events=3000,
        offline_by_source={"trade_show": 40, "seminar": 2},
        merges=(merged,),
    )
    checklist = evaluate(ev, span=SPAN)
    assert item(checklist, 12) == (
        "good",
        "42 offline events in the last 30 days (seminar 2, trade_show 40) alongside 3,000 "
        "online ones",
    )
    assert "2 leads merged in the last 30 days (email 1)" in item(checklist, 11)[1]
    online_only = evaluate(replace(EMPTY, online_events=5), span=SPAN)
    assert item(online_only, 12)[0] == "partial"
    assert "only online events" in item(online_only, 12)[1]


def test_count_sources_tells_imported_offline_events_from_online_ones() -> None:
    values = [
        orjson.dumps({"type": "page", "properties": {"path": "/pricing"}}),
        orjson.dumps({"type": "track", "event": "Demo Requested", "properties": {}}),
        orjson.dumps({"type": "track", "properties": {"source": "trade_show"}}),
        orjson.dumps({"type": "identify", "traits": {"email": "a@b.example"}}),
        orjson.dumps({"type": "track", "properties": {"source": "newsletter"}}),  # not offline
        b"{not json",
    ]
    assert count_sources(values) == (3, {"trade_show": 1})


@pytest.mark.parametrize(
    ("good", "band"),
    [(15, "good"), (10, "good"), (9, "room to improve"), (5, "room to improve"), (4, "urgent")],
)
def test_verdict_bands(good: int, band: str) -> None:
    from streams.checklist import verdict

    assert verdict(good).startswith(band)


def test_a_well_aligned_deployment_renders_its_verdict() -> None:
    leads = tuple(
        handoff(
            x,
            timeline="within_3_months",
            budget="approved",
            authority="decision_maker",
            account_id="acc-1",
            activity=ACTIVITY,
        )
        for x in "ab"
    )
    fb = (feedback("a", "won", amount=1000, currency="EUR"), feedback("b", "accepted"))
    ev = replace(
        EMPTY,
        handoffs=leads,
        feedback=fb,
        sla=(sla("started"),),
        online_events=10,
        offline_by_source={"seminar": 1},
    )
    checklist = evaluate(ev, span=SPAN)
    assert checklist.good == 12
    text = render_checklist(checklist)
    assert "[x]  2. Timing, budget and authority known when a lead reaches sales: good" in text
    assert "[?] 13. " in text
    assert "12 of 15 good (3 organisational items not counted" in text
    assert text.rstrip().endswith("bands: 10 or more good; 5-9 room to improve; 4 or fewer urgent")


def test_span_words() -> None:
    assert span_words("30d", None) == "in the last 30 days"
    assert span_words("1h", None) == "in the last 1 hour"
    assert span_words("2026-11-01", "2026-11-20") == "since 2026-11-01 until 2026-11-20"
