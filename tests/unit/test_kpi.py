"""Shared KPIs and closed-loop ROI, with hand-computed figures."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from typing import Any

import pytest

from schemas.decisions import HandOff, LeadMerged, LeadScored, SlaEvent
from schemas.feedback import SalesFeedback
from streams.kpi import Touch, kpi_report, percentile, read_costs, render_kpi
from streams.kpi_cli import touch_of
from streams.kpi_html import render_kpi_html
from streams.leads import lead_id_for

SINCE = datetime(2026, 11, 1, tzinfo=UTC)
UNTIL = datetime(2026, 12, 1, tzinfo=UTC)


def day(d: int, hour: int = 10) -> datetime:
    return datetime(2026, 11, d, hour, tzinfo=UTC) if d > 0 else SINCE + timedelta(days=d - 1)


def scored(lead: str, prev: str, stage: str, at: datetime) -> LeadScored:
    return LeadScored(
        lead_id=lead,
        score=100,
        previous_score=90,
        breakdown=(),
        scores=(),
        fit=0,
        grade="D",
        fit_breakdown=(),
        stage=stage,  # type: ignore[arg-type]
        previous_stage=prev,  # type: ignore[arg-type]
        reason="r",
        model_version="v",
        message_id=f"m-{lead}-{stage}",
        occurred_at=at,
        created_at=at,
    )


def path(lead: str, *stages: tuple[str, datetime]) -> list[LeadScored]:
    out, prev = [], "engaged"
    for stage, at in stages:
        out.append(scored(lead, prev, stage, at))
        prev = stage
    return out


def handoff(lead: str, rep: str, team: str | None, at: datetime) -> HandOff:
    return HandOff(
        handoff_id=f"h-{lead}",
        lead_id=lead,
        reason="mql",
        trigger=None,
        email=None,
        name=None,
        company=None,
        account_domain=None,
        account_id=None,
        account_match=None,
        account_match_confidence=None,
        rep_id=rep,
        rep_name=rep.title(),
        rep_email=f"{rep}@x.example",
        routing_rule="territory_round_robin",
        routing_team=team,
        routing_trail=(),
        score=100,
        breakdown=(),
        qualified_by=("engagement",),
        fit=0,
        grade="D",
        stage="mql",
        purchase_timeline="unknown",
        purchase_timeline_text=None,
        budget="unknown",
        budget_text=None,
        authority="unknown",
        authority_text=None,
        need="unknown",
        need_text=None,
        recent_activity=(),
        model_version="v",
        created_at=at,
    )


def clock(lead: str, rep: str, started: datetime, *steps: tuple[str, float]) -> list[SlaEvent]:
    """SLA steps of one hand-off's clock; each (step, seconds after the start)."""
    return [
        SlaEvent(
            lead_id=lead,
            handoff_id=f"h-{lead}",
            priority="mql",
            step=step,  # type: ignore[arg-type]
            rep_id=rep,
            to_rep_id=None,
            started_at=started,
            due_at=None,
            time_to_accept_s=after if step == "accepted" else None,
            reason="r",
            model_version="v",
            created_at=started + timedelta(seconds=after),
        )
        for step, after in (("started", 0.0), *steps)
    ]


def fb(lead: str, status: str, at: datetime, **fields: Any) -> SalesFeedback:
    return SalesFeedback(
        feedback_id=f"f-{lead}-{status}", lead_id=lead, status=status, occurred_at=at, **fields
    )


def touch(lead: str, at: datetime, source: str | None, campaign: str | None = None) -> Touch:
    return Touch(lead, at, source, campaign)


COSTS = (
    "source,campaign,period,amount\n"
    "google,spring,2026-11,3000\n"
    "linkedin,,2026-11-01..2026-11-15,1000\n"
    "google,x,2026-13,5\n"
    "linkedin,x,2026-11,abc\n"
)


def story(*, d_currency: str = "EUR", **kw: Any) -> Any:
    """A: 3 UTM touches across 2 sources, MQL -> sal -> opportunity -> won 9,000 USD.
    B: MQL -> sal -> opportunity -> lost. C: MQL, rejected no_budget. D: MQL before the
    range, won 5,000 in the range, no touch, never handed off."""
    touches = [
        touch("A", day(2), "google", "spring"),
        touch("A", day(5), "linkedin", "abm"),
        touch("A", day(8), "google", "retarget"),
        touch("A", day(12), "linkedin", "abm"),  # after the win: not attributed
    ]
    scored = [
        *path("A", ("mql", day(6)), ("sal", day(7)), ("opportunity", day(9)), ("won", day(10))),
        *path("B", ("mql", day(3)), ("sal", day(4)), ("opportunity", day(5)), ("lost", day(20))),
        *path("C", ("mql", day(4)), ("recycled", day(5))),
        *path("D", ("mql", SINCE - timedelta(days=12)), ("won", day(15))),
    ]
    routed = [
        handoff("A", "carla", "east", day(6)),
        handoff("B", "ben", "west", day(3)),
        handoff("C", "carla", "east", day(4)),
    ]
    sla = [
        *clock("A", "carla", day(6), ("accepted", 120.0)),
        *clock("B", "ben", day(3), ("reminded", 300.0), ("escalated", 600.0), ("accepted", 900.0)),
        *clock("C", "carla", day(4), ("reminded", 300.0), ("stopped", 400.0)),
        *clock("X", "ben", day(20), ("reassigned", 60.0)),
    ]
    feedback = [
        fb("A", "accepted", day(7), rep_id="carla"),
        fb("A", "won", day(9), amount=7000, currency="USD"),  # superseded by the later won
        fb("A", "won", day(10), amount=9000, currency="USD"),
        fb("B", "accepted", day(4), rep_id="ben"),
        fb("C", "rejected", day(5), rep_id="carla", reason="no_budget"),
        fb("D", "won", day(15), amount=5000, currency=d_currency),
    ]
    costs, errors = read_costs(COSTS)
    args: dict[str, Any] = dict(
        since=SINCE,
        until=UNTIL,
        touches=touches,
        scored=scored,
        routed=routed,
        sla=sla,
        feedback=feedback,
        merges=[],
        costs=costs,
        cost_errors=errors,
    )
    return kpi_report(**(args | kw))


def test_funnel_counts_and_rates() -> None:
    t = story().total
    assert (t.mql, t.accepted, t.opportunity, t.won) == (3, 2, 2, 1)
    assert t.accept_rate == pytest.approx(2 / 3)
    assert t.opportunity_rate == 1.0
    assert t.win_rate == 0.5
    assert t.stages == {"won": 2, "lost": 1, "recycled": 1}


def test_revenue_is_the_latest_won_amount_per_lead_per_currency() -> None:
    assert story().total.revenue == {"EUR": 5000.0, "USD": 9000.0}
    assert story(d_currency="USD").total.revenue == {"USD": 14000.0}


def test_speed_to_lead_sla_breaches_and_rejections() -> None:
    t = story().total
    assert t.speed_s == (120.0, 900.0)
    assert percentile(t.speed_s, 50) == 120.0
    assert percentile(t.speed_s, 90) == 900.0
    # B escalated before its acceptance, X was reassigned; A accepted, C stopped in time.
    assert (t.sla_breached, t.sla_clocks) == (2, 4)
    assert t.breach_rate == 0.5
    assert t.rejections == {"no_budget": 1}


def test_percentiles_are_nearest_rank() -> None:
    values = [float(v) for v in range(1, 11)]
    assert percentile(values, 50) == 5.0
    assert percentile(values, 90) == 9.0
    assert percentile(values, 100) == 10.0
    assert percentile([], 50) is None


def test_attribution_first_last_and_linear() -> None:
    a = story().attributed
    # A: google, linkedin, google before its 9,000 USD win; D: no touch, 5,000 EUR.
    assert a["first"]["source"] == {"google": {"USD": 9000.0}, "(none)": {"EUR": 5000.0}}
    assert a["last"]["source"] == {"google": {"USD": 9000.0}, "(none)": {"EUR": 5000.0}}
    assert a["linear"]["source"]["google"] == {"USD": pytest.approx(6000.0)}
    assert a["linear"]["source"]["linkedin"] == {"USD": pytest.approx(3000.0)}
    assert a["first"]["campaign"]["spring"] == {"USD": 9000.0}
    assert a["last"]["campaign"]["retarget"] == {"USD": 9000.0}
    assert {c: v["USD"] for c, v in a["linear"]["campaign"].items() if "USD" in v} == {
        "spring": pytest.approx(3000.0),
        "abm": pytest.approx(3000.0),
        "retarget": pytest.approx(3000.0),
    }


def test_roi_per_source_from_the_costs_file() -> None:
    report = story(d_currency="USD", attribution="linear")
    assert report.costs == {"google": 3000.0, "linkedin": 1000.0}
    assert report.roi["google"] == pytest.approx(1.0)  # (6,000 - 3,000) / 3,000
    assert report.roi["linkedin"] == pytest.approx(2.0)  # (3,000 - 1,000) / 1,000
    assert report.roi["(none)"] is None  # no cost: n/a
    first = story(d_currency="USD", attribution="first")
    assert first.roi["google"] == pytest.approx(2.0)  # (9,000 - 3,000) / 3,000
    assert first.roi["linkedin"] == pytest.approx(-1.0)


def test_roi_is_na_when_revenue_has_several_currencies() -> None:
    report = story()
    assert report.roi == {"google": None, "linkedin": None}
    assert report.roi_note is not None and "2 currencies (EUR, USD)" in report.roi_note


def test_costs_are_prorated_to_the_range() -> None:
    report = story(d_currency="USD", until=datetime(2026, 11, 16, tzinfo=UTC))
    assert report.costs == {"google": pytest.approx(1500.0), "linkedin": pytest.approx(1000.0)}


def test_bad_cost_rows_are_reported_with_line_numbers() -> None:
    costs, errors = read_costs(COSTS)
    assert [(c.source, c.amount, c.line) for c in costs] == [
        ("google", 3000.0, 2),
        ("linkedin", 1000.0, 3),
    ]
    assert [(e.line, e.message) for e in errors] == [
        (4, "period '2026-13' is not a real date"),
        (5, "amount 'abc' is not a number"),
    ]
    assert read_costs("source,amount\n")[1][0].message.endswith("missing campaign, period")


def test_grouped_by_rep() -> None:
    groups = story(by="rep").groups
    assert list(groups) == ["ben", "carla", "(none)"]
    carla, ben, none = groups["carla"], groups["ben"], groups["(none)"]
    assert (carla.mql, carla.accepted, carla.won) == (2, 1, 1)
    assert carla.revenue == {"USD": 9000.0}
    assert carla.rejections == {"no_budget": 1}
    assert carla.speed_s == (120.0,)
    assert (carla.sla_breached, carla.sla_clocks) == (0, 2)
    assert (ben.mql, ben.accepted, ben.opportunity, ben.won) == (1, 1, 1, 0)
    assert (ben.sla_breached, ben.sla_clocks) == (2, 2)
    assert ben.win_rate == 0.0
    assert none.revenue == {"EUR": 5000.0}


def test_grouped_by_source_uses_the_first_touch() -> None:
    groups = story(by="source").groups
    assert list(groups) == ["google", "(none)"]
    assert groups["google"].mql == 1 and groups["google"].revenue == {"USD": 9000.0}
    assert groups["(none)"].mql == 2


def test_grouped_by_team() -> None:
    groups = story(by="team").groups
    assert groups["east"].mql == 2 and groups["west"].mql == 1


def test_weekly_trend() -> None:
    weeks = {w.week: w for w in story().weeks}
    assert list(weeks) == ["2026-W44", "2026-W45", "2026-W46", "2026-W47", "2026-W48", "2026-W49"]
    assert (weeks["2026-W45"].mql, weeks["2026-W45"].accepted) == (3, 2)
    assert weeks["2026-W46"].revenue == {"EUR": 5000.0, "USD": 9000.0}
    assert weeks["2026-W47"].mql == 0


def test_zero_denominators_are_na() -> None:
    report = kpi_report(
        since=SINCE, until=UNTIL, touches=[], scored=[], routed=[], sla=[], feedback=[], merges=[]
    )
    t = report.total
    assert (t.accept_rate, t.opportunity_rate, t.win_rate, t.breach_rate) == (None,) * 4
    text = render_kpi(report)
    assert "  accepted           0   n/a of MQLs" in text
    assert "speed to lead  p50 n/a, p90 n/a, max n/a (0 accepted)" in text
    assert "SLA breached   0 of 0 hand-offs (n/a)" in text
    assert "  none won in the range" in text


def test_merged_ids_are_folded_into_the_survivor() -> None:
    report = kpi_report(
        since=SINCE,
        until=UNTIL,
        # The merged-away lead had the UTM touch and became the MQL; the survivor won.
        touches=[touch("M2", day(2), "newsletter", "nov")],
        scored=[
            *path("M2", ("mql", day(3))),
            scored("M1", "engaged", "mql", day(6)),
            scored("M1", "mql", "won", day(8)),
        ],
        routed=[],
        sla=[],
        feedback=[fb("M2", "won", day(8), amount=1000, currency="USD")],
        merges=[
            LeadMerged(
                lead_id="M1",
                merged_lead_ids=("M2",),
                why="email",
                score=100,
                stage="mql",
                model_version="v",
                created_at=day(5),
            )
        ],
        by="source",
    )
    t = report.total
    assert t.stages == {"won": 1}  # one lead, as it stands now
    assert (t.mql, t.won) == (1, 1)
    assert report.weeks[1].mql == 1 and report.weeks[1].week == "2026-W45"  # entered on day 3
    assert report.attributed["first"]["source"] == {"newsletter": {"USD": 1000.0}}
    assert list(report.groups) == ["newsletter"]


def test_the_terminal_table() -> None:
    text = render_kpi(story(by="rep", d_currency="USD"))
    for line in (
        "Shared KPIs 2026-11-01 00:00 to 2026-12-01 00:00 UTC",
        "  MQL                3",
        "  accepted           2   67% of MQLs",
        "  opportunity        2  100% of accepted",
        "  won                1   50% of opportunities",
        "revenue won    14,000 USD",
        "speed to lead  p50 2.0 min, p90 15.0 min, max 15.0 min (2 accepted)",
        "SLA breached   2 of 4 hand-offs (50%)",
        "rejections     no_budget 1",
        "leads by stage won 2, lost 1, recycled 1",
        "  google                 9,000 USD / 9,000 USD / 6,000 USD",
        "  google                 revenue      6,000 USD  cost        3,000  ROI +100%",
        "  costs line 4: period '2026-13' is not a real date",
        "2026-W45      3         2  0",
        "2026-W46      0         1  14,000 USD",  # D won: reached accepted or beyond,
    ):
        assert line in text, (line, text)
    assert "carla                   2     50%   100%   100%        9,000 USD     2.0 min" in text


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.text: list[str] = []
        self.refs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.refs += [v or "" for k, v in attrs if k in ("src", "href")]

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def test_the_html_page_is_self_contained_with_figures_and_charts() -> None:
    html = render_kpi_html(story(by="source", d_currency="USD"))
    page = _Page()
    page.feed(html)
    page.close()
    text = " ".join(page.text)
    assert page.tags.count("svg") >= 3  # funnel, weekly trend, revenue by source
    assert "script" not in page.tags and page.refs == []  # nothing fetched, no JavaScript
    assert "2026-11-01 00:00 to 2026-12-01 00:00 UTC" in text
    for figure in ("67%", "14,000 USD", "2.0 min", "50%", "no_budget", "+100%", "2026-W45"):
        assert figure in text, figure
    assert "first touch" in text and "last touch" in text and "linear" in text
    assert 'aria-label="Funnel"' in html and 'aria-label="Weekly trend"' in html


def test_a_touch_is_read_from_context_campaign() -> None:
    value = (
        b'{"type":"page","messageId":"m1","anonymousId":"anon-1","timestamp":"2026-11-02T10:00:00Z",'
        b'"properties":{"path":"/"},"context":{"campaign":{"source":"google","medium":"cpc",'
        b'"name":"spring"}}}'
    )
    assert touch_of(value) == Touch(lead_id_for("anon-1"), day(2), "google", "spring")
    assert touch_of(value.replace(b'"campaign"', b'"other"')) is None
    assert touch_of(b"{not json campaign") is None


def test_a_hot_hand_off_enters_the_funnel_without_an_mql() -> None:
    report = kpi_report(
        since=SINCE,
        until=UNTIL,
        touches=[],
        scored=[scored("H", "engaged", "recycled", day(3))],
        routed=[handoff("H", "carla", None, day(2))],
        sla=[],
        feedback=[fb("H", "rejected", day(3), reason="other", reason_text="student")],
        merges=[],
    )
    t = report.total
    assert (t.mql, t.accepted, t.accept_rate) == (1, 0, 0.0)
    assert t.rejections == {"other": 1}
