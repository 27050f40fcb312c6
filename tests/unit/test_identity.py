"""The identity graph: identifiers that turn out to be one person end in one lead, every
event counted once, whatever order the messages between partitions arrive in."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas.decisions import LeadMerged, LeadScored, RepAlert
from schemas.internal import LeadState, MergeIn, PersonEvent, PersonEventBatch
from streams.codec import Rejection, decode_person_event
from streams.identity import LocalNetwork, apply_person_batch, on_merge_in, to_batch
from streams.lead_model import LeadModel, load_model, parse_model
from streams.leads import Decision, Limits, apply_event

NOW = datetime(2026, 12, 1, tzinfo=UTC)
T0 = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def model() -> LeadModel:
    return load_model("streams/demo/lead_model.yaml")


def ev(minutes: float = 0, **doc: Any) -> PersonEvent:
    doc["timestamp"] = (T0 + timedelta(minutes=minutes)).isoformat().replace("+00:00", "Z")
    event = decode_person_event(orjson.dumps(doc))
    assert not isinstance(event, Rejection), event
    return event


def page(mid: str, path: str, minutes: float, **ids: str) -> PersonEvent:
    return ev(minutes, type="page", messageId=mid, properties={"path": path}, **ids)


def track(mid: str, name: str, minutes: float, **ids: str) -> PersonEvent:
    return ev(minutes, type="track", messageId=mid, event=name, **ids)


def identify(mid: str, minutes: float, traits: dict[str, Any], **ids: str) -> PersonEvent:
    return ev(minutes, type="identify", messageId=mid, traits=traits, **ids)


def network(model: LeadModel) -> LocalNetwork:
    return LocalNetwork(model=model, limits=Limits(), now=NOW)


def test_server_side_events_by_user_id_join_the_browser_lead_that_identifies(
    model: LeadModel,
) -> None:
    net = network(model)
    out = net.send([page("a1", "/pricing", 0, anonymousId="A")])
    out += net.send([track("s1", "Webinar Attended", 60, userId="U")])  # a lead of its own
    out += net.send(
        [identify("a2", 120, {"email": "pat@acme.example"}, anonymousId="A", userId="U")]
    )

    lead = net.lead_of("A")
    assert lead is not None and net.lead_of("U") == lead
    assert (lead.score, lead.events) == (35, 3)  # pricing 10 + webinar 25, each once
    (merged,) = [d for d in out if isinstance(d, LeadMerged)]
    assert merged.lead_id == lead.lead_id and merged.why == "userId"
    assert merged.merged_lead_ids == (net.entries["U"].lead_id,)
    assert (merged.score, merged.stage) == (35, "engaged")
    # Later server-side events reach the merged lead.
    net.send([track("s2", "Demo Requested", 180, userId="U")])
    assert net.lead_of("U").score == 95  # type: ignore[union-attr]


def test_two_browsers_with_the_same_email_become_one_lead_the_first_key_survives(
    model: LeadModel,
) -> None:
    net = network(model)
    net.send([page("b1", "/pricing", 30, anonymousId="B")])  # the phone, first seen later
    net.send([page("a1", "/pricing", 0, anonymousId="A")])  # the laptop, first seen earlier
    out = net.send([identify("b2", 40, {"email": "Pat@Acme.example "}, anonymousId="B")])
    out += net.send([identify("a2", 50, {"email": "pat@acme.example"}, anonymousId="A")])

    survivor = net.lead_of("B")
    assert survivor is not None and survivor.pk == "A"  # "A" < "B", whoever came first
    assert net.lead_of("email:pat@acme.example") == survivor
    assert (survivor.score, survivor.events) == (20, 4)
    assert [m.why for m in out if isinstance(m, LeadMerged)] == ["email"]
    # The merged lead's breakdown counts both views of pricing.
    last = [d for d in out if isinstance(d, LeadScored)][-1]
    assert [(x.rule, x.points, x.count) for x in last.breakdown] == [
        ("engagement:pricing-view", 20, 2)
    ]


def test_a_chain_of_merges_ends_in_one_lead(model: LeadModel) -> None:
    net = network(model)
    for i, key in enumerate(["A", "B", "C"]):
        net.send([page(f"{key}1", "/pricing", i, anonymousId=key)])
    net.send([identify("c2", 10, {"email": "x@y.example"}, anonymousId="C", userId="U")])
    net.send([identify("b2", 11, {"email": "x@y.example"}, anonymousId="B")])
    net.send([identify("a2", 12, {}, anonymousId="A", userId="U")])

    leads = {net.lead_of(k).pk for k in ["A", "B", "C", "U", "email:x@y.example"]}  # type: ignore[union-attr]
    assert leads == {"A"}
    final = net.lead_of("A")
    assert final is not None and (final.score, final.events) == (30, 6)
    assert len(final.merged) == 2


def test_a_redelivered_merge_counts_nothing_twice(model: LeadModel) -> None:
    net = network(model)
    net.send([page("a1", "/pricing", 0, anonymousId="A")])
    net.send([page("b1", "/pricing", 5, anonymousId="B")])
    other = net.entries["B"]
    net.send([identify("b2", 6, {"email": "q@r.example"}, anonymousId="B")])
    net.send([identify("a2", 7, {"email": "q@r.example"}, anonymousId="A")])
    before = net.lead_of("A")
    assert before is not None and before.score == 20

    again = on_merge_in(
        before,
        MergeIn(into="A", lead=other, why="email"),
        model=model,
        rotation={},
        limits=Limits(),
        now=NOW,
    )

    assert again.lead is before and again.decisions == ()


def test_an_event_at_an_alias_is_forwarded_not_applied(model: LeadModel) -> None:
    alias = LeadState(lead_id="ld_x", pk="U", alias_of="A", first_ms=0)
    event = track("s9", "Demo Requested", 0, userId="U")

    applied = apply_event(alias, event, model=model, rotation={}, limits=Limits(), now=NOW)

    assert applied.lead is alias
    (forwarded,) = applied.decisions
    assert isinstance(forwarded, PersonEvent) and (forwarded.pk, forwarded.mid) == ("A", "s9")


def test_merging_leads_that_both_fired_a_trigger_does_not_alert_again(
    model: LeadModel,
) -> None:
    net = network(model)
    out = net.send([identify("a0", 0, {"email": "z@z.example"}, anonymousId="A")])
    out += net.send([track("a1", "Whitepaper Downloaded", 1, anonymousId="A")])
    out += net.send([identify("b0", 2, {}, anonymousId="B", userId="Z")])
    out += net.send([track("b1", "Whitepaper Downloaded", 3, anonymousId="B")])
    alerts = len([d for d in out if isinstance(d, RepAlert)])
    assert alerts == 2  # one per lead, before anyone knew they were one person

    out = net.send([identify("a2", 4, {}, anonymousId="A", userId="Z")])

    assert not [d for d in out if isinstance(d, RepAlert)]
    assert [d.why for d in out if isinstance(d, LeadMerged)] == ["userId"]


# --- any interleaving -------------------------------------------------------------------

CAPS_FREE = parse_model(
    """
version: p1
scores:
  - id: engagement
    threshold: 1000
    decay: {half_life_days: 30}
    rules:
      - {id: pricing, page: "/pricing*", points: 10}
      - {id: paper, event: Whitepaper Downloaded, points: 30}
      - {id: demo, event: Demo Requested, points: 60}
reps: [{id: q, name: Q, email: q@x.example}]
fallback_rep: q
"""
)

KEYS = [{"anonymousId": "A"}, {"anonymousId": "B"}, {"userId": "U"}, {"anonymousId": "C"}]


@st.composite
def story(draw: Any) -> list[PersonEvent]:
    """Activity of one person on three devices and the server, identified along the way."""
    n = draw(st.integers(min_value=3, max_value=9))
    events = []
    for i in range(n):
        ids = draw(st.sampled_from(KEYS))
        kind = draw(st.sampled_from(["pricing", "paper", "demo", "identify"]))
        minutes = i * 7 + draw(st.integers(0, 5))
        if kind == "identify":
            traits = draw(st.sampled_from([{"email": "p@acme.example"}, {}]))
            extra = {"userId": "U"} if draw(st.booleans()) or not traits else {}
            events.append(identify(f"m{i}", minutes, traits, **{**ids, **extra}))
        elif kind == "pricing":
            events.append(page(f"m{i}", "/pricing", minutes, **ids))
        else:
            name = "Whitepaper Downloaded" if kind == "paper" else "Demo Requested"
            events.append(track(f"m{i}", name, minutes, **ids))
    # Make sure every device ends up linked: each identifies as U once, at the end.
    for j, ids in enumerate(KEYS):
        if "anonymousId" in ids:
            events.append(identify(f"z{j}", 200 + j, {}, **{**ids, "userId": "U"}))
    return events


def deliver(events: list[PersonEvent], order: list[int]) -> LocalNetwork:
    """Apply the events, delivering the queued messages between entries in the order
    `order` picks (each index chooses among the messages waiting)."""
    net = network(CAPS_FREE)
    waiting: list[Decision] = list(events)
    picks = iter(order)
    while waiting:
        message = waiting.pop(next(picks, 0) % len(waiting))
        result = apply_person_batch(
            net.entries,
            to_batch([message]),
            model=CAPS_FREE,
            rotation=net.rotation,
            limits=Limits(),
            now=NOW,
        )
        assert not result.failed, result.failed
        net.entries.update(result.leads)
        waiting += [d for d in result.decisions if isinstance(d, (PersonEvent, *_CONTROL))]
    return net


from schemas.internal import Link, MergeRequest  # noqa: E402

_CONTROL = (Link, MergeRequest, MergeIn)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    story(), st.lists(st.integers(0, 50), max_size=200), st.lists(st.integers(0, 50), max_size=200)
)
def test_any_interleaving_ends_in_one_lead_with_every_event_once(
    events: list[PersonEvent], order_a: list[int], order_b: list[int]
) -> None:
    first, second = deliver(events, order_a), deliver(events, order_b)

    for net in (first, second):
        leads = {
            net.lead_of(k["anonymousId"] if "anonymousId" in k else k["userId"]).lead_id  # type: ignore[union-attr]
            for k in KEYS
        }
        assert len(leads) == 1
    a, b = first.lead_of("A"), second.lead_of("A")
    assert a is not None and b is not None
    assert a.lead_id == b.lead_id  # the same survivor, whatever the order
    assert (a.score, a.events) == (b.score, b.events) == (reference(events).score, len(events))


def reference(events: list[PersonEvent]) -> LeadState:
    """All of the person's events applied to one lead."""
    lead = None
    for e in sorted(events, key=lambda e: e.ts_ms):
        one = PersonEvent(**{**e.model_dump(), "pk": "ref"})
        lead = apply_event(lead, one, model=CAPS_FREE, rotation={}, limits=Limits(), now=NOW).lead
    assert lead is not None
    return lead


def test_to_batch_sorts_messages_by_kind() -> None:
    link = Link(key="U", owner="A", why="userId")
    batch = to_batch([link, page("p", "/x", 0, anonymousId="A")])
    assert isinstance(batch, PersonEventBatch)
    assert (len(batch.events), batch.links) == (1, (link,))


def test_a_crm_contact_id_links_two_leads(model: LeadModel) -> None:
    net = network(model)
    net.send([page("a1", "/pricing", 0, anonymousId="A")])
    net.send([page("b1", "/pricing", 1, anonymousId="B")])
    net.send([identify("a2", 2, {"contactId": "003XYZ"}, anonymousId="A")])
    out = net.send([identify("b2", 3, {"crm_id": "003XYZ"}, anonymousId="B")])

    assert [m.why for m in out if isinstance(m, LeadMerged)] == ["crm_id"]
    assert net.lead_of("crm:003XYZ") == net.lead_of("B") == net.lead_of("A")
    assert net.lead_of("A").score == 20  # type: ignore[union-attr]


def test_gmail_dots_and_tags_are_one_person(model: LeadModel) -> None:
    net = network(model)
    net.send([identify("a1", 0, {"email": "Jane.Doe+news@gmail.com"}, anonymousId="A")])
    out = net.send([identify("b1", 1, {"email": "janedoe@googlemail.com"}, anonymousId="B")])

    assert [m.why for m in out if isinstance(m, LeadMerged)] == ["email"]
    assert net.lead_of("email:janedoe@gmail.com") == net.lead_of("A")


def test_a_re_read_is_recognised_by_its_raw_offset_beyond_the_dedupe_window(
    model: LeadModel,
) -> None:
    # A crash re-reads engagement.raw from the last commit: with a burst of one person's
    # events, the re-read can reach further back than the messageIds a lead remembers.
    from streams.leads import Limits as L

    limits = L(dedupe_window=2)
    lead = None
    events = [
        PersonEvent(
            **{**page(f"m{i}", "/pricing", i, anonymousId="A").model_dump(), "src": (0, 10 + i)}
        )
        for i in range(5)
    ]
    for event in events:
        lead = apply_event(lead, event, model=model, rotation={}, limits=limits, now=NOW).lead
    assert lead is not None and lead.applied == {"A|0": 14}
    points = lead.score

    again = apply_event(lead, events[0], model=model, rotation={}, limits=limits, now=NOW)

    assert (
        again.duplicate and again.lead.score == points
    )  # the window forgot m0; the offset did not
    later = PersonEvent(
        **{**page("m9", "/pricing", 9, anonymousId="A").model_dump(), "src": (0, 20)}
    )
    assert not apply_event(lead, later, model=model, rotation={}, limits=limits, now=NOW).duplicate
