"""The hand-off SLA clock and sales feedback: reminders, escalation, reassignment, and
feedback that stops the clock, through the pure core (clock injected)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from schemas.decisions import HandOff, LeadScored, RepAlert, SlaEvent
from schemas.feedback import SalesFeedback
from schemas.internal import FeedbackIn, LeadState, PersonEvent, PersonEventBatch
from streams.codec import Rejection, decode_person_event
from streams.identity import LocalNetwork, apply_person_batch, to_batch
from streams.lead_model import LeadModel, parse_model
from streams.leads import Limits, apply_event, apply_feedback, sla_tick

T0 = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)  # event time
HANDED = datetime(2026, 11, 20, 9, 0, 30, tzinfo=UTC)  # processing time of the hand-off

MODEL_TEXT = """
version: sla-1
scores:
  - id: engagement
    threshold: 100
    rules:
      - {id: paper, event: Whitepaper Downloaded, points: 30}
      - {id: demo, event: Demo Requested, points: 100}
triggers:
  - {id: paper, event: Whitepaper Downloaded, message: downloaded a whitepaper}
mql: {min_grade: D}
sla:
  hot: {remind_after_minutes: 3, escalate_after_minutes: 5, reassign_after_minutes: 15}
  mql: {remind_after_minutes: 60}
  escalate_to: boss
reps:
  - {id: uma, name: Uma, email: uma@x.example, territory: {countries: [US]}}
  - {id: vic, name: Vic, email: vic@x.example, territory: {countries: [US]}}
  - {id: boss, name: Boss, email: boss@x.example, territory: {countries: [ZZ]}}
  - {id: queue, name: Queue, email: q@x.example}
fallback_rep: queue
"""
MODEL = parse_model(MODEL_TEXT)


def ev(minutes: float, **doc: Any) -> PersonEvent:
    doc["timestamp"] = (T0 + timedelta(minutes=minutes)).isoformat().replace("+00:00", "Z")
    doc.setdefault("anonymousId", "anon-1")
    event = decode_person_event(orjson.dumps(doc))
    assert not isinstance(event, Rejection)
    return event


def hot_lead(model: LeadModel = MODEL) -> tuple[LeadState, list[Any]]:
    lead, out = None, []
    for event in [
        ev(
            0, type="identify", messageId="i", traits={"email": "pat@acme.example", "country": "US"}
        ),
        ev(1, type="track", messageId="w", event="Whitepaper Downloaded"),
    ]:
        applied = apply_event(lead, event, model=model, rotation={}, limits=Limits(), now=HANDED)
        lead, out = applied.lead, out + list(applied.decisions)
    assert lead is not None
    return lead, out


def at(minutes: float) -> datetime:
    return HANDED + timedelta(minutes=minutes)


def tick(lead: LeadState, minutes: float) -> Any:
    return sla_tick(lead, model=MODEL, rotation={}, limits=Limits(), now=at(minutes))


def feedback(
    lead: LeadState, status: str, minutes: float, fid: str = "f-1", **extra: Any
) -> SalesFeedback:
    return SalesFeedback(
        feedback_id=fid,
        lead_id=lead.lead_id,
        rep_id=lead.rep,
        status=status,  # type: ignore[arg-type]
        occurred_at=at(minutes),
        **extra,
    )


def test_a_hand_off_starts_the_clock() -> None:
    lead, out = hot_lead()

    (started,) = [d for d in out if isinstance(d, SlaEvent)]
    (handoff,) = [d for d in out if isinstance(d, HandOff)]
    assert (started.step, started.priority, started.rep_id) == ("started", "hot", lead.rep)
    assert started.handoff_id == handoff.handoff_id
    assert started.started_at == HANDED and started.due_at == at(3)
    assert lead.sla is not None


def test_reminder_then_escalation_then_reassignment() -> None:
    lead, _ = hot_lead()
    first_rep = lead.rep

    assert tick(lead, 2.9) is None  # nothing due yet

    reminded = tick(lead, 3)
    event, alert = reminded.decisions
    assert (event.step, event.due_at) == ("reminded", at(5))
    assert isinstance(alert, RepAlert) and (alert.rep_id, alert.trigger) == (
        first_rep,
        "sla-reminder",
    )
    assert "not accepted after 3 minutes" in alert.message

    escalated = tick(reminded.lead, 5)
    event, alert = escalated.decisions
    assert (event.step, event.to_rep_id, event.due_at) == ("escalated", "boss", at(15))
    assert (alert.rep_id, alert.trigger) == ("boss", "sla-escalation")

    moved = tick(escalated.lead, 15)
    kinds = [
        (type(d).__name__, getattr(d, "step", getattr(d, "trigger", None))) for d in moved.decisions
    ]
    assert kinds == [
        ("SlaEvent", "reassigned"),
        ("HandOff", None),
        ("RepAlert", "sla-reassigned"),
        ("SlaEvent", "started"),
    ]
    reassigned, handoff, alert, restarted = moved.decisions
    other = ({"uma", "vic"} - {first_rep}).pop()
    assert (reassigned.rep_id, reassigned.to_rep_id) == (first_rep, other)
    assert (handoff.rep_id, handoff.routing_rule, handoff.reason) == (
        other,
        "sla_reassigned",
        "hot_trigger",
    )
    assert alert.rep_id == other and "did not accept within 15 minutes" in alert.message
    assert (restarted.rep_id, restarted.due_at) == (other, at(18))
    assert moved.lead.rep == other


def test_acceptance_stops_the_clock_with_the_time_to_accept() -> None:
    lead, _ = hot_lead()

    applied, problem = apply_feedback(lead, feedback(lead, "accepted", 2), model=MODEL, now=at(2))

    assert problem is None
    stopped, scored = applied.decisions
    assert isinstance(stopped, SlaEvent) and stopped.step == "accepted"
    assert stopped.time_to_accept_s == pytest.approx(120)
    assert isinstance(scored, LeadScored) and (scored.stage, scored.reason) == (
        "sal",
        "accepted by rep",
    )
    assert applied.lead.sla is None
    assert tick(applied.lead, 60) is None  # no more steps


def test_a_rejection_recycles_the_lead_with_the_reason_and_stops_the_clock() -> None:
    lead, _ = hot_lead()

    applied, _ = apply_feedback(
        lead, feedback(lead, "rejected", 1, reason="bad_timing"), model=MODEL, now=at(1)
    )

    stopped, scored = applied.decisions
    assert stopped.step == "stopped" and stopped.time_to_accept_s is None
    assert (scored.stage, scored.reason) == ("recycled", "rejected by rep: bad_timing")


def test_feedback_out_of_order_or_twice() -> None:
    lead, _ = hot_lead()
    won, _ = apply_feedback(
        lead, feedback(lead, "won", 30, "f-won", amount=5000), model=MODEL, now=at(30)
    )

    late, problem = apply_feedback(
        won.lead, feedback(lead, "accepted", 2, "f-acc"), model=MODEL, now=at(31)
    )
    again, _ = apply_feedback(
        won.lead, feedback(lead, "won", 30, "f-won", amount=5000), model=MODEL, now=at(31)
    )

    assert problem == "out_of_order" and late.decisions == ()
    assert again.duplicate and again.decisions == ()


def test_feedback_finds_its_lead_by_lead_id_even_after_a_merge() -> None:
    net = LocalNetwork(model=MODEL, limits=Limits(), now=HANDED)
    net.send(
        [
            ev(
                0,
                type="identify",
                messageId="b0",
                anonymousId="B",
                traits={"email": "k@z.example", "country": "US"},
            )
        ]
    )
    net.send([ev(1, type="track", messageId="b1", anonymousId="B", event="Whitepaper Downloaded")])
    handed_off = net.lead_of("B")
    assert handed_off is not None and handed_off.rep is not None
    # Later, A (sorts first) turns out to be the same person: B merges into A.
    net.send(
        [ev(2, type="identify", messageId="a0", anonymousId="A", traits={"email": "k@z.example"})]
    )
    survivor = net.lead_of("B")
    assert survivor is not None and survivor.pk == "A"

    fb = SalesFeedback(
        feedback_id="f-1", lead_id=handed_off.lead_id, status="accepted", occurred_at=at(4)
    )
    result = apply_person_batch(
        net.entries,
        PersonEventBatch(
            events=(), feedback=(FeedbackIn(to=f"lead:{handed_off.lead_id}", feedback=fb),)
        ),
        model=MODEL,
        rotation={},
        limits=Limits(),
        now=at(4),
    )
    (forward,) = result.decisions
    assert isinstance(forward, FeedbackIn) and forward.to == "B"  # then B forwards to A
    # Deliver the forwards by hand, one hop at a time (the worker sends them on Kafka).
    net.entries.update(result.leads)
    hop = apply_person_batch(
        net.entries, to_batch([forward]), model=MODEL, rotation={}, limits=Limits(), now=at(4)
    )
    (to_a,) = hop.decisions
    final = apply_person_batch(
        net.entries, to_batch([to_a]), model=MODEL, rotation={}, limits=Limits(), now=at(4)
    )
    assert [type(d).__name__ for d in final.decisions] == ["SlaEvent", "LeadScored"]
    assert final.leads["A"].stage == "sal"


def test_feedback_for_a_lead_never_handed_off_is_rejected() -> None:
    fb = SalesFeedback(feedback_id="f-9", lead_id="ld_nobody", status="accepted", occurred_at=at(1))

    result = apply_person_batch(
        {},
        PersonEventBatch(events=(), feedback=(FeedbackIn(to="lead:ld_nobody", feedback=fb),)),
        model=MODEL,
        rotation={},
        limits=Limits(),
        now=at(1),
    )

    ((item, reason, message),) = result.rejected
    assert (item.feedback, reason) == (fb, "unknown_lead")
    assert "ld_nobody was never handed off" in message


# --- working hours and the team's manager ------------------------------------------------

from streams.routing_model import Schedule  # noqa: E402
from streams.sla import add_working_minutes, due_ms  # noqa: E402

NEW_YORK = Schedule(timezone="America/New_York")  # Mon-Fri 09:00-18:00 by default


@pytest.mark.parametrize(
    ("start", "minutes", "due"),
    [
        # Friday 17:50 EST (22:50 UTC) + 30 working minutes: Monday 09:20 EST.
        ("2026-11-20T22:50:00+00:00", 30, "2026-11-23T14:20:00+00:00"),
        # Inside working hours: plain minutes.
        ("2026-11-23T15:00:00+00:00", 60, "2026-11-23T16:00:00+00:00"),
        # Saturday: starts counting Monday 09:00.
        ("2026-11-21T15:00:00+00:00", 5, "2026-11-23T14:05:00+00:00"),
        # The day clocks go back (Sunday 2026-11-01) is off; Monday 09:00 is EST already.
        ("2026-10-30T21:55:00+00:00", 10, "2026-11-02T14:05:00+00:00"),
    ],
)
def test_working_minutes_skip_nights_and_weekends(start: str, minutes: float, due: str) -> None:
    got = add_working_minutes(datetime.fromisoformat(start), minutes, NEW_YORK)
    assert got == datetime.fromisoformat(due)


def test_a_working_hours_policy_with_routing_due_in_the_reps_hours_and_the_team_manager_hears() -> (
    None
):
    model = parse_model(
        MODEL_TEXT.replace(
            "mql: {remind_after_minutes: 60}",
            "mql: {remind_after_minutes: 60, escalate_after_minutes: 120, working_hours: true}",
        )
        + """
routing:
  teams: [{id: us, manager: vic, members: [{rep: uma}]}]
  rules: [{id: us, team: us}]
  schedules: {uma: {timezone: America/New_York}}
"""
    )
    friday_evening = datetime(2026, 11, 20, 22, 30, tzinfo=UTC)  # 17:30 in New York
    clock = ("h-1", "mql", "uma", int(friday_evening.timestamp() * 1000), 0)

    # 30 minutes on Friday, 30 on Monday: 09:30 Monday in New York.
    assert due_ms(clock, model) == int(
        datetime(2026, 11, 23, 14, 30, tzinfo=UTC).timestamp() * 1000
    )

    lead = LeadState(lead_id="ld_1", pk="p", rep="uma", route_team="us", sla=(*clock[:4], 1))
    applied = sla_tick(
        lead,
        model=model,
        rotation={},
        limits=Limits(),
        now=datetime(2026, 11, 23, 15, 31, tzinfo=UTC),
    )
    assert applied is not None
    event, alert = applied.decisions
    assert (event.step, event.to_rep_id) == ("escalated", "vic")  # the team's manager
    assert (alert.rep_id, alert.trigger) == ("vic", "sla-escalation")
