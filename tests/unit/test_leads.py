"""The lead core: identity, dedupe, score changes, hand-offs and rep alerts from event stories."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import pytest

from schemas.decisions import Activity, HandOff, LeadScored, RepAlert
from schemas.internal import PersonEvent
from streams.lead_model import LeadModel
from streams.leads import Applied, Decision, Limits, apply_batch, apply_event, lead_id_for
from streams.scoring import breakdown
from streams.state import LeadState

Segment = Callable[..., PersonEvent]


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
    segment: Segment, model: LeadModel, t0: datetime, now: datetime
) -> None:
    result = run(kenji_story(segment), model, now=now)

    alerts, handoffs = result.of(RepAlert), result.of(HandOff)
    assert len(alerts) == 1
    assert len(handoffs) == 1
    lead_id = lead_id_for("anon-kenji")
    alert, handoff = alerts[0], handoffs[0]
    assert alert.model_dump(exclude={"alert_id"}) == {
        "schema_version": 1,
        "rep_id": "aiko",
        "rep_name": "Aiko Tanaka",
        "rep_email": "aiko@sales.example.com",
        "lead_id": lead_id,
        "email": "kenji@kaizen-systems.co.jp",
        "company": "Kaizen Systems",
        "trigger": "whitepaper-download",
        "message": "Kenji Sato downloaded a whitepaper",
        "score": 40,
        "model_version": "2026.11-1",
        "event_at": t0 + timedelta(days=2),
        "created_at": now,
    }
    assert handoff.reason == "hot_trigger"
    assert handoff.trigger == "whitepaper-download"
    assert (handoff.rep_id, handoff.routing_rule) == ("aiko", "account_domain")
    assert handoff.account_domain == "kaizen-systems.co.jp"
    assert (handoff.email, handoff.name, handoff.company) == (
        "kenji@kaizen-systems.co.jp",
        "Kenji Sato",
        "Kaizen Systems",
    )
    assert handoff.purchase_timeline == "this quarter"
    assert (handoff.budget, handoff.authority) == ("unknown", "unknown")
    assert (handoff.score, handoff.stage) == (40, "engaged")
    assert sum(line.points for line in handoff.breakdown) == 40
    assert handoff.recent_activity == (
        Activity(at=t0 + timedelta(days=2), kind="track", label="Whitepaper Downloaded"),
        Activity(
            at=t0 + timedelta(days=1),
            kind="identify",
            label="identified as kenji@kaizen-systems.co.jp",
        ),
        Activity(at=t0, kind="page", label="/pricing"),
    )
    # The alert and hand-off come from the download, not before.
    assert [len(step.decisions) for step in result.steps] == [1, 1, 3]


def test_story_emits_score_changes_with_previous_values(
    segment: Segment, model: LeadModel, now: datetime
) -> None:
    result = run(kenji_story(segment), model, now=now)

    scored = result.of(LeadScored)
    assert [(s.previous_score, s.score, s.previous_stage, s.stage) for s in scored] == [
        (0, 10, "anonymous", "anonymous"),
        (10, 10, "anonymous", "engaged"),
        (10, 40, "engaged", "engaged"),
    ]
    assert [s.message_id for s in scored] == ["k-1", "k-2", "k-3"]
    assert all(sum(line.points for line in s.breakdown) == s.score for s in scored)


def test_budget_and_authority_are_passed_on_when_known(
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
                "budget": "approved",
                "authority": "signer",
            },
        ),
        segment("track", "b-2", day=1, event="Demo Requested"),
    ]

    (handoff,) = run(events, model, now=now).of(HandOff)

    assert (handoff.budget, handoff.authority) == ("approved", "signer")
    assert handoff.purchase_timeline == "unknown"
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
    segment: Segment, model: LeadModel, t0: datetime, now: datetime
) -> None:
    events = [
        segment("track", "a-1", event="Whitepaper Downloaded"),
        segment("page", "a-2", day=1, properties={"path": "/product"}),
        segment("identify", "a-3", day=2, traits={"email": "mei@shop.sg", "country": "SG"}),
        segment("page", "a-4", day=3, properties={"path": "/product/x"}),
    ]

    result = run(events, model, now=now)

    assert [len(step.decisions) for step in result.steps] == [1, 1, 3, 1]
    assert result.steps[0].lead.pending == (("whitepaper-download", "a-1", events[0].ts_ms),)
    (alert,) = result.of(RepAlert)
    (handoff,) = result.of(HandOff)
    assert alert in result.steps[2].decisions
    assert (alert.trigger, alert.rep_id, alert.message) == (
        "whitepaper-download",
        "aiko",
        "mei@shop.sg downloaded a whitepaper",
    )
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


def mql_story(segment: Segment) -> list[PersonEvent]:
    identify = segment("identify", "q-0", traits={"email": "lee@gmail.com", "country": "US"})
    webinars = [segment("track", f"q-{n}", day=n, event="Webinar Attended") for n in range(1, 7)]
    return [identify, *webinars]


def test_crossing_the_mql_threshold_hands_off_and_alerts_once(
    segment: Segment, model: LeadModel, t0: datetime, now: datetime
) -> None:
    result = run(mql_story(segment), model, now=now)

    (handoff,) = result.of(HandOff)
    (alert,) = result.of(RepAlert)
    crossing = result.steps[4]  # 4th webinar: 4 x 25 = 100
    assert handoff in crossing.decisions
    assert alert in crossing.decisions
    assert (handoff.reason, handoff.trigger, handoff.stage, handoff.score) == (
        "mql",
        None,
        "mql",
        100,
    )
    assert (handoff.rep_id, handoff.routing_rule) == ("carla", "territory_round_robin")
    assert handoff.account_domain is None
    assert alert.trigger == "mql"
    assert alert.message == "lee@gmail.com became a marketing-qualified lead (score 100)"
    assert alert.event_at == t0 + timedelta(days=4)
    assert result.lead is not None
    assert (result.lead.stage, result.lead.score) == ("mql", 150)
    assert result.lead.mql_ms == mql_story(segment)[4].ts_ms


def test_mql_stage_stays_after_the_score_drops(
    segment: Segment, model: LeadModel, now: datetime
) -> None:
    events = [
        *mql_story(segment)[:5],
        segment("track", "drop", day=9, event="Email Unsubscribed"),
    ]

    result = run(events, model, now=now)

    last = result.of(LeadScored)[-1]
    assert (last.previous_score, last.score, last.previous_stage, last.stage) == (
        100,
        70,
        "mql",
        "mql",
    )
    assert len(result.of(HandOff)) == 1


def test_anonymous_lead_over_the_threshold_becomes_mql_at_identify(
    segment: Segment, model: LeadModel, now: datetime
) -> None:
    events = [
        *[segment("track", f"w-{n}", day=n, event="Webinar Attended") for n in range(5)],
        segment("identify", "w-id", day=6, traits={"email": "x@gmail.com"}),
    ]

    result = run(events, model, now=now)

    assert [s.stage for s in result.of(LeadScored)] == ["anonymous"] * 5 + ["mql"]
    (handoff,) = result.of(HandOff)
    assert (handoff.reason, handoff.score, handoff.rep_id, handoff.routing_rule) == (
        "mql",
        125,
        "queue",
        "fallback",
    )
    assert [a.trigger for a in result.of(RepAlert)] == ["mql"]


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
        *[segment("track", f"c-e{n}", day=2, event="Email Link Clicked") for n in range(6)],
        segment("identify", "c-2", day=3, traits={"title": "VP Sales"}),
    ]

    result = run(events, model, now=now)

    per_step = [[(d.previous_score, d.score) for d in s.decisions] for s in result.steps]
    assert per_step == [
        [(0, 0)],  # anonymous -> known
        [],  # no rule for "Logged In"
        [(0, 5)],
        [(5, 10)],
        [(10, 15)],
        [(15, 20)],
        [(20, 25)],
        [],  # sixth click is over the cap
        [(25, 40)],
    ]
    assert [s.decisions[0].stage for s in result.steps if s.decisions] == [
        "known",
        "engaged",
        "engaged",
        "engaged",
        "engaged",
        "engaged",
        "engaged",
    ]


@pytest.mark.parametrize(("window", "kept"), [(3, 2), (1, 1), (5, 4)])
def test_seen_and_activity_are_bounded_by_limits(
    segment: Segment, model: LeadModel, now: datetime, window: int, kept: int
) -> None:
    events = [segment("page", f"s-{n}", day=n, properties={"path": f"/p{n}"}) for n in range(8)]
    limits = Limits(dedupe_window=window, activity_kept=kept)

    result = run(events, model, now=now, limits=limits)
    lead = result.lead
    assert lead is not None

    assert len(lead.seen) == window
    assert [label for _, _, label in lead.activity] == [f"/p{n}" for n in range(8 - kept, 8)]

    def resend(event: PersonEvent) -> bool:
        applied = apply_event(lead, event, model=model, rotation={}, limits=limits, now=now)
        return applied.duplicate

    assert resend(events[-1]) is True
    assert resend(events[0]) is False  # outside the dedupe window


def test_activity_is_ordered_by_event_time(
    segment: Segment, model: LeadModel, now: datetime
) -> None:
    events = [
        segment("page", "o-1", day=5, properties={"path": "/b"}),
        segment("page", "o-2", day=1, properties={"path": "/a"}),
        segment("group", "o-3", day=6, groupId="g", traits={"company": {"name": "Acme"}}),
    ]

    lead = run(events, model, now=now, limits=Limits(activity_kept=2)).lead

    assert lead is not None
    assert [(kind, label) for _, kind, label in lead.activity] == [
        ("page", "/b"),
        ("group", "joined account Acme"),
    ]


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
    segment: Segment, model: LeadModel, now: datetime
) -> None:
    events = [
        segment("identify", "r-0", traits={"email": "pat@gmail.com", "country": "US"}),
        segment("track", "r-1", day=1, event="Demo Requested"),
        segment("track", "r-2", day=2, event="Whitepaper Downloaded"),
    ]

    result = run(events, model, now=now, start=Run(rotation={"carla,dan": 1}))

    assert [a.rep_id for a in result.of(RepAlert)] == ["dan", "dan"]
    assert [h.trigger for h in result.of(HandOff)] == ["demo-request", "whitepaper-download"]
    assert result.rotation == {"carla,dan": 2}


def test_score_equals_breakdown_over_random_stories(
    segment: Segment, model: LeadModel, now: datetime
) -> None:
    rng = random.Random(7)
    tracks = ["Whitepaper Downloaded", "Demo Requested", "Email Link Clicked", "Email Unsubscribed"]
    paths = ["/pricing", "/product/a", "/customers/x", "/careers", "/blog"]
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

        for step in result.steps:
            for d in step.decisions:
                if isinstance(d, LeadScored | HandOff):
                    assert sum(line.points for line in d.breakdown) == d.score
            score, _ = breakdown(step.lead.rules, step.lead.traits, model)
            assert step.lead.score == score
        assert result.lead is not None
        scored = result.of(LeadScored)
        assert scored[-1].score == result.lead.score
        assert sum(step.duplicate for step in result.steps) == sum(
            1 for e in events[1:] if e.mid == f"r{story}-0"
        )
        mqls = [a for a in result.of(RepAlert) if a.trigger == "mql"]
        assert len(mqls) <= 1


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
    segment: Segment, model: LeadModel, now: datetime
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
        {}, events, model=model, rotation={"carla,dan": 0}, limits=Limits(), now=now
    )

    assert [a.rep_id for a in result.decisions if isinstance(a, RepAlert)] == [
        "carla",
        "dan",
        "carla",
    ]
    assert result.rotation == {"carla,dan": 1}  # the next free-mail US lead goes to dan
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
