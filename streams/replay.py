"""What-if replay: run lead models over an event log, no broker, and compare their decisions.

`replay` is pure: it decodes each line once (the worker's own decoder), applies the events
in event-time order to one in-memory state per model with the worker's own core
(`apply_event`, `apply_contact`), and counts what each model would have decided: MQLs and
alerts per ISO week, final stages, load per rep, the leads whose status differs and, given
sales outcomes, how well MQL predicted an opportunity. `render_table` and `report_json`
format a report; `run_command` is the thin adapter behind `leadstream model replay`.
"""

from __future__ import annotations

import gc
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from operator import itemgetter
from pathlib import Path
from typing import Any, TextIO, cast, get_args

import orjson

from schemas.decisions import HandOff, LeadScored, RepAlert, Stage
from schemas.feedback import SalesFeedback
from schemas.internal import (
    ContactUpdate,
    FeedbackIn,
    Link,
    MergeIn,
    MergeRequest,
    PersonEvent,
)
from streams.accounts import apply_contact
from streams.codec import Rejection, decode_person_event, decode_sales_feedback
from streams.identity import apply_person_batch, to_batch
from streams.lead_model import LeadModel, ModelError, parse_model
from streams.leads import Decision, Limits, apply_event
from streams.routing import RoutingState
from streams.send import BadLine
from streams.state import AccountState, LeadState

__all__ = [
    "Comparison",
    "Feedback",
    "LeadDiff",
    "ModelReport",
    "Prediction",
    "RepLoad",
    "ReplayReport",
    "RuleLift",
    "Week",
    "decode_feedback",
    "render_table",
    "replay",
    "report_json",
    "run_command",
]

_DAY_MS = 86_400_000
#: Rejected lines listed by number in a report (all of them are counted by reason).
_BAD_LINES_LISTED = 10
#: Events between two calls of the progress callback.
_PROGRESS_EVERY = 8192
#: Outcomes that count as "MQL predicted right".
_POSITIVE = frozenset({"opportunity", "won"})
_STAGES: tuple[str, ...] = get_args(Stage)


# --- the report ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Week:
    """What a model decided in one ISO week (Monday to Sunday, UTC) of event time."""

    week: str  # "2026-W48"
    mqls: int  # leads becoming MQL (a recycled lead that re-qualifies counts again)
    hot_alerts: int  # rep alerts from hot triggers (not the MQL alert, not accounts)
    account_alerts: int  # buying-group alerts


@dataclass(frozen=True, slots=True)
class RepLoad:
    rep_id: str
    name: str
    handoffs: int
    alerts: int  # every rep alert: hot triggers, MQL alerts and buying groups


@dataclass(frozen=True, slots=True)
class RuleLift:
    """P(positive | the lead has >= 1 counted event of the rule) / P(positive)."""

    rule: str
    score: str
    leads: int  # leads with at least one counted event (after caps) of the rule
    positives: int  # of those, leads with an opportunity or a won deal
    lift: float | None  # None when no lead was touched or no lead is positive


@dataclass(frozen=True, slots=True)
class Prediction:
    """How well "became an MQL" predicted an opportunity, over the leads in the log."""

    positives: int  # leads in the log with an `opportunity` or `won` outcome
    mql_leads: int
    true_positives: int  # MQL leads that are positive
    precision: float | None  # true_positives / mql_leads; None when no MQL
    recall: float | None  # true_positives / positives; None when no positive
    won_mql: float | None  # won amounts of MQL leads; None when no outcome has an amount
    won_other: float | None  # won amounts of the other leads in the log
    rules: tuple[RuleLift, ...]


@dataclass(frozen=True, slots=True)
class ModelReport:
    name: str
    version: str
    mqls: int
    mql_leads: int  # distinct leads that became MQL at least once
    hot_alerts: int
    account_alerts: int
    handoffs: int
    duplicates: int  # events recognised as re-deliveries (same messageId) and skipped
    failed: tuple[BadLine, ...]  # events the core raised on (a bug): set aside, like the worker
    weeks: tuple[Week, ...]  # every week from the first event to the last
    stages: dict[str, int]  # final stage -> leads
    reps: tuple[RepLoad, ...]
    prediction: Prediction | None  # None without feedback


@dataclass(frozen=True, slots=True)
class LeadDiff:
    lead_id: str
    stages: tuple[str, str]  # final stage under the first model, under the other
    mql: tuple[bool, bool]  # became MQL at least once
    scores: tuple[int, int]  # final primary score


@dataclass(frozen=True, slots=True)
class Comparison:
    """The leads whose final status (stage, or MQL yes/no) differs from the first model's."""

    other: int  # index into ReplayReport.models
    leads: int
    mql_first_only: int
    mql_other_only: int
    examples: tuple[LeadDiff, ...]  # MQL changes first, then by score


@dataclass(frozen=True, slots=True)
class ReplayReport:
    lines: int
    events: int  # decoded events replayed
    blank: int
    rejected: int
    rejected_by_reason: dict[str, int]
    first_rejected: tuple[BadLine, ...]
    first_event_at: datetime | None
    last_event_at: datetime | None
    leads: int
    feedback: int  # outcomes given
    feedback_unmatched: int  # distinct lead ids in the feedback that the log never saw
    models: tuple[ModelReport, ...]
    comparisons: tuple[Comparison, ...]  # each other model against the first


# --- the replay ------------------------------------------------------------------------


@dataclass(slots=True)
class _Run:
    """One model's in-memory world: what the worker's tables would hold."""

    model: LeadModel
    leads: dict[str, LeadState] = field(default_factory=dict)
    rotation: RoutingState = field(default_factory=RoutingState)
    accounts: dict[str, AccountState] = field(default_factory=dict)
    mql_weeks: Counter[int] = field(default_factory=Counter)
    hot_weeks: Counter[int] = field(default_factory=Counter)
    account_weeks: Counter[int] = field(default_factory=Counter)
    handoffs: Counter[str] = field(default_factory=Counter)
    alerts: Counter[str] = field(default_factory=Counter)
    mql_leads: set[str] = field(default_factory=set)
    touched: dict[str, set[str]] = field(default_factory=dict)  # rule id -> lead ids
    duplicates: int = 0
    failed: list[BadLine] = field(default_factory=list)


def replay(
    lines: Iterable[bytes],
    *,
    models: Sequence[LeadModel],
    feedback: Sequence[SalesFeedback] = (),
    now: datetime,
    limits: Limits | None = None,
    progress: Callable[[int, int], None] | None = None,
    examples: int = 20,
) -> ReplayReport:
    """Replay raw Segment JSON lines through each model; what each would have decided.

    Lines are decoded once and the same events go to every model. Events are applied in
    event-time order (a stable sort on the timestamp), so an unordered log gives the same
    result as an ordered one; lines of equal time keep their order in the log. Bad lines
    are counted by reason and the first few listed by line number (1-based, blank lines
    included); an event the core raises on is set aside, as the worker does. `now` only
    stamps `created_at` on the records the core builds. `progress(done, total)` is called
    every few thousand events applied (`total` is events times models).

    Python's cyclic garbage collector is paused meanwhile (reference counting still frees
    everything): the core makes no reference cycles, and with ~10^5 decoded events and
    leads alive, the collector's repeated passes over them took a third of the time.
    """
    if not models:
        raise ValueError("replay needs at least one model")
    limits = limits or Limits()
    runs = [_Run(model) for model in models]
    with _cyclic_gc_paused():
        events, lines_read, blank, rejected, first_rejected = _decode(lines)
        total = len(events) * len(runs)
        for i, run in enumerate(runs):  # the models are independent: one after the other
            _run_model(
                run,
                events,
                limits=limits,
                now=now,
                track_rules=bool(feedback),
                progress=progress,
                done=i * len(events),
                total=total,
            )
    if progress is not None:
        progress(total, total)

    first_week = _week_of(events[0][0]) if events else 0
    last_week = _week_of(events[-1][0]) if events else -1
    seen = {
        lead_id
        for run in runs
        for lead in run.leads.values()
        if lead.alias_of is None
        for lead_id in (lead.lead_id, *lead.merged)
    }
    outcomes = _Outcomes.of(feedback, seen)
    reports = tuple(
        _model_report(run, first_week, last_week, outcomes if feedback else None) for run in runs
    )
    return ReplayReport(
        lines=lines_read,
        events=len(events),
        blank=blank,
        rejected=sum(rejected.values()),
        rejected_by_reason=dict(sorted(rejected.items())),
        first_rejected=tuple(first_rejected),
        first_event_at=_ms_to_dt(events[0][0]) if events else None,
        last_event_at=_ms_to_dt(events[-1][0]) if events else None,
        leads=len({x.lead_id for r in runs for x in r.leads.values() if x.alias_of is None}),
        feedback=len(feedback),
        feedback_unmatched=len(outcomes.unmatched),
        models=reports,
        comparisons=tuple(
            _compare(runs[0], runs[i], i, examples=examples) for i in range(1, len(runs))
        ),
    )


def _decode(
    lines: Iterable[bytes],
) -> tuple[list[tuple[int, int, PersonEvent]], int, int, Counter[str], list[BadLine]]:
    """(ts_ms, line number, event) sorted by time; lines, blanks, rejections by reason."""
    events: list[tuple[int, int, PersonEvent]] = []
    append = events.append
    decode = decode_person_event
    rejected: Counter[str] = Counter()
    first: list[BadLine] = []
    blank = number = 0
    for number, raw in enumerate(lines, start=1):
        line = raw.rstrip(b"\r\n")
        if not line or line.isspace():
            blank += 1
            continue
        decoded = decode(line)
        if type(decoded) is Rejection:
            rejected[decoded.reason] += 1
            if len(first) < _BAD_LINES_LISTED:
                first.append(BadLine(number, decoded.reason, decoded.message))
            continue
        event = cast(PersonEvent, decoded)
        append((event.ts_ms, number, event))
    events.sort(key=itemgetter(0))  # stable: equal times keep the log's order
    return events, number, blank, rejected, first


def _run_model(
    run: _Run,
    events: list[tuple[int, int, PersonEvent]],
    *,
    limits: Limits,
    now: datetime,
    track_rules: bool,
    progress: Callable[[int, int], None] | None,
    done: int,
    total: int,
) -> None:
    """Every event through one model, the way the leads and accounts agents would.

    The hot loop of `leadstream model replay`: locals only, nothing built per event but
    what the core returns.
    """
    model, leads, apply = run.model, run.leads, apply_event
    mql_weeks, hot_weeks, handoffs, alerts = run.mql_weeks, run.hot_weeks, run.handoffs, run.alerts
    mql_leads = run.mql_leads
    for count, (ts_ms, number, event) in enumerate(events, start=done + 1):
        if progress is not None and not count % _PROGRESS_EVERY:
            progress(count, total)
        pk = event.pk
        old = leads.get(pk)
        try:
            applied = apply(old, event, model=model, rotation=run.rotation, limits=limits, now=now)
        except Exception as exc:  # a bug in the core: set aside, as apply_batch does
            run.failed.append(BadLine(number, "processing_error", f"{type(exc).__name__}: {exc}"))
            continue
        if applied.duplicate:
            run.duplicates += 1
            continue
        new = applied.lead
        leads[pk] = new
        run.rotation = applied.rotation
        decisions: Sequence[Decision] = applied.decisions
        if any(isinstance(d, _INTERNAL) for d in decisions):
            decisions = _settle(run, decisions, number, limits=limits, now=now)
        for decision in decisions:
            kind = type(decision)
            if kind is LeadScored:
                if decision.stage == "mql" and decision.previous_stage != "mql":  # type: ignore[union-attr]
                    mql_weeks[_week_of(ts_ms)] += 1
                    mql_leads.add(decision.lead_id)  # type: ignore[union-attr, arg-type]
            elif kind is HandOff:
                handoffs[decision.rep_id] += 1  # type: ignore[union-attr]
            elif kind is RepAlert:
                alerts[decision.rep_id] += 1  # type: ignore[union-attr]
                if decision.trigger != "mql":  # type: ignore[union-attr]
                    hot_weeks[_week_of(ts_ms)] += 1
            elif kind is ContactUpdate:
                _apply_contact(run, decision, ts_ms, number, now=now)  # type: ignore[arg-type]
        if track_rules:
            _count_rules(run, event, old, new)


_INTERNAL = (PersonEvent, Link, MergeRequest, MergeIn, FeedbackIn)


def _settle(
    run: _Run, decisions: Sequence[Decision], number: int, *, limits: Limits, now: datetime
) -> list[Decision]:
    """Deliver the identity graph's messages at once (the worker sends them through
    `leadstream.person-events`); return every record that goes out."""
    out: list[Decision] = [d for d in decisions if not isinstance(d, _INTERNAL)]
    waiting = [d for d in decisions if isinstance(d, _INTERNAL)]
    while waiting:
        result = apply_person_batch(
            run.leads,
            to_batch(waiting),
            model=run.model,
            rotation=run.rotation,
            limits=limits,
            now=now,
        )
        run.leads.update(result.leads)
        run.rotation = result.rotation
        run.duplicates += result.duplicates
        for _, error in result.failed:
            run.failed.append(BadLine(number, "processing_error", error))
        waiting = [d for d in result.decisions if isinstance(d, _INTERNAL)]
        out += [d for d in result.decisions if not isinstance(d, _INTERNAL)]
    return out


def _survivors(run: _Run) -> dict[str, str]:
    """Lead id of every merged lead -> the lead it lives on in."""
    return {
        m: lead.lead_id for lead in run.leads.values() if lead.alias_of is None for m in lead.merged
    }


@contextmanager
def _cyclic_gc_paused() -> Iterator[None]:
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _apply_contact(
    run: _Run, update: ContactUpdate, ts_ms: int, number: int, *, now: datetime
) -> None:
    try:
        account, decisions = apply_contact(
            run.accounts.get(update.account), update, model=run.model, now=now
        )
    except Exception as exc:  # a bug in the core: set aside
        run.failed.append(BadLine(number, "processing_error", f"{type(exc).__name__}: {exc}"))
        return
    run.accounts[update.account] = account
    for decision in decisions:
        if type(decision) is RepAlert:
            run.alerts[decision.rep_id] += 1
            run.account_weeks[_week_of(ts_ms)] += 1


def _count_rules(run: _Run, event: PersonEvent, old: LeadState | None, new: LeadState) -> None:
    """Note the rules under which this event counted (after caps) for the lead."""
    matched = run.model.rules_for(event.kind, event.name)
    if not matched:
        return
    before_all = old.rules if old is not None else {}
    after_all = new.rules
    for _, rule in matched:
        after = after_all.get(rule.id)
        before = before_all.get(rule.id)
        if after is None or after is before:
            continue
        # (raw, counted points, events, counted events); a reset starts again from zero
        base = before[3] if before is not None and after[2] == before[2] + 1 else 0
        if after[3] > base:
            run.touched.setdefault(rule.id, set()).add(new.lead_id)


@dataclass(frozen=True, slots=True)
class _Outcomes:
    positives: frozenset[str]  # lead ids in the log
    won: dict[str, float]  # lead id in the log -> amount of its latest won outcome
    amounts: bool  # any outcome with an amount
    unmatched: frozenset[str]

    @classmethod
    def of(cls, feedback: Sequence[SalesFeedback], seen: set[str]) -> _Outcomes:
        latest_won: dict[str, tuple[datetime, float]] = {}
        for o in feedback:
            if o.status == "won" and o.amount is not None:
                held = latest_won.get(o.lead_id)
                if held is None or held[0] <= o.occurred_at:
                    latest_won[o.lead_id] = (o.occurred_at, o.amount)
        return cls(
            positives=frozenset(
                o.lead_id for o in feedback if o.status in _POSITIVE and o.lead_id in seen
            ),
            won={lead: amount for lead, (_, amount) in latest_won.items() if lead in seen},
            amounts=any(o.amount is not None for o in feedback),
            unmatched=frozenset(o.lead_id for o in feedback if o.lead_id not in seen),
        )


def _model_report(
    run: _Run, first_week: int, last_week: int, outcomes: _Outcomes | None
) -> ModelReport:
    model = run.model
    stages: Counter[str] = Counter(
        lead.stage for lead in run.leads.values() if lead.alias_of is None
    )
    rep_ids = [rep.id for rep in model.reps]
    rep_ids += sorted((set(run.handoffs) | set(run.alerts)) - set(rep_ids))
    reps = tuple(
        RepLoad(
            rep_id=rep_id,
            name=rep.name if (rep := model.rep(rep_id)) is not None else rep_id,
            handoffs=run.handoffs[rep_id],
            alerts=run.alerts[rep_id],
        )
        for rep_id in rep_ids
    )
    weeks = tuple(
        Week(_week_label(w), run.mql_weeks[w], run.hot_weeks[w], run.account_weeks[w])
        for w in range(first_week, last_week + 1)
    )
    return ModelReport(
        name=model.name,
        version=model.version,
        mqls=sum(run.mql_weeks.values()),
        mql_leads=len({_survivors(run).get(x, x) for x in run.mql_leads}),
        hot_alerts=sum(run.hot_weeks.values()),
        account_alerts=sum(run.account_weeks.values()),
        handoffs=sum(run.handoffs.values()),
        duplicates=run.duplicates,
        failed=tuple(run.failed),
        weeks=weeks,
        stages={stage: stages[stage] for stage in _STAGES if stages[stage]},
        reps=reps,
        prediction=None if outcomes is None else _prediction(run, outcomes),
    )


def _prediction(run: _Run, outcomes: _Outcomes) -> Prediction:
    # Outcomes, MQLs and rules noted under a lead id that was later merged count for the
    # lead it merged into: one person, one lead.
    survivor = _survivors(run)

    def one(ids: Iterable[str]) -> set[str]:
        return {survivor.get(lead_id, lead_id) for lead_id in ids}

    seen = sum(1 for lead in run.leads.values() if lead.alias_of is None)
    positives = one(outcomes.positives)
    mql = one(run.mql_leads)
    hits = len(mql & positives)
    base_rate = len(positives) / seen if seen else 0.0
    rules = []
    for score in run.model.scores:
        for rule in score.rules:
            touched = one(run.touched.get(rule.id, set()))
            good = len(touched & positives)
            lift = good / len(touched) / base_rate if touched and base_rate else None
            rules.append(RuleLift(rule.id, score.id, len(touched), good, lift))
    won = {survivor.get(lead, lead): amount for lead, amount in outcomes.won.items()}
    won_mql = sum(amount for lead, amount in won.items() if lead in mql)
    won_other = sum(amount for lead, amount in won.items() if lead not in mql)
    return Prediction(
        positives=len(positives),
        mql_leads=len(mql),
        true_positives=hits,
        precision=hits / len(mql) if mql else None,
        recall=hits / len(positives) if positives else None,
        won_mql=won_mql if outcomes.amounts else None,
        won_other=won_other if outcomes.amounts else None,
        rules=tuple(rules),
    )


def _compare(first: _Run, other: _Run, index: int, *, examples: int) -> Comparison:
    diffs = []
    only_first = only_other = 0
    for pk in first.leads.keys() | other.leads.keys():
        a, b = first.leads.get(pk), other.leads.get(pk)
        if (a is not None and a.alias_of is not None) or (b is not None and b.alias_of is not None):
            continue  # an identifier pointing at a lead, not a lead
        lead_id = (a or b).lead_id  # type: ignore[union-attr]
        mql = (lead_id in first.mql_leads, lead_id in other.mql_leads)
        stages = (a.stage if a else "-", b.stage if b else "-")
        if stages[0] == stages[1] and mql[0] == mql[1]:
            continue
        only_first += mql[0] and not mql[1]
        only_other += mql[1] and not mql[0]
        diffs.append(LeadDiff(lead_id, stages, mql, (a.score if a else 0, b.score if b else 0)))
    diffs.sort(key=lambda d: (d.mql[0] == d.mql[1], -max(d.scores), d.lead_id))
    return Comparison(
        other=index,
        leads=len(diffs),
        mql_first_only=only_first,
        mql_other_only=only_other,
        examples=tuple(diffs[:examples]),
    )


def _week_of(ts_ms: int) -> int:
    """Weeks since Monday 1969-12-29 (1970-01-01 was a Thursday)."""
    return (ts_ms // _DAY_MS + 3) // 7


def _week_label(week: int) -> str:
    year, number, _ = (date(1969, 12, 29) + timedelta(weeks=week)).isocalendar()
    return f"{year}-W{number:02d}"


def _ms_to_dt(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


# --- feedback --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Feedback:
    outcomes: tuple[SalesFeedback, ...]
    bad: tuple[BadLine, ...]


def decode_feedback(lines: Iterable[bytes]) -> Feedback:
    """A JSONL file of sales outcomes; bad lines are returned with their number and why."""
    outcomes: list[SalesFeedback] = []
    bad: list[BadLine] = []
    for number, raw in enumerate(lines, start=1):
        line = raw.strip()
        if not line:
            continue
        decoded = decode_sales_feedback(line)
        if isinstance(decoded, Rejection):
            bad.append(BadLine(number, decoded.reason, decoded.message))
        else:
            outcomes.append(decoded)
    return Feedback(tuple(outcomes), tuple(bad))


# --- output ----------------------------------------------------------------------------


def report_json(report: ReplayReport, **extra: Any) -> bytes:
    """The report as indented JSON; `extra` adds top-level keys (file names)."""
    return orjson.dumps({**extra, "report": report}, option=orjson.OPT_INDENT_2) + b"\n"


def render_table(report: ReplayReport, *, sources: Sequence[str] = ()) -> str:
    """The report as plain-text tables; `sources` names each model's file."""
    letters = [chr(ord("A") + i) for i in range(len(report.models))]
    out: list[str] = []
    span = (
        f"{report.first_event_at:%Y-%m-%d} to {report.last_event_at:%Y-%m-%d}"
        if report.first_event_at and report.last_event_at
        else "no events"
    )
    out.append(
        f"Replayed {report.events:,} events of {report.lines:,} lines ({span}), "
        f"{report.leads:,} leads; {report.rejected:,} lines rejected, {report.blank:,} blank, "
        f"{report.models[0].duplicates:,} duplicates skipped"
    )
    if report.rejected:
        reasons = ", ".join(f"{r} {n:,}" for r, n in report.rejected_by_reason.items())
        out.append(f"  rejected: {reasons}")
        out.extend(f"  {bad}" for bad in report.first_rejected)
    for i, (letter, m) in enumerate(zip(letters, report.models, strict=True)):
        where = f" ({sources[i]})" if i < len(sources) else ""
        out.append(f"{letter} = {m.name} v{m.version}{where}")
        out.extend(f"  {letter} set aside {bad}" for bad in m.failed)

    out += ["", "Per ISO week of event time (Monday-Sunday, UTC)"]
    head = ["week"]
    for what in ("MQLs", "hot alerts", "account alerts"):
        head += [f"{what} {x}" for x in letters]
    rows = []
    for i, week in enumerate(report.models[0].weeks):
        per = [m.weeks[i] for m in report.models]
        rows.append(
            [week.week]
            + [f"{w.mqls:,}" for w in per]
            + [f"{w.hot_alerts:,}" for w in per]
            + [f"{w.account_alerts:,}" for w in per]
        )
    rows.append(
        ["total"]
        + [f"{m.mqls:,}" for m in report.models]
        + [f"{m.hot_alerts:,}" for m in report.models]
        + [f"{m.account_alerts:,}" for m in report.models]
    )
    out += _table(head, rows)

    out += ["", "Leads by final stage"]
    stages = [s for s in _STAGES if any(s in m.stages for m in report.models)]
    rows = [[s] + [f"{m.stages.get(s, 0):,}" for m in report.models] for s in stages]
    rows.append(["became MQL"] + [f"{m.mql_leads:,}" for m in report.models])
    out += _table(["stage", *letters], rows)

    out += ["", "Load per rep"]
    rep_ids = list(dict.fromkeys(r.rep_id for m in report.models for r in m.reps))
    names = {r.rep_id: r.name for m in report.models for r in m.reps}
    loads = [{r.rep_id: r for r in m.reps} for m in report.models]
    rows = []
    for rep_id in rep_ids:
        row = [rep_id, names[rep_id]]
        for load in loads:
            r = load.get(rep_id)
            row += [f"{r.handoffs:,}" if r else "-", f"{r.alerts:,}" if r else "-"]
        rows.append(row)
    head = ["rep", "name"]
    for x in letters:
        head += [f"hand-offs {x}", f"alerts {x}"]
    out += _table(head, rows)

    for comparison in report.comparisons:
        x = letters[comparison.other]
        out += [
            "",
            f"Leads whose final status differs, {x} vs A: {comparison.leads:,} "
            f"(MQL under A only {comparison.mql_first_only:,}, "
            f"under {x} only {comparison.mql_other_only:,})",
        ]
        if comparison.examples:
            rows = [
                [
                    d.lead_id,
                    d.stages[0],
                    d.stages[1],
                    _yes(d.mql[0]),
                    _yes(d.mql[1]),
                    f"{d.scores[0]:,}",
                    f"{d.scores[1]:,}",
                ]
                for d in comparison.examples
            ]
            head = ["lead", "stage A", f"stage {x}", "MQL A", f"MQL {x}", "score A", f"score {x}"]
            out += _table(head, rows)
            if comparison.leads > len(comparison.examples):
                out.append(f"(first {len(comparison.examples)} of {comparison.leads:,}; --json)")

    predictions = [m.prediction for m in report.models]
    if all(p is not None for p in predictions):
        ps = [p for p in predictions if p is not None]
        out += [
            "",
            f"Did MQL predict an opportunity? {report.feedback:,} outcomes; positive = an "
            f"opportunity or a won deal; {report.feedback_unmatched:,} lead ids not in the log",
        ]
        rows = [
            ["leads in the log"] + [f"{report.leads:,}"] * len(ps),
            ["positive leads"] + [f"{p.positives:,}" for p in ps],
            ["MQL leads"] + [f"{p.mql_leads:,}" for p in ps],
            ["MQL and positive"] + [f"{p.true_positives:,}" for p in ps],
            ["precision"] + [_pct(p.precision) for p in ps],
            ["recall"] + [_pct(p.recall) for p in ps],
        ]
        if ps[0].won_mql is not None:
            rows.append(["won amount, MQL leads"] + [_money(p.won_mql) for p in ps])
            rows.append(["won amount, other leads"] + [_money(p.won_other) for p in ps])
        out += _table(["", *letters], rows)
        out += ["", "Lift of each engagement rule: P(positive | rule counted) / P(positive)"]
        lifts = [{(r.score, r.rule): r for r in p.rules} for p in ps]
        keys = list(dict.fromkeys(key for lift in lifts for key in lift))
        head = ["rule", "score"]
        for x in letters:
            head += [f"leads {x}", f"lift {x}"]
        rows = []
        for key in keys:
            row = [key[1], key[0]]
            for lift in lifts:
                found = lift.get(key)
                row += [f"{found.leads:,}", _times(found.lift)] if found else ["-", "-"]
            rows.append(row)
        out += _table(head, rows)
    return "\n".join(out) + "\n"


def _table(head: list[str], rows: list[list[str]]) -> list[str]:
    """Text columns: the first left-aligned, the rest right-aligned."""
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]

    def line(cells: list[str]) -> str:
        first = cells[0].ljust(widths[0])
        rest = [c.rjust(w) for c, w in zip(cells[1:], widths[1:], strict=True)]
        return "  ".join([first, *rest]).rstrip()

    return [line(head)] + [line(r) for r in rows]


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1%}"


def _times(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}x"


def _money(value: float | None) -> str:
    return "n/a" if value is None else f"{value:,.0f}"


def _yes(value: bool) -> str:
    return "yes" if value else "no"


# --- the command (adapter: files, terminal) ---------------------------------------------


def run_command(
    *,
    events: Path,
    model: Path,
    compare: Path | None,
    feedback: Path | None,
    as_json: bool,
    progress: bool,
    limits: Limits,
    now: datetime,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """`leadstream model replay`: 0 done, 1 an invalid model, 2 a file that cannot be read."""
    out = out or sys.stdout
    err = err or sys.stderr
    paths = [model] if compare is None else [model, compare]
    models = []
    for path in paths:
        try:
            text = path.read_bytes()
        except OSError as exc:
            print(f"leadstream: cannot read {path}: {exc.strerror or exc}", file=err)
            return 2
        try:
            models.append(parse_model(text.decode("utf-8"), source=str(path)))
        except UnicodeDecodeError as exc:
            print(f"{path}:1: not UTF-8 text: {exc.reason}", file=err)
            return 1
        except ModelError as exc:
            print(exc, file=err)
            return 1
    try:
        log = events.open("rb")  # before any work: a wrong path fails at once
    except OSError as exc:
        print(f"leadstream: cannot read {events}: {exc.strerror or exc}", file=err)
        return 2
    with log:
        outcomes = Feedback((), ())
        if feedback is not None:
            try:
                with feedback.open("rb") as fh:
                    outcomes = decode_feedback(fh)
            except OSError as exc:
                print(f"leadstream: cannot read {feedback}: {exc.strerror or exc}", file=err)
                return 2
            for bad in outcomes.bad:
                print(f"{feedback}:{bad.line}: {bad.reason}: {bad.message}", file=err)
        meter = _Meter(err) if progress else None
        try:
            report = replay(
                _reading(log, meter) if meter else log,
                models=models,
                feedback=outcomes.outcomes,
                now=now,
                limits=limits,
                progress=meter.replaying if meter else None,
            )
        except OSError as exc:  # the disk failed mid-way
            print(f"leadstream: cannot read {events}: {exc.strerror or exc}", file=err)
            return 2
        finally:
            if meter:
                meter.done()
    if as_json:
        files = {"events": str(events), "models": [str(p) for p in paths]}
        if feedback is not None:
            files["feedback"] = str(feedback)
        out.write(report_json(report, files=files, feedback_rejected=outcomes.bad).decode("utf-8"))
    else:
        out.write(render_table(report, sources=[str(p) for p in paths]))
        if outcomes.bad:
            out.write(f"{len(outcomes.bad):,} feedback lines rejected (listed on stderr)\n")
    return 0


def _reading(lines: Iterable[bytes], meter: _Meter) -> Iterator[bytes]:
    for number, line in enumerate(lines, start=1):
        if not number % _PROGRESS_EVERY:
            meter.reading(number)
        yield line


class _Meter:
    """A progress line on stderr, rewritten at most every half second."""

    def __init__(self, err: TextIO, *, every_s: float = 0.5) -> None:
        self._err = err
        self._every_s = every_s
        self._shown = 0.0
        self._started: tuple[float, int] | None = None  # (clock, events done) at first call
        self._width = 0

    def reading(self, lines: int) -> None:
        self._show(f"reading: {lines:,} lines")

    def replaying(self, done: int, total: int) -> None:
        clock = time.monotonic()
        if self._started is None:
            self._started = (clock, done)
        since, done_then = self._started
        rate = f", {(done - done_then) / (clock - since):,.0f} events/s" if clock > since else ""
        share = done / total if total else 1.0
        self._show(f"replaying: {done:,}/{total:,} events ({share:.0%}){rate}")

    def _show(self, text: str) -> None:
        clock = time.monotonic()
        if clock - self._shown < self._every_s:
            return
        self._shown = clock
        self._err.write("\r" + text.ljust(self._width))
        self._err.flush()
        self._width = len(text)

    def done(self) -> None:
        if self._width:
            self._err.write("\r" + " " * self._width + "\r")
            self._err.flush()
