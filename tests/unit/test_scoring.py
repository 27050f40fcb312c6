"""Scoring: rules and caps, decay by event time, named scores, fit and grade, triggers, stage."""

from __future__ import annotations

from collections.abc import Iterable

import pytest

from schemas.decisions import BreakdownLine
from schemas.internal import PersonEvent, TraitValue
from streams.lead_model import LeadModel, parse_model
from streams.scoring import (
    Engagement,
    Fire,
    add_engagement,
    fit_of,
    is_known,
    named_scores,
    next_stage,
    read_score,
    score_lines,
    update_triggers,
)

DAY_MS = 86_400_000
HOUR_MS = 3_600_000
T0_MS = 1_795_132_800_000  # 2026-11-20T00:00:00Z, a UTC midnight: per-day caps count from it
YEAR_MS = 365 * DAY_MS

_counter = iter(range(1_000_000))


def at(day: float = 0, hour: float = 0) -> int:
    return T0_MS + int(day * DAY_MS + hour * HOUR_MS)


def ev(
    kind: str,
    name: str = "",
    *,
    day: float = 0,
    hour: float = 0,
    ts_ms: int | None = None,
    mid: str | None = None,
    asset: str | None = None,
) -> PersonEvent:
    return PersonEvent(
        mid=mid or f"m-{next(_counter)}",
        pk="anon-1",
        kind=kind,  # type: ignore[arg-type]
        name=name,
        ts_ms=at(day, hour) if ts_ms is None else ts_ms,
        asset=asset,
    )


def page(path: str, **kw: object) -> PersonEvent:
    return ev("page", path, **kw)  # type: ignore[arg-type]


def track(name: str, **kw: object) -> PersonEvent:
    return ev("track", name, **kw)  # type: ignore[arg-type]


EMPTY = Engagement({}, {}, {}, {})


def engage(events: Iterable[PersonEvent], model: LeadModel) -> Engagement:
    state = EMPTY
    for event in events:
        state = add_engagement(state, event, model)
    return state


def lines_at(
    state: Engagement, model: LeadModel, at_ms: int, score: str | None = None
) -> tuple[int, list[tuple[str, str, int, int]]]:
    """A score's points and its breakdown lines; checks the lines add up to the points."""
    chosen = model.index.scores[score] if score else model.primary
    points, lines = score_lines(state, chosen, at_ms, model)
    assert sum(line.points for line in lines) == points
    assert points == read_score(state.decay, chosen, at_ms)
    return points, [(x.rule, x.label, x.points, x.count) for x in lines]


def fires_of(events: Iterable[PersonEvent], model: LeadModel) -> list[Fire]:
    hits: dict[str, tuple[int, ...]] = {}
    fired: dict[str, int] = {}
    out: list[Fire] = []
    for event in events:
        hits, fired, fires = update_triggers(hits, fired, event, model)  # type: ignore[assignment]
        out.extend(fires)
    return out


REPS = """
reps: [{id: queue, name: Queue, email: q@example.com}]
fallback_rep: queue
"""

CAPS = parse_model(
    """
version: caps-1
scores:
  - id: main
    threshold: 100
    rules:
      - {id: demo, event: Demo Requested, points: 60}
      - {id: docs, page: "/docs*", points: 2}
      - {id: docs-api, page: "/docs/api*", points: 4, label: API docs}
      - {id: unsubscribe, event: Email Unsubscribed, points: -30}
      - {id: big, event: Big, points: 30, max_points: 50}
      - {id: click, event: Clicked, points: 5, max_count: 3}
      - {id: daily, event: Daily, points: 4, max_per_day: 2}
      - {id: paper, event: Paper, points: 30, once_per_asset: true}
      - {id: guide, page: "/guides/*", points: 7, once_per_asset: true}
      - {id: careers, page: "/careers*", points: -10, max_points: 25}
      - {id: daily-paper, event: Daily Paper, points: 10, once_per_asset: true, max_per_day: 1}
  - id: api
    threshold: 50
    rules:
      - {id: api-docs, page: "/docs/api*", points: 1}
triggers:
  - {id: docs-2x, page: "/docs*", count: 2, within_days: 1, cooldown_days: 0, message: read docs}
  - {id: big-once, event: Big, cooldown_days: 10, message: did the big thing}
"""
    + REPS,
    source="caps.yaml",
)

DECAY = parse_model(
    """
version: decay-1
scores:
  - id: half
    threshold: 100
    decay: {half_life_days: 10}
    rules: [{id: h, event: H, points: 100}, {id: h-minus, event: H Minus, points: -40}]
  - id: reset
    threshold: 100
    decay: {reset_after_days: 30}
    rules: [{id: r, event: R, points: 40}]
  - id: both
    threshold: 100
    decay: {half_life_days: 10, reset_after_days: 30}
    rules: [{id: b, event: B, points: 100}]
  - id: plain
    threshold: 100
    rules: [{id: p, event: P, points: 10}]
"""
    + REPS,
    source="decay.yaml",
)


# --- rule kinds ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("event", "points"),
    [
        pytest.param(track("Demo Requested"), {"main": 60, "api": 0}, id="track-exact-name"),
        pytest.param(track("demo requested"), {"main": 0, "api": 0}, id="track-name-case"),
        pytest.param(track("Demo Requested "), {"main": 0, "api": 0}, id="track-name-not-trimmed"),
        pytest.param(page("/docs"), {"main": 2, "api": 0}, id="page-glob-prefix"),
        pytest.param(page("/docs/api/v2"), {"main": 6, "api": 1}, id="page-many-rules-two-scores"),
        pytest.param(page("/blog/docs"), {"main": 0, "api": 0}, id="page-glob-anchored"),
        pytest.param(page("/Docs"), {"main": 0, "api": 0}, id="page-glob-case"),
        pytest.param(track("/docs"), {"main": 0, "api": 0}, id="track-never-matches-page-rule"),
        pytest.param(page("Demo Requested"), {"main": 0, "api": 0}, id="page-never-matches-event"),
        pytest.param(track("Email Unsubscribed"), {"main": -30, "api": 0}, id="negative-points"),
        pytest.param(page("/careers/jobs"), {"main": -10, "api": 0}, id="negative-page"),
        pytest.param(ev("identify"), {"main": 0, "api": 0}, id="identify"),
    ],
)
def test_each_rule_kind_matches_only_its_events(event: PersonEvent, points: dict[str, int]) -> None:
    state = engage([event], CAPS)

    assert {s.id: s.points for s in named_scores(state, CAPS, event.ts_ms)} == points


def test_an_event_no_rule_matches_returns_the_state_unchanged() -> None:
    before = engage([track("Demo Requested")], CAPS)

    assert add_engagement(before, track("Logged In", day=3), CAPS) is before


def test_add_engagement_does_not_change_its_input() -> None:
    before = engage([track("Big")], CAPS)
    frozen = (dict(before.rules), dict(before.decay))

    after = add_engagement(before, track("Big", day=1), CAPS)

    assert (dict(before.rules), dict(before.decay)) == frozen
    assert after.rules["big"] == (60, 50, 2, 2, "main")


# --- caps --------------------------------------------------------------------------------------


def _cap(rule: str, text: str) -> str:
    return f"{rule}: capped, {text}"


@pytest.mark.parametrize(
    ("events", "points", "lines"),
    [
        pytest.param(
            [track("Big")],
            30,
            [("engagement:big", "Big", 30, 1)],
            id="max_points-under",
        ),
        pytest.param(
            [track("Big"), track("Big")],
            50,
            [
                ("engagement:big", "Big", 60, 2),
                ("cap:big", _cap("Big", "at most 50 points"), -10, 0),
            ],
            id="max_points-partly-held-back",
        ),
        pytest.param(
            [track("Big")] * 3,
            50,
            [
                ("engagement:big", "Big", 90, 3),
                ("cap:big", _cap("Big", "at most 50 points"), -40, 1),
            ],
            id="max_points-over",
        ),
        pytest.param(
            [page("/careers")] * 4,
            -25,
            [
                ("engagement:careers", "page /careers*", -40, 4),
                ("cap:careers", _cap("page /careers*", "at most 25 points"), 15, 1),
            ],
            id="max_points-limits-negative-points-too",
        ),
        pytest.param(
            [track("Clicked")] * 3,
            15,
            [("engagement:click", "Clicked", 15, 3)],
            id="max_count-at",
        ),
        pytest.param(
            [track("Clicked")] * 5,
            15,
            [
                ("engagement:click", "Clicked", 25, 5),
                ("cap:click", _cap("Clicked", "at most 3 events"), -10, 2),
            ],
            id="max_count-over",
        ),
        pytest.param(
            [track("Daily", hour=h) for h in (1, 2, 23.99)],
            8,
            [
                ("engagement:daily", "Daily", 12, 3),
                ("cap:daily", _cap("Daily", "at most 2 a day"), -4, 1),
            ],
            id="max_per_day-same-utc-day",
        ),
        pytest.param(
            [track("Daily", hour=h) for h in (1, 2, 23.99, 24, 25, 26)],
            16,
            [
                ("engagement:daily", "Daily", 24, 6),
                ("cap:daily", _cap("Daily", "at most 2 a day"), -8, 2),
            ],
            id="max_per_day-next-utc-day-resets",
        ),
        pytest.param(
            [track("Paper", asset="guide-a"), track("Paper", asset="guide-b")],
            60,
            [("engagement:paper", "Paper", 60, 2)],
            id="once_per_asset-two-assets",
        ),
        pytest.param(
            [track("Paper", asset="guide-a"), track("Paper", day=3, asset="guide-a")],
            30,
            [
                ("engagement:paper", "Paper", 60, 2),
                ("cap:paper", _cap("Paper", "once per asset"), -30, 1),
            ],
            id="once_per_asset-same-asset-twice",
        ),
        pytest.param(
            [track("Paper"), track("Paper", day=1)],
            30,
            [
                ("engagement:paper", "Paper", 60, 2),
                ("cap:paper", _cap("Paper", "once per asset"), -30, 1),
            ],
            id="once_per_asset-no-asset-is-one-asset",
        ),
        pytest.param(
            [page("/guides/a"), page("/guides/b"), page("/guides/a", day=1)],
            14,
            [
                ("engagement:guide", "page /guides/*", 21, 3),
                ("cap:guide", _cap("page /guides/*", "once per asset"), -7, 1),
            ],
            id="once_per_asset-page-path-is-the-asset",
        ),
    ],
)
def test_caps_hold_points_back_in_their_own_breakdown_line(
    events: list[PersonEvent], points: int, lines: list[tuple[str, str, int, int]]
) -> None:
    state = engage(events, CAPS)

    assert lines_at(state, CAPS, max(e.ts_ms for e in events)) == (points, lines)


def test_a_late_event_from_an_older_day_counts_against_that_days_cap() -> None:
    events = [
        track("Daily", day=0, hour=1),
        track("Daily", day=0, hour=2),
        track("Daily", day=1, hour=1),
        track("Daily", day=0, hour=3),  # late: day 0 is full already
        track("Daily", day=1, hour=0),  # late: day 1 has room for one more
    ]

    state = engage(events, CAPS)

    assert state.rules["daily"] == (20, 16, 5, 4, "main")


def test_an_asset_held_back_by_the_daily_cap_still_counts_on_another_day() -> None:
    events = [
        track("Daily Paper", day=0, asset="a"),
        track("Daily Paper", day=0, hour=1, asset="b"),  # day 0 is full: held back
        track("Daily Paper", day=1, asset="b"),  # b has not counted yet
    ]

    state = engage(events, CAPS)

    assert lines_at(state, CAPS, at(1))[0] == 20


def test_caps_start_again_when_the_score_resets() -> None:
    model = parse_model(
        """
version: caps-reset
scores:
  - id: main
    threshold: 100
    decay: {reset_after_days: 30}
    rules:
      - {id: big, event: Big, points: 30, max_points: 50}
      - {id: paper, event: Paper, points: 30, once_per_asset: true}
"""
        + REPS
    )
    events = [
        track("Big"),
        track("Big", day=1),
        track("Paper", day=1, asset="a"),
        track("Big", day=40),
        track("Paper", day=40, asset="a"),
    ]

    state = engage(events, model)

    assert lines_at(state, model, at(40)) == (
        60,
        [("engagement:big", "Big", 30, 1), ("engagement:paper", "Paper", 30, 1)],
    )


# --- decay ------------------------------------------------------------------------------------


def test_half_life_halves_old_points_before_new_ones_are_added() -> None:
    state = engage([track("H"), track("H", day=10)], DECAY)

    assert lines_at(state, DECAY, at(10), "half") == (
        150,
        [
            ("engagement:h", "H", 200, 2),
            ("decay:half", "decay (half-life 10 days)", -50, 1),
        ],
    )


@pytest.mark.parametrize(
    ("day", "points"),
    [(-1, 100), (0, 100), (5, 71), (10, 50), (20, 25), (30, 13), (100, 0)],
)
def test_read_score_decays_lazily_to_the_time_asked(day: float, points: int) -> None:
    state = engage([track("H")], DECAY)
    stored = dict(state.decay)

    assert read_score(state.decay, DECAY.index.scores["half"], at(day)) == points
    assert state.decay == stored  # reading changes nothing


def test_read_score_of_a_score_never_touched_is_zero() -> None:
    assert read_score({}, DECAY.primary, at(0)) == 0
    assert score_lines(EMPTY, DECAY.primary, at(0), DECAY) == (0, ())


def test_negative_points_decay_too() -> None:
    state = engage([track("H"), track("H Minus", day=10)], DECAY)

    assert lines_at(state, DECAY, at(20), "half") == (
        5,
        [
            ("engagement:h", "H", 100, 1),
            ("engagement:h-minus", "H Minus", -40, 1),
            ("decay:half", "decay (half-life 10 days)", -55, 1),
        ],
    )


@pytest.mark.parametrize(
    ("days", "points", "lines"),
    [
        pytest.param([0, 20], 80, [("engagement:r", "R", 80, 2)], id="within-reset"),
        pytest.param([0, 30], 80, [("engagement:r", "R", 80, 2)], id="exactly-reset-days"),
        pytest.param([0, 20, 51], 40, [("engagement:r", "R", 40, 1)], id="idle-too-long"),
        pytest.param([0, 31, 32], 80, [("engagement:r", "R", 80, 2)], id="new-run-keeps-counting"),
    ],
)
def test_reset_after_idle_days_starts_the_score_over(
    days: list[float], points: int, lines: list[tuple[str, str, int, int]]
) -> None:
    state = engage([track("R", day=d) for d in days], DECAY)

    assert lines_at(state, DECAY, at(days[-1]), "reset") == (points, lines)


def test_a_score_read_after_its_reset_time_is_zero_with_a_reset_line() -> None:
    state = engage([track("R"), track("R", day=5)], DECAY)

    assert lines_at(state, DECAY, at(35), "reset") == (80, [("engagement:r", "R", 80, 2)])
    assert lines_at(state, DECAY, at(35.01), "reset") == (
        0,
        [
            ("engagement:r", "R", 80, 2),
            ("decay:reset", "reset after 30 idle days", -80, 1),
        ],
    )


def test_half_life_and_reset_together() -> None:
    state = engage([track("B"), track("B", day=20)], DECAY)
    assert lines_at(state, DECAY, at(20), "both") == (
        125,
        [
            ("engagement:b", "B", 200, 2),
            ("decay:both", "decay (half-life 10 days, reset after 30 idle days)", -75, 1),
        ],
    )

    state = add_engagement(state, track("B", day=51), DECAY)  # idle 31 days: over

    assert lines_at(state, DECAY, at(51), "both") == (100, [("engagement:b", "B", 100, 1)])
    assert lines_at(state, DECAY, at(61), "both") == (
        50,
        [
            ("engagement:b", "B", 100, 1),
            ("decay:both", "decay (half-life 10 days, reset after 30 idle days)", -50, 1),
        ],
    )


def test_a_reset_of_one_score_leaves_the_others_alone() -> None:
    state = engage([track("R"), track("P"), track("R", day=40)], DECAY)

    assert state.rules["p"] == (10, 10, 1, 1, "plain")
    assert state.rules["r"] == (40, 40, 1, 1, "reset")
    assert lines_at(state, DECAY, at(40), "plain") == (10, [("engagement:p", "P", 10, 1)])


def test_a_score_without_decay_keeps_its_points_forever() -> None:
    state = engage([track("P"), track("P", day=3)], DECAY)

    assert lines_at(state, DECAY, at(0) + 80 * YEAR_MS, "plain") == (
        20,
        [("engagement:p", "P", 20, 2)],
    )


def test_long_gaps_decay_to_nothing_without_overflow() -> None:
    events = [track("H", ts_ms=0), track("B", ts_ms=0), track("H", ts_ms=at(0))]

    state = engage(events, DECAY)

    assert lines_at(state, DECAY, at(0), "half") == (
        100,
        [("engagement:h", "H", 200, 2), ("decay:half", "decay (half-life 10 days)", -100, 1)],
    )
    assert lines_at(state, DECAY, at(0) + 200 * YEAR_MS, "half") == (
        0,
        [("engagement:h", "H", 200, 2), ("decay:half", "decay (half-life 10 days)", -200, 1)],
    )
    # A late event from 1970 after 2026: decays from its own time, to nothing.
    state = add_engagement(state, track("H", ts_ms=1), DECAY)
    assert read_score(state.decay, DECAY.primary, at(0)) == 100


def test_a_late_event_decays_from_its_own_time() -> None:
    in_order = engage([track("H"), track("H", day=10), track("H", day=20)], DECAY)
    late = engage([track("H"), track("H", day=20), track("H", day=10)], DECAY)

    expected = (
        175,  # 25 + 50 + 100
        [("engagement:h", "H", 300, 3), ("decay:half", "decay (half-life 10 days)", -125, 1)],
    )
    assert lines_at(in_order, DECAY, at(20), "half") == expected
    assert lines_at(late, DECAY, at(20), "half") == expected


def test_a_late_event_older_than_the_first_one_still_counts() -> None:
    late = engage([track("H", day=10), track("H", day=0)], DECAY)

    assert lines_at(late, DECAY, at(10), "half")[0] == 150


def test_a_late_event_from_before_a_reset_adds_nothing() -> None:
    # In time order (0, 5, 45) the 40 idle days reset the score too: the same 40 points.
    late = engage([track("R"), track("R", day=45), track("R", day=5)], DECAY)

    assert lines_at(late, DECAY, at(45), "reset") == (40, [("engagement:r", "R", 40, 1)])


def test_named_scores_come_in_model_order_and_each_adds_up() -> None:
    state = engage([track("B"), track("H"), track("P"), track("H", day=10)], DECAY)

    named = named_scores(state, DECAY, at(10))

    assert [(s.id, s.points, s.threshold) for s in named] == [
        ("half", 150, 100),
        ("reset", 0, 100),
        ("both", 50, 100),
        ("plain", 10, 100),
    ]
    for score in named:
        assert sum(line.points for line in score.breakdown) == score.points
    assert named[1].breakdown == ()


def test_the_demo_model_scores_a_product_page_in_two_named_scores(model: LeadModel) -> None:
    state = engage([page("/product/robotics/arm")] * 2, model)

    named = named_scores(state, model, at(0))

    assert [(s.id, s.points, [x.rule for x in s.breakdown]) for s in named] == [
        ("engagement", 6, ["engagement:product-view"]),
        ("robotics", 20, ["engagement:robotics-pages"]),
    ]


# --- fit ------------------------------------------------------------------------------------

FIT = parse_model(
    """
version: fit-1
scores: [{id: main, threshold: 100, rules: [{id: demo, event: Demo Requested, points: 60}]}]
fit:
  grades: {A: 40, B: 20, C: 5}
  competitor_domains: [Rival.example]
  rules:
    - {id: size-core, group: size, trait: employees, min: 50, max: 300, points: 20}
    - {id: size-up, group: size, trait: employees, min: 100, points: 10}
    - {id: industry, trait: industry, in: [Manufacturing, robotics], points: 10}
    - {id: country, trait: country, in: [US, DE], points: 5}
    - {id: exec, group: seniority, trait: title, contains: [VP, Chief], points: 15}
    - {id: manager, group: seniority, trait: title, contains: [manager, vp], points: 5}
    - {id: company, trait: company, contains: [robot], points: 3}
    - {id: bigcorp, trait: email_domain, in: [bigcorp.com], points: 7, label: key account}
    - {id: free-mail, trait: free_mail, points: -10}
    - {id: competitor, trait: competitor, points: -100}
"""
    + REPS,
    source="fit.yaml",
)


@pytest.mark.parametrize(
    ("traits", "lines"),
    [
        pytest.param({}, [], id="nothing-known"),
        pytest.param({"employees": 49}, [], id="employees-below-min"),
        pytest.param(
            {"employees": 50}, [("fit:size-core", "company size 50-300", 20)], id="min-inclusive"
        ),
        pytest.param(
            {"employees": 300},
            [("fit:size-core", "company size 50-300", 20)],
            id="group-first-match",
        ),
        pytest.param(
            {"employees": 301}, [("fit:size-up", "company size 100", 10)], id="second-of-group"
        ),
        pytest.param(
            {"employees": 120.0}, [("fit:size-core", "company size 50-300", 20)], id="float"
        ),
        pytest.param({"employees": "120"}, [], id="employees-as-text"),
        pytest.param({"employees": True}, [], id="employees-bool"),
        pytest.param(
            {"industry": "manufacturing"},
            [("fit:industry", "industry manufacturing/robotics", 10)],
            id="in-case-insensitive",
        ),
        pytest.param({"industry": "Robotics & Manufacturing"}, [], id="in-is-exact"),
        pytest.param({"country": "us"}, [("fit:country", "country us/de", 5)], id="country-in"),
        pytest.param({"country": "USA"}, [], id="country-not-listed"),
        pytest.param(
            {"title": "Chief Revenue Officer"}, [("fit:exec", "title vp/chief", 15)], id="contains"
        ),
        pytest.param(
            {"title": "VP and Manager"},
            [("fit:exec", "title vp/chief", 15)],
            id="seniority-first-match",
        ),
        pytest.param(
            {"title": "Engineering Manager"},
            [("fit:manager", "title manager/vp", 5)],
            id="seniority-second",
        ),
        pytest.param({"title": "Engineer"}, [], id="title-no-match"),
        pytest.param(
            {"company": "Acme Robotics"},
            [("fit:company", "company robot", 3)],
            id="company-contains",
        ),
        pytest.param(
            {"email": "a@bigcorp.com"}, [("fit:bigcorp", "key account", 7)], id="email-domain"
        ),
        pytest.param(
            {"email": "a@gmail.com"}, [("fit:free-mail", "free-mail address", -10)], id="free-mail"
        ),
        pytest.param(
            {"email": "a@rival.example"}, [("fit:competitor", "competitor", -100)], id="competitor"
        ),
        pytest.param({"email": "not-an-email"}, [], id="no-domain"),
        pytest.param(
            {
                "email": "ceo@bigcorp.com",
                "employees": 120,
                "industry": "Robotics",
                "country": "DE",
                "title": "VP Operations",
            },
            [
                ("fit:size-core", "company size 50-300", 20),
                ("fit:industry", "industry manufacturing/robotics", 10),
                ("fit:country", "country us/de", 5),
                ("fit:exec", "title vp/chief", 15),
                ("fit:bigcorp", "key account", 7),
            ],
            id="everything-in-model-order",
        ),
    ],
)
def test_fit_rules_match_each_trait_kind(
    traits: dict[str, TraitValue], lines: list[tuple[str, str, int]]
) -> None:
    fit, _, got = fit_of(traits, FIT)

    assert [(x.rule, x.label, x.points) for x in got] == lines
    assert fit == sum(points for _, _, points in lines)


@pytest.mark.parametrize(
    ("traits", "fit", "grade"),
    [
        ({"employees": 120, "title": "VP", "country": "US"}, 40, "A"),
        ({"employees": 120, "title": "VP"}, 35, "B"),
        ({"employees": 120}, 20, "B"),
        ({"title": "VP"}, 15, "C"),
        ({"country": "US"}, 5, "C"),
        ({"company": "robotworks"}, 3, "D"),
        ({}, 0, "D"),
        ({"employees": 120, "email": "x@gmail.com"}, 10, "C"),
        ({"employees": 120, "title": "VP", "email": "x@rival.example"}, -65, "D"),
    ],
)
def test_grades_come_from_fit_points(traits: dict[str, TraitValue], fit: int, grade: str) -> None:
    assert fit_of(traits, FIT)[:2] == (fit, grade)


@pytest.mark.parametrize(
    ("points", "grade"), [(41, "A"), (40, "A"), (39, "B"), (20, "B"), (19, "C"), (5, "C"), (4, "D")]
)
def test_grade_thresholds_are_inclusive(points: int, grade: str) -> None:
    assert FIT.fit.grades.grade(points) == grade


def test_the_memo_does_not_mix_up_leads(model: LeadModel) -> None:
    first = fit_of({"employees": 120, "email": "a@acme.com"}, model)
    second = fit_of({"employees": 120, "email": "a@gmail.com"}, model)
    again = fit_of({"employees": 120, "email": "b@acme.com"}, model)

    assert (first[0], second[0], again[0]) == (20, 10, 20)
    assert [x.rule for x in second[2]] == ["fit:size-core", "fit:free-mail"]


def test_fit_breakdown_is_bounded_lines(model: LeadModel) -> None:
    fit, grade, lines = fit_of(
        {"employees": 120, "industry": "Logistics", "country": "US", "title": "Head of Ops"},
        model,
    )

    assert (fit, grade) == (50, "A")
    assert all(isinstance(x, BreakdownLine) for x in lines)
    assert sum(x.points for x in lines) == fit


# --- hot triggers ----------------------------------------------------------------------------


def test_third_pricing_view_within_seven_days_fires(model: LeadModel) -> None:
    events = [
        page("/pricing", day=0),
        page("/pricing/a", day=3),
        page("/pricing", day=6.9, mid="3rd"),
    ]

    assert fires_of(events, model) == [Fire("pricing-3x-7d", "3rd", at(6.9))]


@pytest.mark.parametrize(
    "days",
    [
        pytest.param([0, 5, 10], id="spread-over-10-days"),
        pytest.param([0, 7.01, 7.02], id="just-outside"),
        pytest.param([0, 1], id="only-two"),
    ],
)
def test_pricing_views_that_are_too_few_or_too_spread_do_not_fire(
    model: LeadModel, days: list[float]
) -> None:
    assert fires_of([page("/pricing", day=d) for d in days], model) == []


def test_exactly_seven_days_apart_still_fires(model: LeadModel) -> None:
    events = [page("/pricing", day=0), page("/pricing", day=1), page("/pricing", day=7)]

    assert [f.trigger for f in fires_of(events, model)] == ["pricing-3x-7d"]


def test_late_event_is_counted_at_its_event_time(model: LeadModel) -> None:
    events = [
        page("/pricing", day=10),
        page("/pricing", day=12),
        page("/pricing", day=9, mid="late"),
    ]

    assert fires_of(events, model) == [Fire("pricing-3x-7d", "late", at(9))]


def test_late_event_completing_an_older_window_fires(model: LeadModel) -> None:
    events = [
        page("/pricing", day=0),
        page("/pricing", day=1),
        page("/pricing", day=20),
        page("/pricing", day=2, mid="late"),
    ]

    assert fires_of(events, model) == [Fire("pricing-3x-7d", "late", at(2))]


def test_late_event_out_of_window_does_not_fire(model: LeadModel) -> None:
    events = [page("/pricing", day=10), page("/pricing", day=12), page("/pricing", day=1)]

    assert fires_of(events, model) == []


def test_single_event_trigger_fires_on_that_event(model: LeadModel) -> None:
    fires = fires_of([page("/pricing"), track("Demo Requested", day=1, mid="demo")], model)

    assert fires == [Fire("demo-request", "demo", at(1))]


@pytest.mark.parametrize(
    ("days", "fired_on"),
    [
        pytest.param([0, 10, 29.9], [0], id="within-cooldown"),
        pytest.param([0, 30], [0, 30], id="cooldown-over"),
        pytest.param([0, 31, 40, 62], [0, 31, 62], id="restarts-after-fire"),
    ],
)
def test_trigger_stays_quiet_during_cooldown(
    model: LeadModel, days: list[float], fired_on: list[float]
) -> None:
    events = [track("Whitepaper Downloaded", day=d) for d in days]

    assert [f.ts_ms for f in fires_of(events, model)] == [at(d) for d in fired_on]


def test_late_event_inside_cooldown_before_the_fire_does_not_fire_again() -> None:
    events = [track("Big", day=20), track("Big", day=15)]

    assert [f.ts_ms for f in fires_of(events, CAPS)] == [at(20)]


def test_zero_cooldown_fires_every_time_the_window_is_full() -> None:
    events = [page("/docs", hour=0), page("/docs", hour=12), page("/docs", hour=21)]

    assert [f.ts_ms for f in fires_of(events, CAPS)] == [at(0, 12), at(0, 21)]


def test_update_triggers_records_hits_and_fire_time(model: LeadModel) -> None:
    event = track("Whitepaper Downloaded", day=2)

    hits, fired, fires = update_triggers({}, {}, event, model)

    assert hits == {"whitepaper-download": (event.ts_ms,)}
    assert fired == {"whitepaper-download": event.ts_ms}
    assert fires == [Fire("whitepaper-download", event.mid, event.ts_ms)]


def test_update_triggers_ignores_events_no_trigger_watches(model: LeadModel) -> None:
    hits = {"pricing-3x-7d": (T0_MS,)}

    assert update_triggers(hits, {}, track("Webinar Attended"), model) == (hits, {}, [])


# --- stage ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("stage", "known", "points", "grade", "expected"),
    [
        pytest.param("anonymous", False, {}, "D", ("anonymous", None), id="anonymous-stays"),
        pytest.param(
            "anonymous",
            False,
            {"engagement": 500},
            "A",
            ("anonymous", None),
            id="anonymous-over-threshold",
        ),
        pytest.param("anonymous", True, {}, "D", ("known", "identified"), id="anonymous-to-known"),
        pytest.param(
            "anonymous",
            True,
            {"engagement": 10},
            "D",
            ("engaged", "identified, with engagement"),
            id="anonymous-to-engaged",
        ),
        pytest.param(
            "known", True, {"engagement": 0, "robotics": 0}, "D", ("known", None), id="known-stays"
        ),
        pytest.param(
            "known", True, {"engagement": -30}, "C", ("known", None), id="negative-is-not-engaged"
        ),
        pytest.param(
            "known",
            True,
            {"robotics": 10},
            "D",
            ("engaged", "first engagement"),
            id="known-to-engaged",
        ),
        pytest.param(
            "engaged",
            True,
            {"engagement": 100, "robotics": 0},
            "C",
            ("mql", "engagement 100 >= 100 and fit C >= C"),
            id="engaged-to-mql",
        ),
        pytest.param(
            "engaged", True, {"engagement": 99}, "A", ("engaged", None), id="under-threshold"
        ),
        pytest.param(
            "engaged", True, {"engagement": 300}, "D", ("engaged", None), id="mql-needs-min-grade"
        ),
        pytest.param(
            "anonymous",
            True,
            {"engagement": 10, "robotics": 60},
            "B",
            ("mql", "robotics 60 >= 60 and fit B >= C"),
            id="anonymous-to-mql-by-second-score",
        ),
        pytest.param(
            "known",
            True,
            {"engagement": 120, "robotics": 75},
            "A",
            ("mql", "engagement 120 >= 100, robotics 75 >= 60 and fit A >= C"),
            id="both-scores",
        ),
        pytest.param("mql", True, {"robotics": 60}, "C", ("mql", None), id="mql-stays"),
        pytest.param(
            "mql",
            True,
            {"engagement": 99, "robotics": 59},
            "A",
            ("mql", None),
            id="mql-within-the-recycle-margin",
        ),
        pytest.param(
            "mql",
            True,
            {"engagement": 79, "robotics": 47},
            "A",
            (
                "recycled",
                "scores fell under 80% of their thresholds: engagement 79 < 80, robotics 47 < 48",
            ),
            id="mql-to-recycled-on-decay",
        ),
        pytest.param(
            "mql",
            True,
            {"engagement": 150},
            "D",
            ("recycled", "fit fell to D, under C"),
            id="mql-to-recycled-on-fit",
        ),
        pytest.param(
            "recycled",
            True,
            {"engagement": 100},
            "C",
            ("mql", "re-qualified: engagement 100 >= 100 and fit C >= C"),
            id="recycled-to-mql",
        ),
        pytest.param(
            "recycled", True, {"engagement": 50}, "A", ("recycled", None), id="recycled-stays"
        ),
        *[
            pytest.param(stage, True, points, "A", (stage, None), id=f"{stage}-{n}")
            for stage in ("sal", "opportunity", "won", "lost")
            for n, points in enumerate(({"engagement": 500}, {"engagement": 0}))
        ],
    ],
)
def test_next_stage_and_why(
    model: LeadModel,
    stage: str,
    known: bool,
    points: dict[str, int],
    grade: str,
    expected: tuple[str, str | None],
) -> None:
    got = next_stage(stage, known=known, points=points, grade=grade, model=model)  # type: ignore[arg-type]

    assert got == expected


def test_no_recycling_when_the_model_says_so(model: LeadModel) -> None:
    mql = model.mql.model_copy(update={"recycle_on_decay": False})
    keep = model.model_copy(update={"mql": mql})

    for points, grade in (({"engagement": 10}, "C"), ({"engagement": 200}, "D")):
        got = next_stage("mql", known=True, points=points, grade=grade, model=keep)
        assert got == ("mql", None)


@pytest.mark.parametrize(
    ("uid", "traits", "known"),
    [
        (None, {}, False),
        (None, {"email": "a@b.com"}, True),
        ("crm-1", {}, True),
        (None, {"email": None, "company": "Acme"}, False),
        (None, {"email": ""}, False),
    ],
)
def test_is_known(uid: str | None, traits: dict[str, TraitValue], known: bool) -> None:
    assert is_known(uid, traits) is known
