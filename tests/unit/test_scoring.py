"""Scoring: engagement points and caps, fit points, hot triggers in event time, stage."""

from __future__ import annotations

import random
from collections.abc import Iterable

import pytest

from schemas.internal import PersonEvent, TraitValue
from streams.lead_model import LeadModel, parse_model
from streams.scoring import (
    Fire,
    add_engagement,
    breakdown,
    is_known,
    stage_for,
    update_triggers,
)

DAY_MS = 86_400_000
T0_MS = 1_795_165_200_000  # 2026-11-20T09:00:00Z

_counter = iter(range(1_000_000))


def ev(kind: str, name: str = "", *, day: float = 0, mid: str | None = None) -> PersonEvent:
    return PersonEvent(
        mid=mid or f"m-{next(_counter)}",
        pk="anon-1",
        kind=kind,  # type: ignore[arg-type]
        name=name,
        ts_ms=T0_MS + int(day * DAY_MS),
    )


def page(path: str, *, day: float = 0, mid: str | None = None) -> PersonEvent:
    return ev("page", path, day=day, mid=mid)


def track(name: str, *, day: float = 0, mid: str | None = None) -> PersonEvent:
    return ev("track", name, day=day, mid=mid)


def engage(events: Iterable[PersonEvent], model: LeadModel) -> dict[str, tuple[int, int]]:
    rules: dict[str, tuple[int, int]] = {}
    for event in events:
        rules = add_engagement(rules, event, model)
    return rules


def fires_of(events: Iterable[PersonEvent], model: LeadModel) -> list[Fire]:
    hits: dict[str, tuple[int, ...]] = {}
    fired: dict[str, int] = {}
    out: list[Fire] = []
    for event in events:
        hits, fired, fires = update_triggers(hits, fired, event, model)
        out.extend(fires)
    return out


SMALL = parse_model(
    """
version: s1
mql_threshold: 100
engagement:
  events:
    - {id: big, event: Big, points: 30, max_points: 20}
    - {id: minus, event: Minus, points: -7, max_points: 5}
  pages:
    - {id: docs, path: "/docs*", points: 2}
    - {id: docs-api, path: "/docs/api*", points: 4, max_points: 8}
fit:
  seniority:
    - {id: exec, title_contains: [VP, Chief], points: 15}
triggers:
  - {id: docs-2x, page: "/docs*", count: 2, within_days: 1, cooldown_days: 0, message: read docs}
  - {id: big-once, event: Big, cooldown_days: 10, message: did the big thing}
reps: [{id: queue, name: Queue, email: q@example.com}]
fallback_rep: queue
""",
    source="small.yaml",
)


# --- engagement points and caps -------------------------------------------------------------


@pytest.mark.parametrize(
    ("events", "rule", "points", "count"),
    [
        pytest.param([track("Email Link Clicked")] * 3, "email-click", 15, 3, id="under-cap"),
        pytest.param([track("Email Link Clicked")] * 5, "email-click", 25, 5, id="at-cap"),
        pytest.param([track("Email Link Clicked")] * 8, "email-click", 25, 8, id="over-cap"),
        pytest.param([page("/pricing")] * 7, "pricing-view", 50, 7, id="page-cap"),
        pytest.param([track("Whitepaper Downloaded")] * 4, "whitepaper", 120, 4, id="no-cap"),
        pytest.param([track("Email Unsubscribed")] * 2, "unsubscribe", -60, 2, id="negative"),
        pytest.param([page("/careers/jobs")] * 3, "careers-view", -30, 3, id="negative-page"),
    ],
)
def test_engagement_points_honour_caps_and_counts_keep_counting(
    model: LeadModel, events: list[PersonEvent], rule: str, points: int, count: int
) -> None:
    rules = engage(events, model)

    assert rules == {rule: (points, count)}
    score, lines = breakdown(rules, {}, model)
    assert score == points
    assert [(line.rule, line.points, line.count) for line in lines] == [
        (f"engagement:{rule}", points, count)
    ]


def test_a_single_event_worth_more_than_the_cap_is_capped() -> None:
    assert engage([track("Big")], SMALL) == {"big": (20, 1)}


def test_caps_do_not_limit_negative_points() -> None:
    assert engage([track("Minus")] * 3, SMALL) == {"minus": (-21, 3)}


def test_one_page_view_can_match_several_rules() -> None:
    rules = engage([page("/docs/api/v2")] * 3, SMALL)

    assert rules == {"docs": (6, 3), "docs-api": (8, 3)}
    assert breakdown(rules, {}, SMALL)[0] == 14


@pytest.mark.parametrize(
    "event",
    [
        track("Logged In"),
        page("/blog/post"),
        page("/Pricing"),  # globs are case-sensitive
        ev("identify"),
        ev("group"),
    ],
)
def test_events_without_a_rule_score_nothing(model: LeadModel, event: PersonEvent) -> None:
    before = {"whitepaper": (30, 1)}

    assert add_engagement(before, event, model) == before


def test_add_engagement_does_not_change_its_input(model: LeadModel) -> None:
    before = {"pricing-view": (10, 1)}

    after = add_engagement(before, page("/pricing"), model)

    assert before == {"pricing-view": (10, 1)}
    assert after == {"pricing-view": (20, 2)}


# --- fit points ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("employees", "line"),
    [
        (49, None),
        (50, ("fit:size-core", "company size 50-300", 20)),
        (300, ("fit:size-core", "company size 50-300", 20)),
        (301, ("fit:size-upmarket", "company size 301", 10)),
        (100_000, ("fit:size-upmarket", "company size 301", 10)),
        (True, None),
        ("120", None),
    ],
)
def test_company_size_bands_are_inclusive(
    model: LeadModel, employees: TraitValue, line: tuple[str, str, int] | None
) -> None:
    score, lines = breakdown({}, {"employees": employees}, model)

    assert [(x.rule, x.label, x.points) for x in lines] == ([line] if line else [])
    assert score == (line[2] if line else 0)


@pytest.mark.parametrize(
    ("title", "rule", "points"),
    [
        ("VP Operations", "fit:executive", 15),
        ("Chief Revenue Officer", "fit:executive", 15),
        ("Head of Sales", "fit:executive", 15),
        ("Engineering Manager", "fit:manager", 5),
        ("Team Lead", "fit:manager", 5),
        ("Director, Product Management", "fit:executive", 15),  # first matching rule wins
        ("Software Engineer", None, 0),
    ],
)
def test_seniority_from_title_is_case_insensitive(
    model: LeadModel, title: str, rule: str | None, points: int
) -> None:
    score, lines = breakdown({}, {"title": title}, model)

    assert [x.rule for x in lines] == ([rule] if rule else [])
    assert score == points
    if rule:
        assert lines[0].label == f"title {title}"


@pytest.mark.parametrize("title", ["VP Sales", "chief of staff"])
def test_title_words_written_in_capitals_in_the_model_still_match(title: str) -> None:
    # SeniorityRule promises case-insensitive matching; the model author wrote "VP", "Chief".
    score, lines = breakdown({}, {"title": title}, SMALL)

    assert [x.rule for x in lines] == ["fit:exec"]
    assert score == 15


def test_breakdown_lists_engagement_then_fit_and_sums_to_the_score(model: LeadModel) -> None:
    rules = engage(
        [page("/pricing"), track("Whitepaper Downloaded"), track("Email Unsubscribed")], model
    )

    score, lines = breakdown(rules, {"employees": 120, "title": "VP Operations"}, model)

    assert [(x.rule, x.label, x.points, x.count) for x in lines] == [
        ("engagement:pricing-view", "page /pricing*", 10, 1),
        ("engagement:unsubscribe", "Email Unsubscribed", -30, 1),
        ("engagement:whitepaper", "Whitepaper Downloaded", 30, 1),
        ("fit:size-core", "company size 50-300", 20, 1),
        ("fit:executive", "title VP Operations", 15, 1),
    ]
    assert score == 45


def test_rules_with_no_events_make_no_line(model: LeadModel) -> None:
    assert breakdown({"whitepaper": (0, 0)}, {}, model) == (0, ())


def test_breakdown_matches_an_independent_tally_over_random_events(model: LeadModel) -> None:
    rng = random.Random(20261120)
    choices = [
        track("Whitepaper Downloaded"),
        track("Demo Requested"),
        track("Email Link Clicked"),
        track("Email Unsubscribed"),
        track("Webinar Attended"),
        track("Logged In"),
        page("/pricing"),
        page("/pricing/enterprise"),
        page("/product/routing"),
        page("/customers/acme"),
        page("/careers"),
        page("/blog"),
        ev("identify"),
    ]
    per_event = {
        "Whitepaper Downloaded": ("whitepaper", 30, None),
        "Demo Requested": ("demo-request", 60, None),
        "Email Link Clicked": ("email-click", 5, 25),
        "Email Unsubscribed": ("unsubscribe", -30, None),
        "Webinar Attended": ("webinar", 25, None),
        "/pricing": ("pricing-view", 10, 50),
        "/pricing/enterprise": ("pricing-view", 10, 50),
        "/product/routing": ("product-view", 3, 15),
        "/customers/acme": ("case-study-view", 5, 20),
        "/careers": ("careers-view", -10, None),
    }
    traits = {"employees": 120, "title": "Head of Marketing"}  # +20 +15

    rules: dict[str, tuple[int, int]] = {}
    counts: dict[str, int] = {}
    for _ in range(500):
        event = rng.choice(choices)
        rules = add_engagement(rules, event, model)
        if event.name in per_event:
            rule_id = per_event[event.name][0]
            counts[rule_id] = counts.get(rule_id, 0) + 1

        expected = 35
        for rule_id, points, cap in set(per_event.values()):
            n = counts.get(rule_id, 0)
            expected += min(n * points, cap) if cap is not None else n * points
        score, lines = breakdown(rules, traits, model)
        assert score == expected
        assert sum(line.points for line in lines) == score
        assert {x.rule.split(":", 1)[1]: x.count for x in lines if x.count > 0} == {
            **counts,
            "size-core": 1,
            "executive": 1,
        }


# --- hot triggers ----------------------------------------------------------------------------


def test_third_pricing_view_within_seven_days_fires(model: LeadModel) -> None:
    events = [
        page("/pricing", day=0),
        page("/pricing/a", day=3),
        page("/pricing", day=6.9, mid="3rd"),
    ]

    assert fires_of(events, model) == [Fire("pricing-3x-7d", "3rd", T0_MS + int(6.9 * DAY_MS))]


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
    # Views on days 10 and 12 arrive first; the day-9 view arrives late and completes 3-in-7.
    events = [
        page("/pricing", day=10),
        page("/pricing", day=12),
        page("/pricing", day=9, mid="late"),
    ]

    assert fires_of(events, model) == [Fire("pricing-3x-7d", "late", T0_MS + 9 * DAY_MS)]


def test_late_event_completing_an_older_window_fires(model: LeadModel) -> None:
    # Days 0 and 1, then a view on day 20, then a late view dated day 2: days 0, 1, 2 are
    # three pricing views within 7 days of event time.
    events = [
        page("/pricing", day=0),
        page("/pricing", day=1),
        page("/pricing", day=20),
        page("/pricing", day=2, mid="late"),
    ]

    assert fires_of(events, model) == [Fire("pricing-3x-7d", "late", T0_MS + 2 * DAY_MS)]


def test_late_event_out_of_window_does_not_fire(model: LeadModel) -> None:
    events = [page("/pricing", day=10), page("/pricing", day=12), page("/pricing", day=1)]

    assert fires_of(events, model) == []


def test_single_event_trigger_fires_on_that_event(model: LeadModel) -> None:
    fires = fires_of([page("/pricing"), track("Demo Requested", day=1, mid="demo")], model)

    assert fires == [Fire("demo-request", "demo", T0_MS + DAY_MS)]


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

    fires = fires_of(events, model)

    assert [f.ts_ms for f in fires] == [T0_MS + int(d * DAY_MS) for d in fired_on]


def test_late_event_inside_cooldown_before_the_fire_does_not_fire_again() -> None:
    events = [track("Big", day=20), track("Big", day=15)]

    assert [f.ts_ms for f in fires_of(events, SMALL)] == [T0_MS + 20 * DAY_MS]


def test_zero_cooldown_fires_every_time_the_window_is_full() -> None:
    events = [page("/docs", day=0), page("/docs", day=0.5), page("/docs", day=0.9)]

    assert len(fires_of(events, SMALL)) == 2


def test_update_triggers_records_hits_and_fire_time(model: LeadModel) -> None:
    event = track("Whitepaper Downloaded", day=2)

    hits, fired, fires = update_triggers({}, {}, event, model)

    assert hits == {"whitepaper-download": (event.ts_ms,)}
    assert fired == {"whitepaper-download": event.ts_ms}
    assert fires == [Fire("whitepaper-download", event.mid, event.ts_ms)]


def test_update_triggers_ignores_events_no_trigger_watches(model: LeadModel) -> None:
    hits = {"pricing-3x-7d": (T0_MS,)}

    assert update_triggers(hits, {}, track("Webinar Attended"), model) == (hits, {}, [])


# --- stage ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("known", "score", "engaged", "mql", "stage"),
    [
        (False, 500, True, True, "anonymous"),
        (False, 0, False, False, "anonymous"),
        (True, 0, False, False, "known"),
        (True, 40, False, False, "known"),
        (True, 0, True, False, "known"),
        (True, -30, True, False, "known"),
        (True, 40, True, False, "engaged"),
        (True, 40, True, True, "mql"),
        (True, 10, False, True, "mql"),
    ],
)
def test_stage_for(known: bool, score: int, engaged: bool, mql: bool, stage: str) -> None:
    assert stage_for(known=known, score=score, engaged=engaged, mql=mql) == stage


@pytest.mark.parametrize(
    ("uid", "traits", "known"),
    [
        (None, {}, False),
        (None, {"email": "a@b.com"}, True),
        ("crm-1", {}, True),
        (None, {"email": None, "company": "Acme"}, False),
    ],
)
def test_is_known(uid: str | None, traits: dict[str, TraitValue], known: bool) -> None:
    assert is_known(uid, traits) is known
