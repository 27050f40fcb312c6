"""The routing rule chain: kept rep, CRM owner, rules, team round-robin with hours and caps."""

from __future__ import annotations

import textwrap
from collections import Counter
from datetime import UTC, datetime, timedelta
from itertools import pairwise

import pytest

from schemas.internal import TraitValue
from streams.lead_model import LeadModel, ModelError, parse_model
from streams.routing import LeadView, RouteDecision, RoutingState, route

HEAD = """\
version: r1
scores:
  - {id: main, threshold: 100, rules: [{id: demo, event: Demo Requested, points: 60}]}
  - {id: robotics, threshold: 60, rules: [{id: robo, event: Robotics Webinar, points: 40}]}
reps:
  - {id: ada, name: Ada, email: ada@x.com}
  - {id: ben, name: Ben, email: ben@x.com}
  - {id: cy, name: Cy, email: cy@x.com}
  - {id: dee, name: Dee, email: dee@x.com}
  - {id: queue, name: Queue, email: q@x.com}
fallback_rep: queue
routing:
"""
#: Monday 2026-11-23 10:00 UTC: working hours in Europe and UTC.
MON = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
DE_MID: dict[str, TraitValue] = {"country": "DE", "employees": 120}


def model_of(routing: str, head: str = HEAD) -> LeadModel:
    return parse_model(head + textwrap.indent(textwrap.dedent(routing), "  "), source="m.yaml")


def one_team(
    members: str, schedules: str = "", *, hours: bool = True, head: str = HEAD
) -> LeadModel:
    """A team `t` with the given members, taking every lead."""
    return model_of(
        f"""
        teams: [{{id: t, members: [{members}]}}]
        rules: [{{id: all, team: t}}]
        respect_working_hours: {str(hours).lower()}
        schedules: {{{schedules}}}
        """,
        head,
    )


def send(
    model: LeadModel,
    now: datetime,
    state: RoutingState | None = None,
    traits: dict[str, TraitValue] | None = None,
    **lead: object,
) -> tuple[RouteDecision, RoutingState]:
    view = LeadView(traits=DE_MID if traits is None else traits, **lead)  # type: ignore[arg-type]
    return route(lead=view, model=model, state=state or RoutingState(), now=now)


def reps_for(
    model: LeadModel, times: list[datetime], state: RoutingState | None = None
) -> tuple[list[str], RoutingState]:
    """The reps a run of leads at `times` goes to, and the state after them."""
    picked = []
    state = state or RoutingState()
    for at in times:
        decision, state = send(model, at, state)
        picked.append(decision.rep.id)
    return picked, state


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


# --- rules ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("when", "traits", "scores", "why"),
    [
        ("{}", {}, {}, "rule r: always: matched"),
        ("{countries: [DE, AT]}", {"country": "DE"}, {}, "rule r: country DE in [DE, AT]: matched"),
        ("{countries: [de]}", {"country": " de "}, {}, "rule r: country DE in [DE]: matched"),
        ("{countries: [DE]}", {"country": "US"}, {}, "rule r: country US not in [DE]: no match"),
        ("{countries: [DE]}", {}, {}, "rule r: no country: no match"),
        ("{regions: [dach]}", {"country": "CH"}, {}, "rule r: country CH in region dach: matched"),
        (
            "{regions: [dach, nordics]}",
            {"country": "FR"},
            {},
            "rule r: country FR not in regions dach, nordics: no match",
        ),
        (
            "{min_employees: 50}",
            {"employees": 50},
            {},
            "rule r: 50 employees in 50 or more: matched",
        ),
        (
            "{min_employees: 50}",
            {"employees": 49},
            {},
            "rule r: 49 employees not in 50 or more: no match",
        ),
        (
            "{max_employees: 300}",
            {"employees": 300},
            {},
            "rule r: 300 employees in up to 300: matched",
        ),
        (
            "{min_employees: 50, max_employees: 300}",
            {"employees": 301},
            {},
            "rule r: 301 employees not in 50-300: no match",
        ),
        (
            "{min_employees: 50}",
            {"employees": "many"},
            {},
            "rule r: company size unknown: no match",
        ),
        ("{min_employees: 50}", {"employees": True}, {}, "rule r: company size unknown: no match"),
        (
            "{min_employees: 50}",
            {"employees": float("nan")},
            {},
            "rule r: company size unknown: no match",
        ),
        (
            "{max_employees: 300}",
            {"employees": 120.0},
            {},
            "rule r: 120 employees in up to 300: matched",
        ),
        (
            "{industries: [Robotics, logistics]}",
            {"industry": "ROBOTICS"},
            {},
            "rule r: industry ROBOTICS in [robotics, logistics]: matched",
        ),
        (
            "{industries: [robotics]}",
            {"industry": "retail"},
            {},
            "rule r: industry retail not in [robotics]: no match",
        ),
        ("{industries: [robotics]}", {}, {}, "rule r: no industry: no match"),
        (
            "{score: {id: robotics, min: 60}}",
            {},
            {"robotics": 60},
            "rule r: score robotics 60 at least 60: matched",
        ),
        (
            "{score: {id: robotics, min: 60}}",
            {},
            {"robotics": 59},
            "rule r: score robotics 59 under 60: no match",
        ),
        ("{score: {id: robotics, min: 60}}", {}, {}, "rule r: score robotics 0 under 60: no match"),
        (
            "{countries: [DE], min_employees: 50, max_employees: 300, industries: [robotics]}",
            {"country": "DE", "employees": 120, "industry": "retail"},
            {},
            "rule r: country DE in [DE], 120 employees in 50-300, "
            "industry retail not in [robotics]: no match",
        ),
    ],
)
def test_each_condition_of_a_rule(
    when: str, traits: dict[str, TraitValue], scores: dict[str, int], why: str
) -> None:
    model = model_of(
        f"""
        regions: {{dach: [DE, AT, CH], nordics: [SE, NO, DK, FI]}}
        teams: [{{id: t, members: [{{rep: ada}}]}}]
        rules: [{{id: r, team: t, when: {when}}}]
        """
    )

    decision, _ = send(model, MON, traits=traits, scores=scores)

    assert why in decision.lines
    matched = why.endswith(": matched")
    assert (decision.rep.id, decision.rule, decision.team) == (
        ("ada", "r", "t") if matched else ("queue", "fallback", None)
    )


RULES = """
regions: {dach: [DE, AT, CH]}
teams:
  - {id: robotics, members: [{rep: ada}]}
  - {id: dach-mid, members: [{rep: ben}]}
  - {id: dach, members: [{rep: cy}]}
rules:
  - {id: robotics-fans, team: robotics, when: {score: {id: robotics, min: 60}}}
  - {id: dach-mid, team: dach-mid, when: {regions: [dach], min_employees: 50, max_employees: 300}}
  - {id: dach-rest, team: dach, when: {regions: [dach]}}
"""


@pytest.mark.parametrize(
    ("traits", "scores", "rep", "tried"),
    [
        ({"country": "DE", "employees": 120}, {"robotics": 80}, "ada", ["robotics-fans"]),
        ({"country": "DE", "employees": 120}, {}, "ben", ["robotics-fans", "dach-mid"]),
        (
            {"country": "AT", "employees": 5000},
            {},
            "cy",
            ["robotics-fans", "dach-mid", "dach-rest"],
        ),
        ({"country": "US"}, {}, "queue", ["robotics-fans", "dach-mid", "dach-rest", "fallback"]),
    ],
)
def test_rules_are_tried_in_order_and_the_first_match_wins(
    traits: dict[str, TraitValue], scores: dict[str, int], rep: str, tried: list[str]
) -> None:
    decision, _ = send(model_of(RULES), MON, traits=traits, scores=scores)

    assert decision.rep.id == rep
    assert list(dict.fromkeys(s.rule for s in decision.trail[2:])) == tried


def test_the_audit_trail_reads_as_sentences() -> None:
    model = model_of(
        """
        regions: {dach: [DE, AT, CH]}
        teams: [{id: emea, members: [{rep: ada, weight: 2}, {rep: ben}, {rep: cy}]}]
        rules:
          - {id: nordics, team: emea, when: {countries: [SE, NO]}}
          - {id: emea-mid, team: emea, when: {regions: [dach], min_employees: 50, max_employees: 300}}
        schedules:
          ben: {timezone: Europe/Berlin, out_of_office: [{from: 2026-11-20, to: 2026-11-30}]}
          cy: {timezone: Asia/Tokyo}
        """
    )

    decision, _ = send(model, MON, account_owner="zed")

    assert [(s.rule, s.outcome, s.why) for s in decision.trail] == [
        ("assigned", "skipped", "assigned: not routed before"),
        ("account_owner", "failed", "account owner: the CRM's owner zed is not a rep of the model"),
        ("nordics", "failed", "rule nordics: country DE not in [SE, NO]: no match"),
        (
            "emea-mid",
            "matched",
            "rule emea-mid: country DE in region dach, 120 employees in 50-300: matched",
        ),
        ("emea-mid", "failed", "ben: out of office until 2026-11-30"),
        (
            "emea-mid",
            "failed",
            "cy: outside working hours: Mon 19:00 in Asia/Tokyo, works mon-fri 09:00-18:00",
        ),
        ("emea-mid", "matched", "team emea: ada, the only member who can take it now"),
    ]
    assert (decision.rep.id, decision.rule, decision.team) == ("ada", "emea-mid", "emea")


# --- assigned rep, account owner, fallback ---------------------------------------------


def test_a_lead_keeps_its_rep_and_the_state_is_untouched() -> None:
    model = one_team("{rep: ada}, {rep: ben}")
    state = RoutingState(credits={"t": {"ada": 1, "ben": -1}})

    decision, after = send(model, MON, state, assigned_rep="ben", account_owner="ada")

    assert (decision.rep.id, decision.rule) == ("ben", "assigned")
    assert decision.lines == ("assigned: kept by ben, routed earlier",)
    assert after == state


def test_a_rep_away_keeps_their_leads_and_the_trail_says_so() -> None:
    model = one_team(
        "{rep: ada}, {rep: ben}",
        "ben: {timezone: Europe/Berlin, out_of_office: [{from: 2026-11-23, to: 2026-11-27}]}",
    )

    decision, _ = send(model, MON, assigned_rep="ben")

    assert decision.rep.id == "ben"
    assert decision.lines == (
        "assigned: kept by ben, routed earlier (ben: out of office until 2026-11-27; "
        "a rep keeps their leads while away)",
    )


def test_a_rep_removed_from_the_model_never_strands_a_lead() -> None:
    _, state = reps_for(one_team("{rep: ada}, {rep: ben}, {rep: cy}"), [MON] * 5)
    without_cy = HEAD.replace("  - {id: cy, name: Cy, email: cy@x.com}\n", "")
    after = one_team("{rep: ada}, {rep: ben}", head=without_cy)
    assert after.rep("cy") is None

    decision, state = send(after, MON, state, assigned_rep="cy")

    assert decision.rep.id in ("ada", "ben")
    assert decision.trail[0].why == "assigned: cy is no longer a rep of the model: routing again"
    assert "cy" not in state.credits["t"] and "cy" not in state.last_seen


def test_the_crm_account_owner_comes_before_the_rules() -> None:
    decision, _ = send(model_of(RULES), MON, account_owner="dee", scores={"robotics": 90})

    assert (decision.rep.id, decision.rule, decision.team) == ("dee", "account_owner", None)
    assert decision.lines[-1] == "account owner: dee owns the account"


def test_no_rule_matching_goes_to_the_fallback() -> None:
    decision, _ = send(model_of(RULES), MON, traits={"country": "JP"})

    assert (decision.rep.id, decision.rule, decision.team) == ("queue", "fallback", None)
    assert decision.lines[-1] == "fallback: queue (no rule matched)"


def test_a_team_nobody_can_ever_take_leads_from_goes_to_the_fallback() -> None:
    model = one_team(
        "{rep: ada}",
        "ada: {out_of_office: [{from: 2026-01-01, to: 2028-12-31}]}",
    )

    decision, _ = send(model, MON)

    assert (decision.rep.id, decision.rule) == ("queue", "fallback")
    assert decision.lines[-3:] == (
        "ada: out of office until 2028-12-31",
        "team t: nobody can take leads within 400 days",
        "fallback: queue (team t cannot take it)",
    )


def test_without_a_rule_section_everything_goes_to_the_fallback() -> None:
    model = model_of("teams: [{id: t, members: [{rep: ada}]}]\n")

    decision, _ = send(model, MON)

    assert (decision.rep.id, decision.rule) == ("queue", "fallback")


# --- weighted round-robin, fairness -----------------------------------------------------


@pytest.mark.parametrize(
    ("members", "split"),
    [
        ("{rep: ada}, {rep: ben}", {"ada": 50, "ben": 50}),
        ("{rep: ada, weight: 3}, {rep: ben}", {"ada": 75, "ben": 25}),
        (
            "{rep: ada, weight: 2}, {rep: ben, weight: 2}, {rep: cy}",
            {"ada": 40, "ben": 40, "cy": 20},
        ),
        (
            "{rep: ada, weight: 7}, {rep: ben, weight: 2}, {rep: cy}",
            {"ada": 70, "ben": 20, "cy": 10},
        ),
    ],
)
def test_over_100_leads_the_split_follows_the_weights_exactly(
    members: str, split: dict[str, int]
) -> None:
    picked, _ = reps_for(one_team(members), [MON] * 100)

    assert Counter(picked) == split


def test_weighted_round_robin_is_smooth_not_bursty() -> None:
    picked, _ = reps_for(one_team("{rep: ada, weight: 3}, {rep: ben}, {rep: cy}"), [MON] * 10)

    assert picked == ["ada", "ben", "ada", "cy", "ada", "ada", "ben", "ada", "cy", "ada"]


def test_round_robin_continues_from_the_state_it_is_given() -> None:
    model = one_team("{rep: ada}, {rep: ben}, {rep: cy}")
    first, state = reps_for(model, [MON] * 4)
    rest, _ = reps_for(model, [MON] * 5, state)

    assert first + rest == ["ada", "ben", "cy"] * 3


def test_a_rep_back_from_a_week_of_leave_gets_a_normal_share_not_a_flood() -> None:
    model = one_team(
        "{rep: ada}, {rep: ben}, {rep: cy}",
        "cy: {out_of_office: [{from: 2026-11-23, to: 2026-11-29}]}",
        hours=False,
    )
    before = [utc("2026-11-22T10:00")] * 3
    during = [MON + timedelta(hours=4 * n) for n in range(30)]  # the week cy is away
    after = [utc("2026-11-30T10:00") + timedelta(minutes=n) for n in range(30)]

    _, state = reps_for(model, before)
    away, state = reps_for(model, during, state)
    back, _ = reps_for(model, after, state)

    assert Counter(away) == {"ada": 15, "ben": 15}
    assert Counter(back) == {"ada": 10, "ben": 10, "cy": 10}
    assert back[:3] == ["ada", "ben", "cy"]  # no run of catch-up leads
    first, _ = send(model, after[0], state)
    assert first.lines[-1] == (
        "team t: ada by weighted round-robin among ada (weight 1), ben (weight 1), cy (weight 1);"
        " cy rejoins the rotation (last in it 8 days ago): starts level with the team, no catch-up"
    )


def test_a_rep_added_to_a_team_gets_its_share_from_then_on() -> None:
    _, state = reps_for(one_team("{rep: ada}, {rep: ben}"), [MON] * 41)
    grown = one_team("{rep: ada}, {rep: ben}, {rep: cy}")

    picked, _ = reps_for(grown, [MON] * 30, state)

    assert Counter(picked) == {"ada": 10, "ben": 10, "cy": 10}
    assert ("cy", "cy") not in set(pairwise(picked))  # no catch-up run


def test_removing_a_member_from_a_team_spreads_its_share() -> None:
    _, state = reps_for(one_team("{rep: ada}, {rep: ben}, {rep: cy}"), [MON] * 7)

    picked, state = reps_for(one_team("{rep: ada}, {rep: ben}"), [MON] * 20, state)

    assert sorted(Counter(picked).values()) in ([10, 10], [9, 11])  # cy's credit stays out
    assert set(state.credits["t"]) == {"ada", "ben"}


# --- working hours and time zones -------------------------------------------------------


@pytest.mark.parametrize(
    ("zone", "at", "working"),
    [
        # New York springs forward on Sunday 2026-03-08: 09:00 is 14:00 UTC before, 13:00 after.
        ("America/New_York", "2026-03-06T13:30", False),  # Fri 08:30 EST
        ("America/New_York", "2026-03-06T14:00", True),  # Fri 09:00 EST
        ("America/New_York", "2026-03-09T13:30", True),  # Mon 09:30 EDT
        ("America/New_York", "2026-03-09T22:00", False),  # Mon 18:00 EDT
        ("America/New_York", "2026-03-09T21:59", True),  # Mon 17:59 EDT
        # ... and falls back on Sunday 2026-11-01.
        ("America/New_York", "2026-10-30T13:30", True),  # Fri 09:30 EDT
        ("America/New_York", "2026-11-02T13:30", False),  # Mon 08:30 EST
        ("America/New_York", "2026-11-02T14:00", True),  # Mon 09:00 EST
        # Berlin: summer time from Sunday 2026-03-29 to Sunday 2026-10-25.
        ("Europe/Berlin", "2026-03-27T07:30", False),  # Fri 08:30 CET
        ("Europe/Berlin", "2026-03-30T07:30", True),  # Mon 09:30 CEST
        ("Europe/Berlin", "2026-10-23T07:30", True),  # Fri 09:30 CEST
        ("Europe/Berlin", "2026-10-26T07:30", False),  # Mon 08:30 CET
        # Tokyo: Monday morning is still Sunday in UTC.
        ("Asia/Tokyo", "2026-11-23T00:00", True),  # Mon 09:00 JST
        ("Asia/Tokyo", "2026-11-22T23:59", False),  # Mon 08:59 JST
        ("Asia/Tokyo", "2026-11-21T01:00", False),  # Sat 10:00 JST
    ],
)
def test_working_hours_are_read_in_the_reps_time_zone(zone: str, at: str, working: bool) -> None:
    # ada (weight 100) gets every lead while working; ben has no schedule: always available.
    model = one_team("{rep: ada, weight: 100}, {rep: ben}", f"ada: {{timezone: {zone}}}")

    decision, _ = send(model, utc(at))

    assert decision.rep.id == ("ada" if working else "ben")


def test_hours_per_weekday_and_split_shifts() -> None:
    model = one_team(
        "{rep: ada, weight: 100}, {rep: ben}",
        'ada: {timezone: UTC, hours: {sat: ["08:00-12:00", "13:00-24:00"], sun: ["00:00-02:00"]}}',
    )

    def rep_at(text: str) -> str:
        return send(model, utc(text))[0].rep.id

    assert [
        rep_at(t)
        for t in (
            "2026-11-28T07:59",
            "2026-11-28T08:00",
            "2026-11-28T12:30",
            "2026-11-28T23:59",
            "2026-11-29T01:59",
            "2026-11-29T02:00",
            "2026-11-30T10:00",  # Monday: not listed, so off
        )
    ] == ["ben", "ada", "ben", "ada", "ada", "ben", "ben"]


def test_without_respect_for_working_hours_only_absences_and_caps_count() -> None:
    model = one_team(
        "{rep: ada, weight: 100}, {rep: ben}",
        "ada: {timezone: Asia/Tokyo, holidays: [2026-11-23]}",
        hours=False,
    )

    assert send(model, utc("2026-11-21T15:00"))[0].rep.id == "ada"  # Sun 00:00 JST
    assert send(model, utc("2026-11-23T05:00"))[0].rep.id == "ben"  # the holiday


@pytest.mark.parametrize(
    ("at", "why"),
    [
        # Saturday evening UTC: Berlin opens Monday 08:00 UTC, New York 14:00 UTC.
        ("2026-11-28T20:00", "next available is ben at Mon 2026-11-30 09:00 Europe/Berlin"),
        # Friday night in Berlin (22:30 CET) while New York still works until 23:00 UTC.
        ("2026-11-27T21:30", None),
        # Between the two spring changes (New York on EDT, Berlin still on CET).
        ("2026-03-14T20:00", "next available is ben at Mon 2026-03-16 09:00 Europe/Berlin"),
    ],
)
def test_when_nobody_is_working_the_lead_goes_to_who_starts_soonest(
    at: str, why: str | None
) -> None:
    model = one_team(
        "{rep: ada}, {rep: ben}",
        "ada: {timezone: America/New_York}, ben: {timezone: Europe/Berlin}",
    )

    decision, _ = send(model, utc(at))

    if why is None:
        assert decision.rep.id == "ada"
        assert decision.lines[-1].startswith("team t: ada, the only member")
    else:
        assert decision.rep.id == "ben"
        assert decision.lines[-1] == f"nobody in team t can take it now: {why}"


def test_next_available_follows_daylight_saving_time() -> None:
    # Monday 2026-03-09: New York opens 13:00 UTC (EDT); cy opens 13:30 UTC. A clock that
    # ignored the change would open New York at 14:00 and pick cy.
    model = one_team(
        "{rep: cy}, {rep: ada}",
        'ada: {timezone: America/New_York}, cy: {timezone: UTC, hours: {mon: ["13:30-18:00"]}}',
    )

    decision, _ = send(model, utc("2026-03-07T20:00"))

    assert decision.rep.id == "ada"
    assert decision.lines[-1] == (
        "nobody in team t can take it now: next available is ada at "
        "Mon 2026-03-09 09:00 America/New_York"
    )


def test_hours_that_start_in_the_spring_forward_gap_start_when_the_clocks_jump() -> None:
    # 02:30 does not exist in New York on 2026-03-08: clocks go from 02:00 EST to 03:00 EDT.
    model = one_team(
        "{rep: ada}",
        'ada: {timezone: America/New_York, hours: {sun: ["02:30-05:00"]}}',
    )

    decision, _ = send(model, utc("2026-03-08T06:00"))  # 01:00 EST

    assert decision.lines[-1] == (
        "nobody in team t can take it now: next available is ada at "
        "Sun 2026-03-08 03:00 America/New_York"
    )
    assert send(model, utc("2026-03-08T07:00"))[0].lines[-1].startswith("team t: ada")


def test_leads_while_nobody_works_are_shared_among_who_starts_first() -> None:
    model = one_team(
        "{rep: ada}, {rep: ben}, {rep: cy}",
        "ada: {timezone: Europe/Berlin}, ben: {timezone: Europe/Berlin}, "
        "cy: {timezone: America/New_York}",
    )

    times = [utc("2026-11-28T20:00") + timedelta(minutes=n) for n in range(6)]
    picked, _ = reps_for(model, times)

    assert Counter(picked) == {"ada": 3, "ben": 3}
    first, _ = send(model, times[0])
    assert first.lines[-1] == (
        "nobody in team t can take it now: next available is ada at Mon 2026-11-30 09:00 "
        "Europe/Berlin (so is ben: chosen by weighted round-robin)"
    )


# --- holidays and out of office ---------------------------------------------------------


@pytest.mark.parametrize(
    ("at", "rep"),
    [
        ("2026-11-22T14:59", "ada"),  # Sun 23:59 JST
        ("2026-11-22T15:00", "ben"),  # Mon 00:00 JST: Labour Thanksgiving Day
        ("2026-11-23T14:59", "ben"),  # Mon 23:59 JST
        ("2026-11-23T15:00", "ada"),  # Tue 00:00 JST
    ],
)
def test_holidays_are_whole_local_days(at: str, rep: str) -> None:
    model = one_team(
        "{rep: ada, weight: 100}, {rep: ben}",
        "ada: {timezone: Asia/Tokyo, holidays: [2026-11-23]}",
        hours=False,
    )

    decision, _ = send(model, utc(at))

    assert decision.rep.id == rep
    if rep == "ben":
        assert "ada: holiday on 2026-11-23" in decision.lines


@pytest.mark.parametrize(
    ("absence", "at", "away"),
    [
        # Dates: whole days in the rep's zone, `to` included.
        ("{from: 2026-11-23, to: 2026-11-27}", "2026-11-22T14:59", False),  # Sun 23:59 JST
        ("{from: 2026-11-23, to: 2026-11-27}", "2026-11-22T15:00", True),  # Mon 00:00 JST
        ("{from: 2026-11-23, to: 2026-11-27}", "2026-11-27T14:59", True),  # Fri 23:59 JST
        ("{from: 2026-11-23, to: 2026-11-27}", "2026-11-27T15:00", False),  # Sat 00:00 JST
        # Local date-times without an offset are the rep's time.
        ("{from: 2026-11-23T12:00, to: 2026-11-23T14:00}", "2026-11-23T02:59", False),
        ("{from: 2026-11-23T12:00, to: 2026-11-23T14:00}", "2026-11-23T03:00", True),
        ("{from: 2026-11-23T12:00, to: 2026-11-23T14:00}", "2026-11-23T05:00", False),
        # With an offset, as written.
        ('{from: "2026-11-23T12:00:00Z", to: "2026-11-24T00:00:00Z"}', "2026-11-23T11:59", False),
        ('{from: "2026-11-23T12:00:00Z", to: "2026-11-24T00:00:00Z"}', "2026-11-23T23:59", True),
    ],
)
def test_out_of_office_periods(absence: str, at: str, away: bool) -> None:
    model = one_team(
        "{rep: ada, weight: 100}, {rep: ben}",
        f"ada: {{timezone: Asia/Tokyo, out_of_office: [{absence}]}}",
        hours=False,
    )

    decision, _ = send(model, utc(at))

    assert decision.rep.id == ("ben" if away else "ada")


def test_out_of_office_says_until_when() -> None:
    model = one_team(
        "{rep: ada}, {rep: ben}",
        "ada: {out_of_office: [{from: 2026-11-20, to: 2026-11-30}]}, "
        "ben: {out_of_office: [{from: 2026-11-20T08:00, to: 2026-11-23T12:00}]}",
        hours=False,
    )

    decision, _ = send(model, MON)

    assert decision.lines[-3:] == (
        "ada: out of office until 2026-11-30",
        "ben: out of office until 2026-11-23 12:00",
        "nobody in team t can take it now: next available is ben at Mon 2026-11-23 12:00 UTC",
    )


# --- capacity ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("zone", "last_minute", "next_day"),
    [
        ("UTC", "2026-11-24T23:59", "2026-11-25T00:00"),
        ("Asia/Tokyo", "2026-11-24T14:59", "2026-11-24T15:00"),
        # New York, spring forward: 2026-03-08 has 23 hours; Mar 9 starts at 04:00 UTC.
        ("America/New_York", "2026-03-09T03:59", "2026-03-09T04:00"),
        # ... fall back: 2026-11-01 has 25 hours; Nov 2 starts at 05:00 UTC.
        ("America/New_York", "2026-11-02T04:59", "2026-11-02T05:00"),
        # Berlin, spring forward and fall back.
        ("Europe/Berlin", "2026-03-29T21:59", "2026-03-29T22:00"),
        ("Europe/Berlin", "2026-10-25T22:59", "2026-10-25T23:00"),
    ],
)
def test_daily_cap_rolls_over_at_local_midnight(zone: str, last_minute: str, next_day: str) -> None:
    model = one_team(
        "{rep: ada, weight: 100}, {rep: ben}",
        f"ada: {{timezone: {zone}, daily_cap: 2}}",
        hours=False,
    )
    late = utc(last_minute)
    early_same_day = late - timedelta(hours=22)

    picked, _ = reps_for(model, [early_same_day, late, late, utc(next_day)])

    assert picked == ["ada", "ada", "ben", "ada"]
    third, _ = send(model, late, _state_after(model, [early_same_day, late]))
    assert "ada: daily cap 2 reached" in third.lines


def _state_after(model: LeadModel, times: list[datetime]) -> RoutingState:
    return reps_for(model, times)[1]


@pytest.mark.parametrize(
    ("zone", "sunday_late", "monday"),
    [
        ("UTC", "2026-11-29T23:59", "2026-11-30T00:00"),
        # Monday 00:00 in Tokyo is still Sunday in UTC.
        ("Asia/Tokyo", "2026-11-29T14:59", "2026-11-29T15:00"),
        # Monday 00:00 in New York is Monday 05:00 UTC.
        ("America/New_York", "2026-11-30T04:59", "2026-11-30T05:00"),
    ],
)
def test_weekly_cap_rolls_over_on_local_monday(zone: str, sunday_late: str, monday: str) -> None:
    model = one_team(
        "{rep: ada, weight: 100}, {rep: ben}",
        f"ada: {{timezone: {zone}, weekly_cap: 3}}",
        hours=False,
    )
    late = utc(sunday_late)
    earlier_in_week = [late - timedelta(days=days) for days in (6, 3)]

    picked, _ = reps_for(model, [*earlier_in_week, late, late, utc(monday)])

    assert picked == ["ada", "ada", "ada", "ben", "ada"]


def test_a_capped_rep_gets_nothing_more_that_day_even_when_alone() -> None:
    model = one_team("{rep: ada}", "ada: {timezone: Europe/Berlin, daily_cap: 1}")

    _, state = send(model, MON)
    decision, _ = send(model, MON + timedelta(hours=1), state)

    assert decision.rep.id == "ada"
    assert decision.lines[-2:] == (
        "ada: daily cap 1 reached",
        "nobody in team t can take it now: next available is ada at "
        "Tue 2026-11-24 09:00 Europe/Berlin",
    )


def test_account_owner_leads_count_towards_the_cap() -> None:
    model = one_team("{rep: ada, weight: 100}, {rep: ben}", "ada: {daily_cap: 1}", hours=False)

    _, state = send(model, MON, account_owner="ada")
    decision, _ = send(model, MON, state)

    assert decision.rep.id == "ben"


def test_caps_count_the_leads_one_state_routed() -> None:
    # The state lives per partition of the leads table: each partition counts its own.
    model = one_team("{rep: ada, weight: 100}, {rep: ben}", "ada: {daily_cap: 1}", hours=False)

    partition_0 = reps_for(model, [MON, MON])[0]
    partition_1 = reps_for(model, [MON, MON])[0]

    assert partition_0 == partition_1 == ["ada", "ben"]


# --- state ------------------------------------------------------------------------------


def test_state_is_json_and_stays_bounded() -> None:
    model = one_team(
        "{rep: ada, weight: 2}, {rep: ben}, {rep: cy}",
        "ada: {timezone: Asia/Tokyo, daily_cap: 5, weekly_cap: 20}, "
        "ben: {timezone: America/New_York}",
    )
    times = [MON + timedelta(hours=n * 7) for n in range(500)]

    _, state = reps_for(model, times)

    assert RoutingState.model_validate_json(state.model_dump_json()) == state
    assert set(state.load) == {"ada"}
    assert set(state.credits) == {"t"}
    assert set(state.last_seen) <= {"ada", "ben", "cy"}


def test_now_must_carry_a_time_zone() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        send(one_team("{rep: ada}"), datetime(2026, 11, 23, 10, 0))


# --- the model file ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("routing", "error"),
    [
        (
            "teams:\n  - id: t\n    members:\n      - {rep: ada}\n      - {rep: zed}\n",
            "m.yaml:17: routing.teams.0.members.1.rep: Value error, 'zed' is not one of the reps",
        ),
        (
            "teams: [{id: t, manager: boss, members: [{rep: ada}]}]\n",
            "m.yaml:13: routing.teams.0.manager: Value error, 'boss' is not one of the reps",
        ),
        (
            "teams: [{id: t, members: [{rep: ada}, {rep: ada}]}]\n",
            "routing.teams.0.members: Value error, rep 'ada' is in the team twice",
        ),
        (
            "teams: [{id: t, members: [{rep: ada}]}, {id: t, members: [{rep: ben}]}]\n",
            "routing.teams: Value error, duplicate team id 't'",
        ),
        (
            "teams: [{id: t, members: [{rep: ada}]}]\nrules: [{id: r, team: nope}]\n",
            "m.yaml:14: routing.rules: Value error, rule 'r': team 'nope' is not one of the teams",
        ),
        (
            "teams: [{id: t, members: [{rep: ada}]}]\nrules: [{id: fallback, team: t}]\n",
            "routing.rules.0.id: Value error, 'fallback' is reserved",
        ),
        (
            "teams: [{id: t, members: [{rep: ada}]}]\n"
            "rules: [{id: r, team: t, when: {regions: [emea]}}]\n",
            "rule 'r': region 'emea' is not one of routing.regions",
        ),
        (
            "teams: [{id: t, members: [{rep: ada}]}]\n"
            "rules: [{id: r, team: t, when: {score: {id: nope, min: 5}}}]\n",
            "routing.rules.0.when.score.id: Value error, 'nope' is not one of the scores",
        ),
        (
            "teams: [{id: t, members: [{rep: ada}]}]\n"
            "rules: [{id: r, team: t, when: {min_employees: 300, max_employees: 50}}]\n",
            "min_employees must not be above max_employees",
        ),
        (
            "teams: [{id: t, members: [{rep: ada}]}]\nschedules:\n  zed: {}\n",
            "m.yaml:15: routing.schedules: Value error, schedule for 'zed': not one of the reps",
        ),
        (
            "teams: [{id: t, members: [{rep: ada}]}]\nschedules:\n  ada:\n"
            "    timezone: Mars/Olympus\n",
            "m.yaml:16: routing.schedules.ada.timezone: Value error, unknown time zone "
            "'Mars/Olympus' (use an IANA name like Europe/Berlin)",
        ),
        (
            "teams: [{id: t, members: [{rep: ada}]}]\nschedules:\n"
            '  ada: {hours: {mon: ["9-17"]}}\n',
            "Value error, mon: '9-17' is not a range like 09:00-18:00",
        ),
        (
            "teams: [{id: t, members: [{rep: ada}]}]\nschedules:\n"
            '  ada: {hours: {fri: ["22:00-06:00"]}}\n',
            "fri: '22:00-06:00' ends before it starts (split a night shift",
        ),
        (
            "teams: [{id: t, members: [{rep: ada}]}]\nschedules:\n"
            '  ada: {hours: {mon: ["09:00-25:00"]}}\n',
            "mon: '09:00-25:00' is not a time of day (00:00 to 24:00)",
        ),
        (
            "teams: [{id: t, members: [{rep: ada}]}]\nschedules:\n"
            '  ada: {hours: {funday: ["09:00-17:00"]}}\n',
            "routing.schedules.ada.hours.funday.[key]: Input should be 'mon', 'tue'",
        ),
        (
            "teams: [{id: t, members: [{rep: ada}]}]\nschedules:\n"
            "  ada: {out_of_office: [{from: 2026-12-01, to: 2026-11-30}]}\n",
            "out_of_office from 2026-12-01 to 2026-11-30: 'to' must be after 'from'",
        ),
        (
            "teams: [{id: t, members: [{rep: ada}]}]\nschedules:\n  ada: {daily_cap: 0}\n",
            "routing.schedules.ada.daily_cap: Input should be greater than or equal to 1",
        ),
        ("teams: []\n", "m.yaml:13: routing.teams: Tuple should have at least 1 item"),
    ],
)
def test_routing_mistakes_name_the_line(routing: str, error: str) -> None:
    with pytest.raises(ModelError) as raised:
        model_of(routing)

    assert any(error in line for line in raised.value.errors), raised.value.errors


def test_a_model_without_routing_still_loads() -> None:
    model = parse_model(HEAD.removesuffix("routing:\n"))

    assert model.routing is None


@pytest.mark.parametrize(
    ("traits", "rep", "rule"),
    [
        ({"country": "JP"}, "aiko", "apac"),
        ({"country": "DE", "employees": 120}, "ben", "europe-smb"),
        ({"country": "DE", "employees": 5000}, "queue", "fallback"),
        ({"country": "US"}, "carla", "americas"),
        ({"country": "BR"}, "queue", "fallback"),
    ],
)
def test_the_demo_model_routes_by_its_rules(
    model: LeadModel, traits: dict[str, TraitValue], rep: str, rule: str
) -> None:
    decision, _ = send(model, utc("2026-11-24T03:00"), traits=traits)  # Tue 12:00 in Tokyo

    assert (decision.rep.id, decision.rule) == (rep, rule)
