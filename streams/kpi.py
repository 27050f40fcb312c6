"""Shared KPIs and closed-loop ROI: the funnel, speed to lead, SLA breaches, rejections,
won revenue and its attribution to sources and campaigns, from what the topics hold.

Pure: `kpi_report` takes records already read and decoded; `read_costs` parses the text of
a costs file. Nothing here reads a broker or a clock.
"""

from __future__ import annotations

import csv
import io
import math
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Literal

from schemas.decisions import HandOff, LeadMerged, LeadScored, SlaEvent
from schemas.feedback import SalesFeedback

__all__ = [
    "ATTRIBUTIONS",
    "DIMENSIONS",
    "NONE",
    "NO_CURRENCY",
    "Attribution",
    "Cost",
    "CostError",
    "Dimension",
    "Figures",
    "KpiReport",
    "Touch",
    "Week",
    "fmt_money",
    "fmt_rate",
    "fmt_s",
    "kpi_report",
    "percentile",
    "rate",
    "read_costs",
    "render_kpi",
]

Dimension = Literal["source", "campaign", "rep", "team"]
DIMENSIONS: tuple[Dimension, ...] = ("source", "campaign", "rep", "team")
Attribution = Literal["first", "last", "linear"]
ATTRIBUTIONS: tuple[Attribution, ...] = ("first", "last", "linear")

#: The group of a lead with no UTM touch, no hand-off or no team.
NONE = "(none)"
#: ISO 4217's code for "no currency": a won amount reported without one.
NO_CURRENCY = "XXX"

_FUNNEL_ENTRY = ("mql", "sal", "opportunity", "won")  # a hot hand-off may skip mql
_ACCEPTED = ("sal", "opportunity", "won")
_OPPORTUNITY = ("opportunity", "won")


@dataclass(frozen=True, slots=True)
class Touch:
    """A raw event that carried UTM fields (`context.campaign`), mapped to its lead id."""

    lead_id: str
    at: datetime
    source: str | None
    campaign: str | None


@dataclass(frozen=True, slots=True)
class Cost:
    source: str
    campaign: str | None
    start: date  # first day of the period
    end: date  # first day after it
    amount: float
    line: int


@dataclass(frozen=True, slots=True)
class CostError:
    line: int
    message: str


@dataclass(frozen=True, slots=True)
class Figures:
    """The KPIs of one group of leads (or of all of them)."""

    stages: dict[str, int]  # leads by current stage
    mql: int  # leads that entered the funnel in the range (MQL, or handed straight to sales)
    accepted: int  # of those, accepted by sales (sal or beyond) by the end of the range
    opportunity: int
    won: int
    revenue: dict[str, float]  # currency -> won in the range (latest won amount per lead)
    speed_s: tuple[float, ...]  # time to accept of each acceptance in the range, sorted
    sla_clocks: int  # hand-off clocks started in the range
    sla_breached: int  # of those, escalated or reassigned before any acceptance
    rejections: dict[str, int]  # reason -> rejections in the range

    @property
    def accept_rate(self) -> float | None:
        return rate(self.accepted, self.mql)

    @property
    def opportunity_rate(self) -> float | None:
        return rate(self.opportunity, self.accepted)

    @property
    def win_rate(self) -> float | None:
        return rate(self.won, self.opportunity)

    @property
    def breach_rate(self) -> float | None:
        return rate(self.sla_breached, self.sla_clocks)


@dataclass(frozen=True, slots=True)
class Week:
    week: str  # ISO week, "2026-W48"
    mql: int
    accepted: int
    revenue: dict[str, float]


@dataclass(frozen=True, slots=True)
class KpiReport:
    since: datetime
    until: datetime
    by: Dimension | None
    attribution: Attribution  # the model ROI uses
    total: Figures
    groups: dict[str, Figures]  # by `by`; empty without it
    weeks: tuple[Week, ...]
    # model -> "source" | "campaign" -> name -> currency -> amount
    attributed: dict[str, dict[str, dict[str, dict[str, float]]]]
    costs: dict[str, float]  # source -> cost falling in the range (prorated by days)
    roi: dict[str, float | None]  # source -> (revenue - cost) / cost; None: n/a
    roi_note: str | None = None
    cost_errors: tuple[CostError, ...] = field(default=())


def rate(part: int, whole: int) -> float | None:
    """part / whole, or None (shown as n/a) when there is nothing to divide by."""
    return part / whole if whole else None


def percentile(values: Sequence[float], p: float) -> float | None:
    """Nearest-rank percentile of sorted `values` (p in 0..100): always a value that was seen."""
    if not values:
        return None
    rank = max(1, math.ceil(p / 100 * len(values)))
    return values[rank - 1]


# --- costs.csv ------------------------------------------------------------------------------

_MONTH = re.compile(r"^(\d{4})-(\d{2})$")
_SPAN = re.compile(r"^(\d{4}-\d{2}-\d{2})\.\.(\d{4}-\d{2}-\d{2})$")


def read_costs(text: str) -> tuple[list[Cost], list[CostError]]:
    """Rows of `source,campaign,period,amount` (a header line first); a period is a month
    (`2026-11`) or days, both ends included (`2026-11-01..2026-11-15`). Bad rows come back
    as errors with their line numbers; the good ones are used."""
    costs: list[Cost] = []
    errors: list[CostError] = []
    reader = csv.reader(io.StringIO(text.lstrip("\ufeff")))
    header = next(reader, None)
    need = ("source", "campaign", "period", "amount")
    names = [h.strip().lower() for h in header or []]
    missing = [n for n in need if n not in names]
    if missing:
        return [], [
            CostError(1, f"the header needs {', '.join(need)}; missing {', '.join(missing)}")
        ]
    at = {n: names.index(n) for n in need}
    for row in reader:
        line = reader.line_num
        if not any(cell.strip() for cell in row):
            continue
        if len(row) < len(names):
            errors.append(CostError(line, f"{len(row)} fields; the header has {len(names)}"))
            continue
        source = row[at["source"]].strip()
        if not source:
            errors.append(CostError(line, "source is empty"))
            continue
        period = _period(row[at["period"]].strip())
        if isinstance(period, str):
            errors.append(CostError(line, period))
            continue
        text_amount = row[at["amount"]].strip().replace(",", "")
        try:
            amount = float(text_amount)
        except ValueError:
            errors.append(CostError(line, f"amount {row[at['amount']]!r} is not a number"))
            continue
        if not math.isfinite(amount) or amount < 0:
            errors.append(CostError(line, f"amount {row[at['amount']]!r} is not a cost"))
            continue
        campaign = row[at["campaign"]].strip() or None
        costs.append(Cost(source, campaign, period[0], period[1], amount, line))
    return costs, errors


def _period(text: str) -> tuple[date, date] | str:
    try:
        if m := _MONTH.match(text):
            year, month = int(m[1]), int(m[2])
            start = date(year, month, 1)
            return start, date(year + month // 12, month % 12 + 1, 1)
        if m := _SPAN.match(text):
            start, last = date.fromisoformat(m[1]), date.fromisoformat(m[2])
            if last < start:
                return f"period {text!r} ends before it starts"
            return start, last + timedelta(days=1)
    except ValueError:
        return f"period {text!r} is not a real date"
    return f"period {text!r} is neither YYYY-MM nor YYYY-MM-DD..YYYY-MM-DD"


def _cost_in_range(cost: Cost, since: datetime, until: datetime) -> float:
    start = datetime.combine(cost.start, datetime.min.time(), UTC)
    end = datetime.combine(cost.end, datetime.min.time(), UTC)
    overlap = (min(end, until) - max(start, since)).total_seconds()
    return cost.amount * overlap / (end - start).total_seconds() if overlap > 0 else 0.0


# --- the report -----------------------------------------------------------------------------


@dataclass(slots=True)
class _Lead:
    reached: dict[str, datetime] = field(default_factory=dict)  # stage -> first entered
    stage: tuple[datetime, datetime, str] | None = None  # (occurred, created, stage) latest
    touches: list[Touch] = field(default_factory=list)
    handoff: HandOff | None = None  # the latest
    handed_at: datetime | None = None  # the first hand-off: a hot lead may skip mql
    won: SalesFeedback | None = None  # the latest won


def kpi_report(
    *,
    since: datetime,
    until: datetime,
    touches: Iterable[Touch],
    scored: Iterable[LeadScored],
    routed: Iterable[HandOff],
    sla: Iterable[SlaEvent],
    feedback: Iterable[SalesFeedback],
    merges: Iterable[LeadMerged],
    costs: Iterable[Cost] = (),
    cost_errors: Iterable[CostError] = (),
    by: Dimension | None = None,
    attribution: Attribution = "linear",
) -> KpiReport:
    """The KPIs over [since, until): records after `until` are not seen; records before
    `since` still say where a lead came from and where it stands.

    The funnel follows the leads that entered it in the range (became an MQL, or were
    handed straight to sales by a hot trigger) to where they are at `until`; revenue,
    acceptances, SLA clocks and rejections count by when they happened.
    """
    resolve = _resolver(merges)
    leads: dict[str, _Lead] = defaultdict(_Lead)

    for t in touches:
        if t.at < until:
            leads[resolve(t.lead_id)].touches.append(t)
    for s in scored:
        if s.occurred_at >= until:
            continue
        lead = leads[resolve(s.lead_id)]
        if s.stage != s.previous_stage:
            first = lead.reached.get(s.stage)
            if first is None or s.occurred_at < first:
                lead.reached[s.stage] = s.occurred_at
        key = (s.occurred_at, s.created_at, s.stage)
        if resolve(s.lead_id) == s.lead_id and (lead.stage is None or key[:2] >= lead.stage[:2]):
            lead.stage = key
    handoffs: dict[str, HandOff] = {}
    for h in routed:
        if h.created_at >= until:
            continue
        handoffs[h.handoff_id] = h
        lead = leads[resolve(h.lead_id)]
        if lead.handoff is None or h.created_at >= lead.handoff.created_at:
            lead.handoff = h
        if lead.handed_at is None or h.created_at < lead.handed_at:
            lead.handed_at = h.created_at
    rejections: list[SalesFeedback] = []
    for f in feedback:
        if f.occurred_at >= until:
            continue
        lead = leads[resolve(f.lead_id)]
        if f.status == "won" and (lead.won is None or f.occurred_at >= lead.won.occurred_at):
            lead.won = f
        if f.status == "rejected" and f.occurred_at >= since:
            rejections.append(f)
    for lead in leads.values():
        lead.touches.sort(key=lambda t: t.at)
    leads = dict(leads)

    def lead_group(lead_id: str) -> str:
        lead = leads.get(lead_id) or _Lead()
        if by in ("source", "campaign"):
            first = next((t for t in lead.touches if _name(t, by)), None)
            return _name(first, by) or NONE
        if by == "team":
            return (lead.handoff.routing_team if lead.handoff else None) or NONE
        return lead.handoff.rep_id if lead.handoff else NONE

    # Each fact, with the group it falls in.
    clocks: dict[str, list[SlaEvent]] = defaultdict(list)
    for step in sla:
        if step.created_at < until:
            clocks[step.handoff_id].append(step)

    def clock_group(steps: list[SlaEvent]) -> str:
        if by == "rep":
            return steps[0].rep_id
        if by == "team":
            h = handoffs.get(steps[0].handoff_id)
            if h is not None:
                return h.routing_team or NONE
        return lead_group(resolve(steps[0].lead_id))

    def figures(keep: Callable[[str], bool]) -> Figures:
        return _figures(
            since=since,
            leads={k: v for k, v in leads.items() if keep(lead_group(k))},
            resolve=resolve,
            clocks=[c for c in clocks.values() if keep(clock_group(c))],
            rejections=[
                r
                for r in rejections
                if keep(r.rep_id if by == "rep" and r.rep_id else lead_group(resolve(r.lead_id)))
            ],
        )

    total = figures(lambda _: True)
    groups: dict[str, Figures] = {}
    if by is not None:
        names = {lead_group(k) for k in leads}
        names |= {clock_group(c) for c in clocks.values()}
        names |= {r.rep_id for r in rejections if by == "rep" and r.rep_id}
        for name in sorted(names, key=lambda n: (n == NONE, n.lower())):
            fig = figures(lambda g, name=name: g == name)  # type: ignore[misc]
            if _anything(fig):
                groups[name] = fig

    attributed = _attribute(leads, since=since)
    cost_list = list(costs)
    spent: dict[str, float] = defaultdict(float)
    for cost in cost_list:
        spent[cost.source] += _cost_in_range(cost, since, until)
    roi, note = _roi(attributed[attribution]["source"], spent)
    return KpiReport(
        since=since,
        until=until,
        by=by,
        attribution=attribution,
        total=total,
        groups=groups,
        weeks=_weeks(leads, since=since, until=until),
        attributed=attributed,
        costs=dict(sorted(spent.items())),
        roi=roi,
        roi_note=note,
        cost_errors=tuple(cost_errors),
    )


def _resolver(merges: Iterable[LeadMerged]) -> Callable[[str], str]:
    into = {m: merge.lead_id for merge in merges for m in merge.merged_lead_ids}

    def resolve(lead_id: str) -> str:
        for _ in range(64):  # chains of merges; bounded in case bad data has a cycle
            if lead_id not in into:
                break
            lead_id = into[lead_id]
        return lead_id

    return resolve


def _name(touch: Touch | None, by: str | None) -> str | None:
    if touch is None:
        return None
    return touch.source if by == "source" else touch.campaign


def _entered(lead: _Lead) -> datetime | None:
    """When the lead entered the funnel: became an MQL, or was handed to sales (a hot
    trigger hands off before the MQL threshold), or reached a sales stage."""
    times = [lead.reached[s] for s in _FUNNEL_ENTRY if s in lead.reached]
    if lead.handed_at is not None:
        times.append(lead.handed_at)
    return min(times, default=None)


def _anything(fig: Figures) -> bool:
    return bool(
        fig.stages or fig.mql or fig.revenue or fig.speed_s or fig.sla_clocks or fig.rejections
    )


def _figures(
    *,
    since: datetime,
    leads: dict[str, _Lead],
    resolve: Callable[[str], str],
    clocks: list[list[SlaEvent]],
    rejections: list[SalesFeedback],
) -> Figures:
    stages = Counter(lead.stage[2] for lead in leads.values() if lead.stage is not None)
    cohort = [lead for lead in leads.values() if (at := _entered(lead)) is not None and at >= since]
    revenue: dict[str, float] = defaultdict(float)
    for lead in leads.values():
        if lead.won is not None and lead.won.occurred_at >= since:
            revenue[lead.won.currency or NO_CURRENCY] += lead.won.amount or 0.0
    speed: list[float] = []
    breached = started = 0
    for steps in clocks:
        in_range = steps[0].started_at >= since
        ordered = sorted(steps, key=lambda s: s.created_at)
        for s in ordered:
            if s.step == "accepted" and s.time_to_accept_s is not None and s.created_at >= since:
                speed.append(s.time_to_accept_s)
        if in_range:
            started += 1
            for s in ordered:
                if s.step == "accepted":
                    break
                if s.step in ("escalated", "reassigned"):
                    breached += 1
                    break
    return Figures(
        stages=dict(sorted(stages.items(), key=lambda kv: _STAGE_ORDER.get(kv[0], 99))),
        mql=len(cohort),
        accepted=sum(1 for lead in cohort if any(s in lead.reached for s in _ACCEPTED)),
        opportunity=sum(1 for lead in cohort if any(s in lead.reached for s in _OPPORTUNITY)),
        won=sum(1 for lead in cohort if "won" in lead.reached),
        revenue=dict(sorted(revenue.items())),
        speed_s=tuple(sorted(speed)),
        sla_clocks=started,
        sla_breached=breached,
        rejections=dict(Counter(r.reason or "other" for r in rejections).most_common()),
    )


_STAGE_ORDER = {
    s: i
    for i, s in enumerate(
        ("anonymous", "known", "engaged", "mql", "sal", "opportunity", "won", "lost", "recycled")
    )
}


def _attribute(
    leads: dict[str, _Lead], *, since: datetime
) -> dict[str, dict[str, dict[str, dict[str, float]]]]:
    """Won revenue in the range shared among the touches before the win, per model."""
    out: dict[str, dict[str, dict[str, dict[str, float]]]] = {
        m: {"source": {}, "campaign": {}} for m in ATTRIBUTIONS
    }
    for lead in leads.values():
        won = lead.won
        if won is None or won.occurred_at < since or not won.amount:
            continue
        currency = won.currency or NO_CURRENCY
        touches = [t for t in lead.touches if t.at <= won.occurred_at]
        shares: dict[str, list[tuple[Touch | None, float]]] = {
            "first": [(touches[0], 1.0)] if touches else [(None, 1.0)],
            "last": [(touches[-1], 1.0)] if touches else [(None, 1.0)],
            "linear": [(t, 1 / len(touches)) for t in touches] if touches else [(None, 1.0)],
        }
        for model, parts in shares.items():
            for dim in ("source", "campaign"):
                table = out[model][dim]
                for touch, share in parts:
                    name = _name(touch, dim) or NONE
                    per = table.setdefault(name, {})
                    per[currency] = per.get(currency, 0.0) + won.amount * share
    for tables in out.values():
        for dim, table in tables.items():
            tables[dim] = dict(sorted(table.items(), key=lambda kv: -sum(kv[1].values())))
    return out


def _roi(
    revenue: dict[str, dict[str, float]], spent: dict[str, float]
) -> tuple[dict[str, float | None], str | None]:
    currencies = {c for per in revenue.values() for c in per}
    if not spent:
        return {}, None
    if len(currencies) > 1:
        listed = ", ".join(sorted(currencies))
        note = (
            f"ROI n/a: won revenue is in {len(currencies)} currencies ({listed}); costs have none"
        )
        return {s: None for s in sorted(spent)}, note
    roi: dict[str, float | None] = {}
    for source in sorted(set(spent) | set(revenue)):
        cost = spent.get(source, 0.0)
        got = sum(revenue.get(source, {}).values())
        roi[source] = (got - cost) / cost if cost else None
    return roi, None


def _weeks(leads: dict[str, _Lead], *, since: datetime, until: datetime) -> tuple[Week, ...]:
    def week(at: datetime) -> str:
        year, number, _ = at.isocalendar()
        return f"{year}-W{number:02d}"

    names: list[str] = []
    day = since
    while day < until:
        if week(day) not in names:
            names.append(week(day))
        day += timedelta(days=1)
    if until > since and week(until - timedelta(microseconds=1)) not in names:
        names.append(week(until - timedelta(microseconds=1)))
    mql: Counter[str] = Counter()
    accepted: Counter[str] = Counter()
    revenue: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for lead in leads.values():
        entered = _entered(lead)
        if entered is not None and entered >= since:
            mql[week(entered)] += 1
        accepted_at = min((lead.reached[s] for s in _ACCEPTED if s in lead.reached), default=None)
        if accepted_at is not None and accepted_at >= since:
            accepted[week(accepted_at)] += 1
        if lead.won is not None and lead.won.occurred_at >= since:
            revenue[week(lead.won.occurred_at)][lead.won.currency or NO_CURRENCY] += (
                lead.won.amount or 0.0
            )
    return tuple(Week(n, mql[n], accepted[n], dict(sorted(revenue[n].items()))) for n in names)


# --- the terminal table ---------------------------------------------------------------------


def fmt_rate(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0%}"


def fmt_money(per_currency: dict[str, float]) -> str:
    if not per_currency:
        return "0"
    return ", ".join(f"{amount:,.0f} {cur}" for cur, amount in per_currency.items())


def fmt_s(value: float | None) -> str:
    if value is None:
        return "n/a"
    if value < 90:
        return f"{value:.0f} s"
    if value < 5400:
        return f"{value / 60:.1f} min"
    return f"{value / 3600:.1f} h"


def render_kpi(report: KpiReport) -> str:
    t = report.total
    lines = [
        f"Shared KPIs {report.since:%Y-%m-%d %H:%M} to {report.until:%Y-%m-%d %H:%M} UTC",
        "",
        "funnel (leads that became MQLs in the range, as they stand at its end)",
        f"  MQL          {t.mql:>7,}",
        f"  accepted     {t.accepted:>7,}  {fmt_rate(t.accept_rate):>4} of MQLs",
        f"  opportunity  {t.opportunity:>7,}  {fmt_rate(t.opportunity_rate):>4} of accepted",
        f"  won          {t.won:>7,}  {fmt_rate(t.win_rate):>4} of opportunities",
        f"revenue won    {fmt_money(t.revenue)}",
        f"speed to lead  p50 {fmt_s(percentile(t.speed_s, 50))}, p90 "
        f"{fmt_s(percentile(t.speed_s, 90))}, max {fmt_s(max(t.speed_s, default=None))}"
        f" ({len(t.speed_s):,} accepted)",
        f"SLA breached   {t.sla_breached:,} of {t.sla_clocks:,} hand-offs"
        f" ({fmt_rate(t.breach_rate)})",
        "rejections     " + (", ".join(f"{r} {n:,}" for r, n in t.rejections.items()) or "none"),
        "leads by stage " + (", ".join(f"{s} {n:,}" for s, n in t.stages.items()) or "none"),
    ]
    if report.by is not None:
        head = (
            f"{report.by:<18} {'MQL':>6} {'->acc':>7} {'->opp':>6} {'->won':>6} "
            f"{'revenue':>16} {'p50 accept':>11} {'SLA breach':>11}  rejections"
        )
        lines += ["", f"by {report.by}", head]
        for name, g in report.groups.items():
            lines.append(
                f"{name[:18]:<18} {g.mql:>6,} {fmt_rate(g.accept_rate):>7} "
                f"{fmt_rate(g.opportunity_rate):>6} {fmt_rate(g.win_rate):>6} "
                f"{fmt_money(g.revenue):>16} {fmt_s(percentile(g.speed_s, 50)):>11} "
                f"{fmt_rate(g.breach_rate):>11}  "
                + (", ".join(f"{r} {n}" for r, n in g.rejections.items()) or "-")
            )
    lines += ["", "won revenue by source (first touch / last touch / linear)"]
    sources = sorted(
        {s for m in ATTRIBUTIONS for s in report.attributed[m]["source"]},
        key=lambda s: -sum(report.attributed["linear"]["source"].get(s, {}).values()),
    )
    if not sources:
        lines.append("  none won in the range")
    for source in sources:
        cells = [fmt_money(report.attributed[m]["source"].get(source, {})) for m in ATTRIBUTIONS]
        lines.append(f"  {source[:22]:<22} " + " / ".join(cells))
    campaigns = report.attributed[report.attribution]["campaign"]
    if campaigns:
        lines += ["", f"won revenue by campaign ({report.attribution})"]
        lines += [f"  {c[:22]:<22} {fmt_money(m)}" for c, m in campaigns.items()]
    if report.costs or report.cost_errors:
        lines += ["", f"ROI by source ({report.attribution}; cost prorated to the range)"]
        revenue = report.attributed[report.attribution]["source"]
        for source, value in report.roi.items():
            cost = report.costs.get(source, 0.0)
            lines.append(
                f"  {source[:22]:<22} revenue {fmt_money(revenue.get(source, {})):>14}"
                f"  cost {cost:>12,.0f}  ROI {'n/a' if value is None else f'{value:+.0%}'}"
            )
        if report.roi_note:
            lines.append(f"  {report.roi_note}")
        lines += [f"  costs line {e.line}: {e.message}" for e in report.cost_errors]
    lines += ["", "week        MQL  accepted  revenue won"]
    lines += [
        f"{w.week}  {w.mql:>5,} {w.accepted:>9,}  {fmt_money(w.revenue)}" for w in report.weeks
    ]
    return "\n".join(lines) + "\n"
