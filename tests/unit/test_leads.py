"""The lead core: identity, dedupe, scores and stages, hand-offs, alerts and model changes."""

from __future__ import annotations

import random
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import orjson
import pytest

from schemas.decisions import Activity, HandOff, LeadScored, RepAlert, SlaEvent
from schemas.internal import ContactUpdate, Link, PersonEvent
from streams.codec import decode_state, encode, encode_state
from streams.lead_model import DEFAULT_MODEL_PATH, LeadModel, parse_model
from streams.leads import (
    DIGEST_CHARS,
    Applied,
    Decision,
    Limits,
    apply_batch,
    apply_event,
    lead_id_for,
    rescore_lead,
    seen_digests,
)
from streams.state import LeadState

Segment = Callable[..., PersonEvent]
DEMO_TEXT = DEFAULT_MODEL_PATH.read_text(encoding="utf-8")


@dataclass
class Run:
    lead: LeadState | None = None
    rotation: dict[str, int] = field(default_factory=dict)
    steps: list[Applied] = field(default_factory=list)

    @property
    def decisions(self) -> list[Decision]:
        return [d for step in self.steps for d in step.decisions]

    def of(self, kind: type) -> list:
        return [d for d in self.decisions if isinstance(d, kind)]

    def kinds(self) -> list[list[str]]:
        """Per step, the records it made, by type (and trigger for alerts); the identity
        graph's messages (tests/unit/test_identity.py) and SLA steps (test_sla.py) left out."""
        return [
            [_kind(d) for d in step.decisions if not isinstance(d, Link | SlaEvent)]
            for step in self.steps
        ]


@pytest.fixture
def plain(model: LeadModel) -> LeadModel:
    """The bundled model without its routing rules: routing by account domain and territory
    round-robin, as models without a `routing:` section route."""
    return model.model_copy(update={"routing": None})


def _kind(d: Decision) -> str:
    if isinstance(d, RepAlert):
        return f"RepAlert:{d.trigger}"
    if isinstance(d, HandOff):
        return f"HandOff:{d.reason}"
    return type(d).__name__


def run(
    events: Iterable[PersonEvent],
    model: LeadModel,
    *,
    now: datetime,
    limits: Limits | None = None,
    start: Run | None = None,
) -> Run:
    state = start or Run()
    for event in events:
        applied = apply_event(
            state.lead,
            event,
            model=model,
            rotation=state.rotation,
            limits=limits or Limits(),
            now=now,
        )
        state.lead, state.rotation = applied.lead, applied.rotation
        state.steps.append(applied)
    return state


def variant(*changes: tuple[str, str], text: str = DEMO_TEXT) -> LeadModel:
    """The bundled model with text replaced (each `old` must be there)."""
    for old, new in changes:
        assert old in text, old
        text = text.replace(old, new)
    return parse_model(text, source="variant.yaml")


def assert_adds_up(decisions: Iterable[Decision]) -> None:
    for d in decisions:
        if isinstance(d, LeadScored):
            assert sum(x.points for x in d.breakdown) == d.score
            assert d.scores[0].points == d.score
            assert d.scores[0].breakdown == d.breakdown
            for named in d.scores:
                assert sum(x.points for x in named.breakdown) == named.points
            assert sum(x.points for x in d.fit_breakdown) == d.fit
        if isinstance(d, HandOff):
            assert sum(x.points for x in d.breakdown) == d.score


def kenji_story(segment: Segment) -> list[PersonEvent]:
    """Pricing view while anonymous, identify with email and timeline, whitepaper download."""
    return [
        segment("page", "k-1", day=0, anonymous_id="anon-kenji", properties={"path": "/pricing"}),
        segment(
            "identify",
            "k-2",
            day=1,
            anonymous_id="anon-kenji",
            traits={
                "email": " Kenji@Kaizen-Systems.co.jp",
                "firstName": "Kenji",
                "lastName": "Sato",
                "company": "Kaizen Systems",
                "country": "jp",
                "purchase_timeline": "this quarter",
            },
        ),
        segment(
            "track",
            "k-3",
            day=2,
            anonymous_id="anon-kenji",
            event="Whitepaper Downloaded",
        ),
    ]


def test_anonymous_visitor_story_hands_off_once_to_the_territory_rep(
    segment: Segment, plain: LeadModel, t0: datetime, now: datetime
) -> None:
    result = run(kenji_story(segment), plain, now=now)

    assert result.kinds() == [
        ["LeadScored"],
        ["LeadScored", "ContactUpdate"],
        ["LeadScored", "HandOff:hot_trigger", "RepAlert:whitepaper-download", "ContactUpdate"],
    ]
    lead_id = lead_id_for("anon-kenji")
    (alert,) = result.of(RepAlert)
    (handoff,) = result.of(HandOff)
    assert alert.model_dump(exclude={"alert_id"}) == {
        "schema_version": 2,
        "rep_id": "aiko",
        "rep_name": "Aiko Tanaka",
        "rep_email": "aiko@sales.example.com",
        "lead_id": lead_id,
        "email": "kenji@kaizen-systems.co.jp",
        "company": "Kaizen Systems",
        "trigger": "whitepaper-download",
        "message": "Kenji Sato downloaded a whitepaper",
        "score": 40,  # 10 decayed for two days (9.85) + 30
        "model_version": "2026.11-2",
        "event_at": t0 + timedelta(days=2),
        "created_at": now,
    }
    assert (handoff.reason, handoff.trigger) == ("hot_trigger", "whitepaper-download")
    assert (handoff.rep_id, handoff.routing_rule) == ("aiko", "account_domain")
    assert handoff.account_domain == "kaizen-systems.co.jp"
    assert (handoff.email, handoff.name, handoff.company) == (
        "kenji@kaizen-systems.co.jp",
        "Kenji Sato",
        "Kaizen Systems",
    )
    # "this quarter", said on 2026-11-20: the quarter ends 31 December.
    assert (handoff.purchase_timeline, handoff.purchase_timeline_text) == (
        "within_3_months",
        "this quarter",
    )
    assert (handoff.budget, handoff.authority, handoff.need) == ("unknown", "unknown", "unknown")
    assert (handoff.budget_text, handoff.authority_text, handoff.need_text) == (None, None, None)
    assert (handoff.score, handoff.stage, handoff.qualified_by) == (40, "engaged", ())
    assert (handoff.fit, handoff.grade) == (5, "C")  # region-core
    assert [(x.rule, x.points, x.count) for x in handoff.breakdown] == [
        ("engagement:whitepaper", 30, 1),
        ("engagement:pricing-view", 10, 1),
    ]
    assert handoff.recent_activity == (
        Activity(at=t0 + timedelta(days=2), kind="track", label="Whitepaper Downloaded"),
        Activity(
            at=t0 + timedelta(days=1),
            kind="identify",
            label="identified as kenji@kaizen-systems.co.jp",
        ),
        Activity(at=t0, kind="page", label="/pricing"),
    )


def test_story_emits_score_changes_with_previous_values_and_reasons(
    segment: Segment, model: LeadModel, now: datetime
) -> None:
    result = run(kenji_story(segment), model, now=now)

    scored = result.of(LeadScored)
    assert [
        (s.previous_score, s.score, s.previous_stage, s.stage, s.reason, s.fit, s.grade)
        for s in scored
    ] == [
        (0, 10, "anonymous", "anonymous", None, 0, "D"),
        (10, 10, "anonymous", "engaged", "identified, with engagement", 5, "C"),
        (10, 40, "engaged", "engaged", None, 5, "C"),
    ]
    assert [s.message_id for s in scored] == ["k-1", "k-2", "k-3"]
    assert [[(n.id, n.points, n.threshold) for n in s.scores] for s in scored][-1] == [
        ("engagement", 40, 100),
        ("robotics", 0, 60),
    ]
    assert [[x.rule for x in s.fit_breakdown] for s in scored] == [
        [],
        ["fit:region-core"],
        ["fit:region-core"],
    ]
    assert_adds_up(scored)


def test_company_contacts_tell_their_account_about_score_changes(
    segment: Segment, model: LeadModel, t0: datetime, now: datetime
) -> None:
    result = run(kenji_story(segment), model, now=now)

    updates = result.of(ContactUpdate)
    ms = int(t0.timestamp() * 1000)
    assert [u.model_dump() for u in updates] == [
        {
            "account": "kaizen-systems.co.jp",
            "lead_id": lead_id_for("anon-kenji"),
            "score": score,
            "ts_ms": ms + day * 86_400_000,
            "rep": "aiko",
            "mid": mid,
            "model": "2026.11-2",
        }
        for score, day, mid in [(10, 1, "k-2"), (40, 2, "k-3")]
    ]


def test_free_mail_leads_have_no_account(segment: Segment, model: LeadModel, now: datetime) -> None:
    events = [
        segment("identify", "f-0", traits={"email": "lee@gmail.com"}),
        segment("track", "f-1", day=1, event="Form Submitted"),
    ]

    assert run(events, model, now=now).of(ContactUpdate) == []


def test_bant_answers_reach_the_hand_off_as_buckets_with_the_answers_given(
    segment: Segment, model: LeadModel, now: datetime
) -> None:
    events = [
        segment(
            "identify",
            "b-1",
            userId="crm-7",
            traits={
                "email": "a@acme.com",
                "country": "JP",
                "purchase_timeline": "3ヶ月以内",
                "budget": "予算確保済み",
                "authority": "決裁者",
                "need": "just researching",
            },
        ),
        segment("track", "b-2", day=1, event="Demo Requested"),
    ]

    (handoff,) = run(events, model, now=now).of(HandOff)

    assert (handoff.purchase_timeline, handoff.purchase_timeline_text) == (
        "within_3_months",
        "3ヶ月以内",
    )
    assert (handoff.budget, handoff.budget_text) == ("approved", "予算確保済み")
    assert (handoff.authority, handoff.authority_text) == ("decision_maker", "決裁者")
    assert (handoff.need, handoff.need_text) == ("exploring", "just researching")


def test_an_answer_that_cannot_be_read_is_unknown_with_the_text_kept(
    segment: Segment, model: LeadModel, now: datetime
) -> None:
    events = [
        segment(
            "identify",
            "b-1",
            userId="crm-7",
            traits={"email": "a@acme.com", "country": "JP", "purchase_timeline": "ask my boss"},
        ),
        segment("track", "b-2", day=1, event="Demo Requested"),
    ]

    (handoff,) = run(events, model, now=now).of(HandOff)

    assert (handoff.purchase_timeline, handoff.purchase_timeline_text) == ("unknown", "ask my boss")
    assert handoff.trigger == "demo-request"


def test_resent_message_is_a_duplicate_that_changes_nothing(
    segment: Segment, model: LeadModel, now: datetime
) -> None:
    story = kenji_story(segment)
    first = run(story, model, now=now)

    again = apply_event(
        first.lead, story[-1], model=model, rotation=first.rotation, limits=Limits(), now=now
    )

    assert again.duplicate is True
    assert again.decisions == ()
    assert again.lead == first.lead
    assert again.rotation == first.rotation


def test_resent_message_id_with_different_content_is_still_a_duplicate(
    segment: Segment, model: LeadModel, now: datetime
) -> None:
    first = run([segment("page", "p-1", properties={"path": "/pricing"})], model, now=now)

    again = apply_event(
        first.lead,
        segment("track", "p-1", day=1, event="Demo Requested"),
        model=model,
        rotation={},
        limits=Limits(),
        now=now,
    )

    assert (again.duplicate, again.decisions, again.lead.score) == (True, (), 10)


def test_trigger_fired_while_anonymous_alerts_at_identify(
    segment: Segment, model: LeadModel, now: datetime
) -> None:
    events = [
        segment("track", "a-1", event="Whitepaper Downloaded"),
        segment("page", "a-2", day=1, properties={"path": "/product"}),
        segment("identify", "a-3", day=2, traits={"email": "mei@shop.sg", "country": "SG"}),
        segment("page", "a-4", day=3, properties={"path": "/product/x"}),
    ]

    result = run(events, model, now=now)

    assert result.kinds() == [
        ["LeadScored"],
        ["LeadScored"],
        ["LeadScored", "HandOff:hot_trigger", "RepAlert:whitepaper-download", "ContactUpdate"],
        ["LeadScored", "ContactUpdate"],
    ]
    assert result.steps[0].lead.pending == (("whitepaper-download", "a-1", events[0].ts_ms),)
    (alert,) = result.of(RepAlert)
    (handoff,) = result.of(HandOff)
    assert (alert.trigger, alert.rep_id, alert.message) == (
        "whitepaper-download",
        "aiko",
        "mei@shop.sg downloaded a whitepaper",
    )
    assert alert.event_at == result.of(LeadScored)[2].occurred_at  # the identify
    assert (handoff.reason, handoff.trigger, handoff.email) == (
        "hot_trigger",
        "whitepaper-download",
        "mei@shop.sg",
    )
    assert result.lead is not None
    assert result.lead.pending == ()


def test_known_by_user_id_alone_is_enough_to_alert(
    segment: Segment, model: LeadModel, now: datetime
) -> None:
    events = [
        segment("track", "u-1", event="Demo Requested"),
        segment("identify", "u-2", day=1, userId="crm-9", traits={}),
    ]

    result = run(events, model, now=now)

    (alert,) = result.of(RepAlert)
    assert (alert.rep_id, alert.email, alert.message) == (
        "queue",
        None,
        f"{lead_id_for('anon-1')} requested a demo",
    )


# --- MQL, named scores, grades -------------------------------------------------------------

#: Fit 15, grade C: region-core +5, size-core +20, free-mail -10.
LEE = {"email": "lee@gmail.com", "country": "US", "employees": 120}


def webinars(segment: Segment, n: int, *, day: float = 1, first: int = 1) -> list[PersonEvent]:
    """`n` webinars (25 points each, one per asset) at one event time."""
    return [
        segment(
            "track",
            f"web-{k}",
            day=day,
            event="Webinar Attended",
            properties={"title": f"Webinar {k}"},
        )
        for k in range(first, first + n)
    ]


def mql_story(segment: Segment) -> list[PersonEvent]:
    return [segment("identify", "q-0", traits=LEE), *webinars(segment, 5)]


def test_crossing_a_threshold_with_the_grade_hands_off_and_alerts_once(
    segment: Segment, plain: LeadModel, t0: datetime, now: datetime
) -> None:
    result = run(mql_story(segment), plain, now=now)

    assert result.kinds() == [
        ["LeadScored"],
        ["LeadScored"],
        ["LeadScored"],
        ["LeadScored"],
        ["LeadScored", "HandOff:mql", "RepAlert:mql"],  # 4 x 25 = 100
        ["LeadScored"],
    ]
    assert [(s.previous_stage, s.stage, s.reason, s.score) for s in result.of(LeadScored)] == [
        ("anonymous", "known", "identified", 0),
        ("known", "engaged", "first engagement", 25),
        ("engaged", "engaged", None, 50),
        ("engaged", "engaged", None, 75),
        ("engaged", "mql", "engagement 100 >= 100 and fit C >= C", 100),
        ("mql", "mql", None, 125),
    ]
    (handoff,) = result.of(HandOff)
    (alert,) = result.of(RepAlert)
    assert (handoff.trigger, handoff.stage, handoff.score, handoff.qualified_by) == (
        None,
        "mql",
        100,
        ("engagement",),
    )
    assert (handoff.fit, handoff.grade) == (15, "C")
    assert (handoff.rep_id, handoff.routing_rule) == ("carla", "territory_round_robin")
    assert handoff.account_domain is None
    assert alert.message == "lee@gmail.com became a marketing-qualified lead (score 100, fit C)"
    assert alert.event_at == t0 + timedelta(days=1)
    assert result.lead is not None
    assert (result.lead.stage, result.lead.score) == ("mql", 125)
    assert result.lead.mql_ms == mql_story(segment)[4].ts_ms


def test_the_same_asset_again_changes_nothing_and_emits_nothing(
    segment: Segment, model: LeadModel, now: datetime
) -> None:
    events = [*mql_story(segment)[:3], *webinars(segment, 1, day=1.5)]
    events[-1] = segment(
        "track", "again", day=1.5, event="Webinar Attended", properties={"title": "Webinar 1"}
    )

    result = run(events, model, now=now)

    assert result.steps[-1].decisions == ()
    assert result.steps[-1].lead.rules["webinar"] == (75, 50, 3, 2, "engagement")


def test_mql_needs_the_minimum_grade(segment: Segment, model: LeadModel, now: datetime) -> None:
    events = [
        segment("identify", "g-0", traits={"email": "lee@gmail.com"}),  # free mail: -10, D
        *webinars(segment, 4),
        segment("identify", "g-1", day=1, traits={"employees": 120}),  # +20: C
    ]

    result = run(events, model, now=now)

    scored = result.of(LeadScored)
    assert [(s.score, s.grade, s.stage) for s in scored] == [
        (0, "D", "known"),
        (25, "D", "engaged"),
        (50, "D", "engaged"),
        (75, "D", "engaged"),
        (100, "D", "engaged"),
        (100, "C", "mql"),
    ]
    assert scored[-1].reason == "engagement 100 >= 100 and fit C >= C"
    (handoff,) = result.of(HandOff)
    assert handoff.grade == "C"


def test_anonymous_lead_over_the_threshold_becomes_mql_at_identify(
    segment: Segment, model: LeadModel, now: datetime
) -> None:
    events = [*webinars(segment, 5), segment("identify", "w-id", day=1, traits=LEE)]

    result = run(events, model, now=now)

    scored = result.of(LeadScored)
    assert [s.stage for s in scored] == ["anonymous"] * 5 + ["mql"]
    assert (scored[-1].previous_stage, scored[-1].reason) == (
        "anonymous",
        "engagement 125 >= 100 and fit C >= C",
    )
    (handoff,) = result.of(HandOff)
    assert (handoff.reason, handoff.score, handoff.qualified_by) == ("mql", 125, ("engagement",))
    assert [a.trigger for a in result.of(RepAlert)] == ["mql"]


def robotics_story(segment: Segment) -> list[PersonEvent]:
    """Fit 25 (B); a robotics webinar and two robotics product pages: robotics 60."""
    return [
        segment(
            "identify",
            "r-0",
            traits={
                "email": "pat@gmail.com",
                "country": "US",
                "employees": 120,
                "title": "Plant Manager",
            },
        ),
        segment(
            "track",
            "r-1",
            day=1,
            event="Robotics Webinar Attended",
            properties={"title": "Arm 101"},
        ),
        segment("page", "r-2", day=1, properties={"path": "/product/robotics/arm"}),
        segment("page", "r-3", day=1, properties={"path": "/product/robotics/arm"}),
    ]


def test_a_second_named_score_qualifies_on_its_own_threshold(
    segment: Segment, model: LeadModel, now: datetime
) -> None:
    result = run(robotics_story(segment), model, now=now)

    scored = result.of(LeadScored)
    assert [[(n.id, n.points) for n in s.scores] for s in scored] == [
        [("engagement", 0), ("robotics", 0)],
        [("engagement", 0), ("robotics", 40)],
        [("engagement", 3), ("robotics", 50)],
        [("engagement", 6), ("robotics", 60)],
    ]
    assert [s.score for s in scored] == [0, 0, 3, 6]  # `score` is the primary one
    assert [(s.stage, s.reason) for s in scored] == [
        ("known", "identified"),
        ("engaged", "first engagement"),
        ("engaged", None),
        ("mql", "robotics 60 >= 60 and fit B >= C"),
    ]
    (handoff,) = result.of(HandOff)
    assert (handoff.reason, handoff.score, handoff.qualified_by) == ("mql", 6, ("robotics",))
    assert [x.rule for x in handoff.breakdown] == ["engagement:product-view"]
    (alert,) = result.of(RepAlert)
    assert alert.message == "pat@gmail.com became a marketing-qualified lead (score 6, fit B)"
    assert_adds_up(scored)


def test_qualified_by_lists_every_score_over_its_threshold(
    segment: Segment, model: LeadModel, now: datetime
) -> None:
    events = [
        *robotics_story(segment)[:2],  # robotics 40
        *webinars(segment, 3),  # engagement 75
        segment("track", "form", day=1, event="Form Submitted"),  # 95
        segment("page", "p-1", day=1, properties={"path": "/product/robotics/a"}),  # 98, 50
        segment("page", "p-2", day=1, properties={"path": "/product/robotics/b"}),  # 101, 60
    ]

    result = run(events, model, now=now)

    (handoff,) = result.of(HandOff)
    assert handoff.qualified_by == ("engagement", "robotics")
    assert result.of(LeadScored)[-1].reason == (
        "engagement 101 >= 100, robotics 60 >= 60 and fit B >= C"
    )


# --- recycling and sales stages ----------------------------------------------------------


def test_an_mql_whose_score_decays_under_the_threshold_is_recycled_then_requalifies(
    segment: Segment, model: LeadModel, now: datetime
) -> None:
    events = [
        *mql_story(segment)[:5],  # MQL at 100 on day 1
        segment("page", "idle", day=31, properties={"path": "/blog"}),  # no rule: clock only
        segment("track", "f-1", day=31, event="Form Submitted"),
        segment("track", "f-2", day=31, event="Form Submitted"),
    ]

    result = run(events, model, now=now)

    scored = result.of(LeadScored)[-3:]
    assert [(s.previous_stage, s.stage, s.score, s.reason) for s in scored] == [
        (
            "mql",
            "recycled",
            79,  # 100 after 30 days of a 90-day half-life
            "scores fell under 80% of their thresholds: engagement 79 < 80, robotics 0 < 48",
        ),
        ("recycled", "recycled", 99, None),
        ("recycled", "mql", 119, "re-qualified: engagement 119 >= 100 and fit C >= C"),
    ]
    assert [(h.reason, h.rep_id, h.score) for h in result.of(HandOff)] == [
        ("mql", "carla", 100),
        ("mql", "carla", 119),
    ]
    assert [a.trigger for a in result.of(RepAlert)] == ["mql", "mql"]
    assert [x.rule for x in scored[0].breakdown] == ["engagement:webinar", "decay:engagement"]
    assert scored[0].breakdown[-1].points == -21
    assert_adds_up(scored)


def test_negative_points_recycle_an_mql(segment: Segment, model: LeadModel, now: datetime) -> None:
    events = [*mql_story(segment)[:5], segment("track", "u", day=1, event="Email Unsubscribed")]

    last = run(events, model, now=now).of(LeadScored)[-1]

    assert (last.previous_score, last.score, last.previous_stage, last.stage) == (
        100,
        70,
        "mql",
        "recycled",
    )


def test_an_mql_stays_when_the_model_does_not_recycle(segment: Segment, now: datetime) -> None:
    keep = variant(("recycle_on_decay: true", "recycle_on_decay: false"))
    events = [*mql_story(segment)[:5], segment("track", "u", day=1, event="Email Unsubscribed")]

    result = run(events, keep, now=now)

    last = result.of(LeadScored)[-1]
    assert (last.previous_score, last.score, last.stage, last.reason) == (100, 70, "mql", None)
    assert len(result.of(HandOff)) == 1


def test_an_mql_whose_fit_falls_under_the_minimum_grade_is_recycled(
    segment: Segment, model: LeadModel, now: datetime
) -> None:
    events = [
        *mql_story(segment)[:5],
        segment("identify", "c", day=1, traits={"email": "lee@rival-robotics.example"}),
    ]

    last = run(events, model, now=now).of(LeadScored)[-1]

    assert (last.fit, last.grade, last.stage, last.reason) == (
        -75,  # +5 +20 -100 (no longer free mail)
        "D",
        "recycled",
        "fit fell to D, under C",
    )
    assert [x.rule for x in last.fit_breakdown] == [
        "fit:size-core",
        "fit:region-core",
        "fit:competitor",
    ]


@pytest.mark.parametrize("stage", ["sal", "opportunity", "won", "lost"])
def test_engagement_does_not_move_sales_stages(
    segment: Segment, model: LeadModel, now: datetime, stage: str
) -> None:
    lead = LeadState(
        lead_id=lead_id_for("anon-1"),
        pk="anon-1",
        traits=LEE,
        stage=stage,  # type: ignore[arg-type]
        rep="carla",
        route_rule="territory_round_robin",
        model=model.version,
    )
    events = [*webinars(segment, 5), segment("track", "u", day=200, event="Email Unsubscribed")]

    result = run(events, model, now=now, start=Run(lead=lead))

    scored = result.of(LeadScored)
    assert {(s.previous_stage, s.stage, s.reason) for s in scored} == {(stage, stage, None)}
    assert [s.score for s in scored] == [25, 50, 75, 100, 125, -3]  # 125 after 199 days: 27
    assert result.of(HandOff) == []


def test_a_hot_trigger_still_alerts_for_an_accepted_lead(
    segment: Segment, model: LeadModel, now: datetime
) -> None:
    lead = LeadState(
        lead_id=lead_id_for("anon-1"),
        pk="anon-1",
        traits=LEE,
        stage="sal",
        rep="dan",
        route_rule="territory_round_robin",
        model=model.version,
    )

    result = run(
        [segment("track", "d", event="Demo Requested")], model, now=now, start=Run(lead=lead)
    )

    assert [(a.trigger, a.rep_id) for a in result.of(RepAlert)] == [("demo-request", "dan")]
    assert result.of(HandOff)[0].stage == "sal"


# --- triggers with a minimum grade -------------------------------------------------------

PICKY = variant(
    (
        "{id: whitepaper-download, event: Whitepaper Downloaded, message:",
        "{id: whitepaper-download, event: Whitepaper Downloaded, min_grade: B, message:",
    )
)


def paper(segment: Segment, mid: str, day: float, asset: str) -> PersonEvent:
    return segment(
        "track", mid, day=day, event="Whitepaper Downloaded", properties={"title": asset}
    )


@pytest.mark.parametrize(
    ("traits", "grade", "alerts"),
    [
        pytest.param(
            {"email": "a@acme.com", "country": "US", "employees": 120},
            "B",
            ["whitepaper-download"],
            id="fit-enough",
        ),
        pytest.param({"email": "a@acme.com", "country": "US"}, "C", [], id="fit-too-low"),
    ],
)
def test_a_trigger_with_min_grade_alerts_only_for_leads_that_fit(
    segment: Segment, now: datetime, traits: dict[str, Any], grade: str, alerts: list[str]
) -> None:
    events = [segment("identify", "i", traits=traits), paper(segment, "w", 1, "guide")]

    result = run(events, PICKY, now=now)

    assert result.lead is not None and result.lead.grade == grade
    assert [a.trigger for a in result.of(RepAlert)] == alerts
    assert [h.trigger for h in result.of(HandOff)] == alerts


def test_a_trigger_held_back_by_grade_does_not_start_its_cooldown(
    segment: Segment, now: datetime
) -> None:
    events = [
        segment("identify", "i", traits={"email": "a@acme.com", "country": "US"}),  # C
        paper(segment, "w-1", 1, "guide one"),  # held back: C < B
        segment("identify", "i-2", day=2, traits={"employees": 120}),  # B
        paper(segment, "w-2", 3, "guide two"),
    ]

    result = run(events, PICKY, now=now)

    assert [a.trigger for a in result.of(RepAlert)] == ["whitepaper-download"]


# --- identity and ids -------------------------------------------------------------------


def test_ids_are_deterministic(segment: Segment, model: LeadModel, now: datetime) -> None:
    first = run(kenji_story(segment), model, now=now)
    second = run(kenji_story(segment), model, now=now + timedelta(hours=5))

    ids = [(a.alert_id, a.lead_id) for a in first.of(RepAlert)]
    assert ids == [(a.alert_id, a.lead_id) for a in second.of(RepAlert)]
    assert [h.handoff_id for h in first.of(HandOff)] == [h.handoff_id for h in second.of(HandOff)]
    assert first.of(RepAlert)[0].created_at != second.of(RepAlert)[0].created_at


def test_ids_differ_for_different_leads_and_events(
    segment: Segment, model: LeadModel, now: datetime
) -> None:
    def alert_for(person: str, message_id: str) -> RepAlert:
        events = [
            segment(
                "identify", f"{message_id}-id", anonymous_id=person, traits={"email": "a@b.io"}
            ),
            segment("track", message_id, day=1, anonymous_id=person, event="Demo Requested"),
        ]
        (alert,) = run(events, model, now=now).of(RepAlert)
        return alert

    ids = {
        alert_for("anon-1", "m-1").alert_id,
        alert_for("anon-2", "m-1").alert_id,
        alert_for("anon-1", "m-2").alert_id,
    }
    assert len(ids) == 3


@pytest.mark.parametrize("key", ["anon-1", "crm-1001", "jane@example.com"])
def test_lead_id_is_stable_and_opaque(key: str) -> None:
    lead_id = lead_id_for(key)

    assert lead_id == lead_id_for(key)
    assert lead_id.startswith("ld_")
    assert len(lead_id) == 19
    assert key not in lead_id


def test_lead_scored_only_on_change(segment: Segment, model: LeadModel, now: datetime) -> None:
    events = [
        segment("identify", "c-0", traits={"email": "a@acme.com"}),
        segment("track", "c-1", day=1, event="Logged In"),
        *[segment("track", f"c-e{n}", day=2, event="Email Link Clicked") for n in range(4)],
        segment("identify", "c-2", day=3, traits={"title": "VP Sales"}),
    ]

    result = run(events, model, now=now)

    per_step = [
        [(d.previous_score, d.score, d.fit) for d in s.decisions if isinstance(d, LeadScored)]
        for s in result.steps
    ]
    assert per_step == [
        [(0, 0, 0)],  # anonymous -> known
        [],  # no rule for "Logged In"
        [(0, 5, 0)],
        [(5, 10, 0)],
        [],  # third click of the day: over max_per_day
        [],
        [(10, 10, 15)],  # the title changes fit (and a day's decay rounds away)
    ]
    assert [s.decisions[0].stage for s in result.steps if s.decisions] == [  # type: ignore[union-attr]
        "known",
        "engaged",
        "engaged",
        "engaged",
    ]


@pytest.mark.parametrize(("window", "kept"), [(3, 2), (1, 1), (5, 4)])
def test_seen_and_history_are_bounded_by_limits(
    segment: Segment, model: LeadModel, now: datetime, window: int, kept: int
) -> None:
    events = [segment("page", f"s-{n}", day=n, properties={"path": f"/p{n}"}) for n in range(8)]
    limits = Limits(dedupe_window=window, history_kept=kept)

    result = run(events, model, now=now, limits=limits)
    lead = result.lead
    assert lead is not None

    assert len(seen_digests(lead)) == window
    assert [name for _, _, name, _ in lead.history] == [f"/p{n}" for n in range(8 - kept, 8)]

    def resend(event: PersonEvent) -> bool:
        applied = apply_event(lead, event, model=model, rotation={}, limits=limits, now=now)
        return applied.duplicate

    assert resend(events[-1]) is True
    assert resend(events[0]) is False  # outside the dedupe window


def test_a_digest_spanning_two_remembered_ones_is_not_taken_for_a_duplicate(
    segment: Segment, model: LeadModel, now: datetime
) -> None:
    """The window holds its digests end to end in one string: a message is a duplicate only
    when its digest is one of them, not when it reads across two."""
    event = segment("page", "span-1", day=1, properties={"path": "/p"})
    lead = run([event], model, now=now).lead
    assert lead is not None
    digest = lead.seen[-DIGEST_CHARS:]

    def duplicate(seen: str) -> bool:
        kept = lead.model_copy(update={"seen": seen})
        return apply_event(
            kept, event, model=model, rotation={}, limits=Limits(), now=now
        ).duplicate

    half = DIGEST_CHARS // 2
    assert duplicate("0" * half + digest + "0" * half) is False  # across two digests
    assert duplicate("0" * (DIGEST_CHARS - 1) + digest + "0") is False
    assert duplicate("0" * DIGEST_CHARS + digest) is True
    assert duplicate(digest + "0" * DIGEST_CHARS) is True


def test_the_window_keeps_the_digests_earlier_versions_wrote(
    segment: Segment, model: LeadModel, now: datetime
) -> None:
    """CRC-32 then Adler-32 of the messageId, 8 hex digits each: else a worker upgraded
    mid-stream would apply again the re-deliveries of messages its predecessor applied."""
    mids = ["m-1", "ajs-3f0c1b5e-0000-4000-8000-000000000000", "é" * 40, "x"]
    events = [segment("page", mid, day=n, properties={"path": "/p"}) for n, mid in enumerate(mids)]
    lead = run(events, model, now=now).lead
    assert lead is not None
    assert seen_digests(lead) == tuple(
        f"{zlib.crc32(m.encode()):08x}{zlib.adler32(m.encode()):08x}" for m in mids
    )


def test_state_written_with_the_window_as_a_list_reads_as_before(
    segment: Segment, model: LeadModel, now: datetime
) -> None:
    """Leads written before the window was one string held a list of digests: a worker
    reading them still recognises those messages."""
    events = [segment("page", f"old-{n}", day=n, properties={"path": f"/p{n}"}) for n in range(3)]
    lead = run(events, model, now=now).lead
    assert lead is not None
    old = orjson.loads(encode_state(lead))
    old["seen"] = list(seen_digests(lead))
    assert len(old["seen"]) == 3

    read = decode_state(orjson.dumps(old))
    assert read == lead
    for event in events:
        again = apply_event(read, event, model=model, rotation={}, limits=Limits(), now=now)
        assert again.duplicate


def test_history_is_ordered_by_event_time_and_keeps_assets(
    segment: Segment, model: LeadModel, t0: datetime, now: datetime
) -> None:
    events = [
        segment("page", "o-1", day=5, properties={"path": "/b"}),
        segment("track", "o-2", day=1, event="Webinar Attended", properties={"title": "Intro"}),
        segment("group", "o-3", day=6, groupId="g", traits={"company": {"name": "Acme"}}),
    ]

    lead = run(events, model, now=now, limits=Limits(history_kept=2)).lead

    assert lead is not None
    ms = int(t0.timestamp() * 1000)
    assert lead.history == (
        (ms + 5 * 86_400_000, "page", "/b", None),
        (ms + 6 * 86_400_000, "group", "", None),
    )
    full = run(events, model, now=now).lead
    assert full is not None
    assert full.history[0] == (ms + 86_400_000, "track", "Webinar Attended", "Intro")


def test_anonymous_ids_are_remembered_and_bounded(
    segment: Segment, model: LeadModel, now: datetime
) -> None:
    # A userId-keyed person seen from seven browsers.
    events = [
        segment("track", f"i-{n}", anonymous_id=None, userId="crm-1", event="Logged In")
        for n in range(2)
    ]
    lead = run(events, model, now=now).lead
    assert lead is not None
    for n in range(7):
        event = PersonEvent(mid=f"x-{n}", pk="crm-1", kind="track", name="X", ts_ms=n, aid=f"a-{n}")
        lead = apply_event(lead, event, model=model, rotation={}, limits=Limits(), now=now).lead

    assert lead.aids == ("a-2", "a-3", "a-4", "a-5", "a-6")
    assert lead.uid == "crm-1"


def test_rep_stays_with_the_lead_after_the_first_hand_off(
    segment: Segment, plain: LeadModel, now: datetime
) -> None:
    events = [
        segment("identify", "r-0", traits={"email": "pat@gmail.com", "country": "US"}),
        segment("track", "r-1", day=1, event="Demo Requested"),
        segment("track", "r-2", day=2, event="Whitepaper Downloaded"),
    ]

    result = run(events, plain, now=now, start=Run(rotation={"carla,dan": 1}))

    assert [a.rep_id for a in result.of(RepAlert)] == ["dan", "dan"]
    assert [h.trigger for h in result.of(HandOff)] == ["demo-request", "whitepaper-download"]
    assert result.rotation.rotation == {"carla,dan": 2}


def test_breakdowns_add_up_and_resends_are_dropped_over_random_stories(
    segment: Segment, model: LeadModel, now: datetime
) -> None:
    rng = random.Random(7)
    tracks = ["Whitepaper Downloaded", "Demo Requested", "Email Link Clicked", "Email Unsubscribed"]
    paths = ["/pricing", "/product/robotics/a", "/customers/x", "/careers", "/blog"]
    for story in range(20):
        events = []
        for n in range(40):
            roll = rng.random()
            mid = f"r{story}-{n}" if rng.random() > 0.1 else f"r{story}-0"  # some resends
            day = rng.uniform(0, 60)
            if roll < 0.45:
                events.append(segment("page", mid, day=day, properties={"path": rng.choice(paths)}))
            elif roll < 0.9:
                events.append(segment("track", mid, day=day, event=rng.choice(tracks)))
            else:
                traits = {"email": "r@acme.com", "employees": rng.choice([20, 120, 900])}
                events.append(segment("identify", mid, day=day, traits=traits))

        # A window longer than the story, so every resend is inside it.
        result = run(events, model, now=now, limits=Limits(dedupe_window=64))

        assert_adds_up(result.decisions)
        assert result.lead is not None
        assert result.of(LeadScored)[-1].score == result.lead.score
        assert sum(step.duplicate for step in result.steps) == sum(
            1 for e in events[1:] if e.mid == f"r{story}-0"
        )


def test_lead_state_and_decisions_survive_the_wire(
    segment: Segment, model: LeadModel, now: datetime
) -> None:
    # The core builds records without validation: they must still be valid and round-trip.
    result = run([*kenji_story(segment), *robotics_story(segment)[1:]], model, now=now)

    assert result.lead is not None
    assert decode_state(encode(result.lead)) == result.lead
    assert {type(d) for d in result.decisions} == {
        LeadScored,
        HandOff,
        RepAlert,
        ContactUpdate,
        Link,
        SlaEvent,
    }
    for d in result.decisions:
        assert type(d).model_validate_json(encode(d)) == d


# --- model changes -----------------------------------------------------------------------


def migration_story(segment: Segment) -> list[PersonEvent]:
    return [
        segment("track", "m-1", event="Email Link Clicked"),
        *[segment("page", f"m-p{n}", day=n, properties={"path": "/pricing"}) for n in range(2)],
        segment("page", "m-r", day=1, properties={"path": "/product/robotics/a"}),
    ]


#: The bundled model without the email-click rule, the robotics score and the pricing trigger.
SLIMMER = variant(
    ('version: "2026.11-2"', 'version: "2026.12-1"'),
    (
        "      - {id: email-click, event: Email Link Clicked, points: 5, max_per_day: 2, max_points: 25}\n",
        "",
    ),
    (DEMO_TEXT[DEMO_TEXT.index("  - id: robotics\n") : DEMO_TEXT.index("# Fit:")], "\n"),
    (DEMO_TEXT[DEMO_TEXT.index("  - {id: pricing-3x-7d") : DEMO_TEXT.index("accounts:")], "\n"),
)


def test_a_lead_touched_by_a_new_model_drops_state_of_rules_that_are_gone(
    segment: Segment, model: LeadModel, now: datetime
) -> None:
    old = run(migration_story(segment), model, now=now).lead
    assert old is not None
    assert set(old.rules) == {"email-click", "pricing-view", "product-view", "robotics-pages"}
    assert (set(old.days), set(old.decay)) == (
        {"email-click", "robotics-pages"},
        {"engagement", "robotics"},
    )
    assert set(old.hits) == {"pricing-3x-7d"}

    applied = apply_event(
        old,
        segment("page", "m-new", day=2, properties={"path": "/blog"}),
        model=SLIMMER,
        rotation={},
        limits=Limits(),
        now=now,
    )

    lead = applied.lead
    assert lead.model == "2026.12-1"
    # email-click is gone from the model, but its points are still in the score it counted
    # toward (a new model does not rewrite scores); robotics-pages went with its score.
    assert set(lead.rules) == {"email-click", "pricing-view", "product-view"}
    assert lead.rules["pricing-view"] == old.rules["pricing-view"]
    assert (lead.days, set(lead.decay), lead.hits) == ({}, {"engagement"}, {})
    (scored,) = applied.decisions
    assert isinstance(scored, LeadScored)
    assert [s.id for s in scored.scores] == ["engagement"]
    assert [x.rule for x in scored.breakdown if x.rule.startswith("engagement:")] == [
        "engagement:pricing-view",
        "engagement:product-view",
    ]
    assert [(x.rule, x.points) for x in scored.breakdown if x.rule.startswith("retired:")] == [
        ("retired:email-click", old.rules["email-click"][1])
    ]
    assert scored.model_version == "2026.12-1"
    assert_adds_up([scored])


def test_points_of_a_removed_rule_are_not_shown_as_decay(
    segment: Segment, model: LeadModel, now: datetime
) -> None:
    old = run(migration_story(segment), model, now=now).lead

    applied = apply_event(
        old,
        segment("page", "m-new", day=2, properties={"path": "/blog"}),
        model=SLIMMER,
        rotation={},
        limits=Limits(),
        now=now,
    )

    (scored,) = applied.decisions
    assert isinstance(scored, LeadScored)
    assert all(x.points <= 0 for x in scored.breakdown if x.rule.startswith("decay:"))


RESCORE = """
version: v1
scores:
  - id: engagement
    threshold: 100
    rules:
      - {id: form, event: Form Submitted, points: 30}
      - {id: pricing, page: "/pricing*", points: 10, max_points: 20}
fit:
  rules: [{id: us, trait: country, in: [US], points: 5}]
triggers:
  - {id: form-fill, event: Form Submitted, message: filled a form}
reps:
  - {id: carla, name: Carla, email: carla@x.com, territory: {countries: [US]}}
  - {id: queue, name: Queue, email: q@x.com}
fallback_rep: queue
"""
V1 = parse_model(RESCORE)


def rescore_story(segment: Segment) -> list[PersonEvent]:
    return [
        segment("identify", "s-0", traits={"email": "pat@acme.com", "country": "US"}),
        segment("track", "s-1", day=1, event="Form Submitted"),
        segment("track", "s-2", day=1, event="Form Submitted"),
        *[segment("page", f"s-p{n}", day=2, properties={"path": "/pricing"}) for n in range(3)],
    ]


def test_rescore_replays_history_through_the_new_model(segment: Segment, now: datetime) -> None:
    before = run(rescore_story(segment), V1, now=now)
    lead = before.lead
    assert lead is not None and (lead.score, lead.stage) == (80, "engaged")
    assert [a.trigger for a in before.of(RepAlert)] == ["form-fill"]
    doubled = parse_model(
        RESCORE.replace("version: v1", "version: v2")
        .replace("points: 30", "points: 60")
        .replace("points: 10, max_points: 20", "points: 20, max_points: 40")
    )

    applied = rescore_lead(lead, model=doubled, rotation=before.rotation, now=now)

    assert [_kind(d) for d in applied.decisions] == [
        "LeadScored",
        "HandOff:mql",
        "RepAlert:mql",  # the new MQL; the old form-fill trigger does not alert again
        "ContactUpdate",
    ]
    scored = applied.decisions[0]
    assert isinstance(scored, LeadScored)
    assert (scored.previous_score, scored.score, scored.previous_stage, scored.stage) == (
        80,
        160,
        "engaged",
        "mql",
    )
    assert scored.reason == "rescored with model v2: engagement 160 >= 100 and fit C >= C"
    assert (scored.message_id, scored.model_version) == ("rescore:v2", "v2")
    assert [(x.rule, x.points, x.count) for x in scored.breakdown] == [
        ("engagement:form", 120, 2),
        ("engagement:pricing", 60, 3),
        ("cap:pricing", -20, 1),
    ]
    assert (applied.lead.model, applied.lead.score, applied.lead.stage) == ("v2", 160, "mql")
    assert applied.lead.history == lead.history
    assert_adds_up(applied.decisions)


def test_rescore_without_a_stage_change_reports_the_new_scores(
    segment: Segment, now: datetime
) -> None:
    lead = run(rescore_story(segment), V1, now=now).lead
    assert lead is not None
    plus = parse_model(
        RESCORE.replace("version: v1", "version: v3").replace("points: 30", "points: 31")
    )

    applied = rescore_lead(lead, model=plus, rotation={}, now=now)

    scored, update = applied.decisions
    assert isinstance(scored, LeadScored) and isinstance(update, ContactUpdate)
    assert (scored.previous_score, scored.score, scored.stage, scored.reason) == (
        80,
        82,
        "engaged",
        None,
    )
    assert scored.message_id == "rescore:v3"
    assert (update.account, update.score, update.model) == ("acme.com", 82, "v3")


def test_rescore_with_the_same_model_changes_nothing(segment: Segment, now: datetime) -> None:
    lead = run(rescore_story(segment), V1, now=now).lead
    assert lead is not None

    applied = rescore_lead(lead, model=V1, rotation={}, now=now)

    assert applied.decisions == ()
    assert (applied.lead.rules, applied.lead.decay, applied.lead.score) == (
        lead.rules,
        lead.decay,
        lead.score,
    )


# --- apply_batch ----------------------------------------------------------------------------


def test_apply_batch_writes_each_lead_once_and_counts_duplicates(
    segment: Segment, model: LeadModel, now: datetime
) -> None:
    stored = run(
        [segment("page", "old-1", anonymous_id="anon-b", properties={"path": "/pricing"})],
        model,
        now=now,
    )
    events = [
        segment("page", "b-1", anonymous_id="anon-a", properties={"path": "/pricing"}),
        segment("page", "old-1", anonymous_id="anon-b", properties={"path": "/pricing"}),
        segment("page", "b-2", day=1, anonymous_id="anon-b", properties={"path": "/pricing"}),
        segment("page", "b-1", anonymous_id="anon-a", properties={"path": "/pricing"}),
        segment("page", "b-3", day=2, anonymous_id="anon-a", properties={"path": "/pricing"}),
    ]

    result = apply_batch(
        {"anon-b": stored.lead}, events, model=model, rotation={}, limits=Limits(), now=now
    )

    assert set(result.leads) == {"anon-a", "anon-b"}
    assert result.duplicates == 2
    assert (result.leads["anon-a"].score, result.leads["anon-b"].score) == (20, 20)
    assert [(d.lead_id, d.score) for d in result.decisions if isinstance(d, LeadScored)] == [
        (lead_id_for("anon-a"), 10),
        (lead_id_for("anon-b"), 20),
        (lead_id_for("anon-a"), 20),
    ]


def test_apply_batch_equals_applying_events_one_by_one(
    segment: Segment, model: LeadModel, now: datetime
) -> None:
    story = kenji_story(segment)

    batch = apply_batch({}, story, model=model, rotation={}, limits=Limits(), now=now)
    single = run(story, model, now=now)

    assert batch.leads == {"anon-kenji": single.lead}
    assert batch.decisions == single.decisions
    assert batch.duplicates == 0


def test_apply_batch_threads_rotation_between_leads(
    segment: Segment, plain: LeadModel, now: datetime
) -> None:
    events = []
    for person in ("anon-x", "anon-y", "anon-z"):
        events += [
            segment(
                "identify",
                f"{person}-1",
                anonymous_id=person,
                traits={"email": f"{person}@gmail.com", "country": "US"},
            ),
            segment("track", f"{person}-2", day=1, anonymous_id=person, event="Demo Requested"),
        ]

    result = apply_batch(
        {}, events, model=plain, rotation={"carla,dan": 0}, limits=Limits(), now=now
    )

    assert [a.rep_id for a in result.decisions if isinstance(a, RepAlert)] == [
        "carla",
        "dan",
        "carla",
    ]
    assert result.rotation.rotation == {"carla,dan": 1}  # the next free-mail US lead: dan
    assert [lead.rep for lead in result.leads.values()] == ["carla", "dan", "carla"]


def test_apply_batch_of_only_duplicates_writes_nothing(
    segment: Segment, model: LeadModel, now: datetime
) -> None:
    event = segment("page", "d-1", properties={"path": "/pricing"})
    stored = run([event], model, now=now).lead

    result = apply_batch(
        {"anon-1": stored}, [event, event], model=model, rotation={}, limits=Limits(), now=now
    )

    assert (result.leads, result.decisions, result.duplicates) == ({}, [], 2)


def test_rep_removed_from_the_model_is_replaced_at_the_next_hand_off(
    segment: Segment, model: LeadModel, now: datetime
) -> None:
    lead = LeadState(
        lead_id=lead_id_for("anon-1"),
        pk="anon-1",
        traits={"email": "a@acme.jp", "country": "JP"},
        rep="gone",
        route_rule="territory_round_robin",
    )
    event = segment("track", "g-1", event="Demo Requested")

    applied = apply_event(lead, event, model=model, rotation={}, limits=Limits(), now=now)

    (alert,) = [d for d in applied.decisions if isinstance(d, RepAlert)]
    assert alert.rep_id == "aiko"
    assert applied.lead.rep == "aiko"


def test_an_event_the_core_fails_on_is_set_aside_and_the_rest_are_applied(
    segment: Segment, model: LeadModel, now: datetime
) -> None:
    events = [
        segment("page", "ok-1", anonymous_id="anon-f", properties={"path": "/pricing"}),
        segment("page", "boom", anonymous_id="anon-f", properties={"path": "/pricing"}),
        segment("page", "ok-2", anonymous_id="anon-f", properties={"path": "/pricing"}),
    ]

    def flaky(lead: Any, event: PersonEvent, **kwargs: Any) -> Applied:
        if event.mid == "boom":
            raise KeyError("a bug")
        return apply_event(lead, event, **kwargs)

    result = apply_batch(
        {}, events, model=model, rotation={}, limits=Limits(), now=now, apply=flaky
    )
    assert [(e.mid, error) for e, error in result.failed] == [("boom", "KeyError: 'a bug'")]
    assert result.leads["anon-f"].score == 20  # both good views, the failed one not at all
    assert [d.score for d in result.decisions if isinstance(d, LeadScored)] == [10, 20]


def test_the_hand_off_carries_the_routing_rule_team_and_audit_trail(
    segment: Segment, model: LeadModel, now: datetime
) -> None:
    events = [
        segment("identify", "t-0", traits={"email": "pat@gmail.com", "country": "US"}),
        segment("track", "t-1", day=1, event="Demo Requested"),
    ]

    (handoff,) = run(events, model, now=now).of(HandOff)

    assert (handoff.routing_rule, handoff.routing_team) == ("americas", "americas")
    assert handoff.rep_id in ("carla", "dan")
    trail = "\n".join(handoff.routing_trail)
    assert "account owner" in trail  # tried first, and why it did not decide
    assert "apac" in trail and "americas" in trail  # the rules tried in order
    assert handoff.rep_id in handoff.routing_trail[-1]  # the line that chose the rep
