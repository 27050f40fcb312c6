"""The sales and marketing alignment checklist: 15 items judged from the lead model and what
the deployment wrote to its topics, each with its evidence, and the verdict band."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from statistics import median
from typing import Literal

from schemas.decisions import UNKNOWN, HandOff, LeadMerged, SlaEvent
from schemas.feedback import SalesFeedback
from streams.lead_model import LeadModel

__all__ = [
    "CHECKLIST_SIZE",
    "Checklist",
    "Evidence",
    "Item",
    "Status",
    "evaluate",
    "render_checklist",
    "verdict",
]

Status = Literal["good", "partial", "missing", "cannot-see"]
CHECKLIST_SIZE = 15
#: Shares of hand-offs at or above this make a coverage item good.
GOOD_SHARE = 0.5
_OUTCOMES = frozenset({"opportunity", "won", "lost"})


@dataclass(frozen=True, slots=True)
class Item:
    number: int
    title: str
    status: Status
    evidence: str


@dataclass(frozen=True, slots=True)
class Evidence:
    """What the checklist reads, already filtered to [since, until)."""

    since: datetime
    until: datetime
    model: LeadModel | None
    model_source: str  # where the model came from, for the evidence sentence
    handoffs: tuple[HandOff, ...]
    feedback: tuple[SalesFeedback, ...]
    sla: tuple[SlaEvent, ...]
    merges: tuple[LeadMerged, ...]
    online_events: int  # engagement.raw records without an offline source
    offline_by_source: Mapping[str, int]  # properties.source of imported offline events


@dataclass(frozen=True, slots=True)
class Checklist:
    since: datetime
    until: datetime
    items: tuple[Item, ...]

    @property
    def good(self) -> int:
        return sum(1 for i in self.items if i.status == "good")

    @property
    def verdict(self) -> str:
        return verdict(self.good)


def verdict(good: int) -> str:
    """The seed's bands: 10 or more good, 5-9 room to improve, 4 or fewer urgent."""
    if good >= 10:
        return "good: sales and marketing are aligned"
    if good >= 5:
        return "room to improve"
    return "urgent: sales and marketing are not working from one funnel"


def _pct(n: int, total: int) -> str:
    return f"{n / total:.0%}" if total else "n/a"


def _latest(handoffs: Iterable[HandOff]) -> list[HandOff]:
    """Each lead once, as last handed off (a reassignment hands off again)."""
    latest: dict[str, HandOff] = {}
    for h in handoffs:
        held = latest.get(h.lead_id)
        if held is None or held.created_at <= h.created_at:
            latest[h.lead_id] = h
    return list(latest.values())


def _coverage(n: int, total: int) -> Status:
    if total == 0 or n == 0:
        return "missing"
    return "good" if n / total >= GOOD_SHARE else "partial"


def _definition(ev: Evidence) -> Item:
    title = "A written lead definition shared by sales and marketing"
    m = ev.model
    if m is None:
        return Item(1, title, "missing", "no lead model could be read")
    thresholds = ", ".join(f"{s.id} >= {s.threshold}" for s in m.scores)
    return Item(
        1,
        title,
        "good",
        f"lead model {m.name} v{m.version} ({ev.model_source}): MQL at {thresholds} "
        f"with fit {m.mql.min_grade} or better",
    )


def _bant(ev: Evidence, leads: list[HandOff], span: str) -> Item:
    title = "Timing, budget and authority known when a lead reaches sales"
    total = len(leads)
    if not total:
        return Item(2, title, "missing", f"no hand-offs {span}")
    timeline = sum(1 for h in leads if h.purchase_timeline != UNKNOWN)
    budget = sum(1 for h in leads if h.budget != UNKNOWN)
    authority = sum(1 for h in leads if h.authority != UNKNOWN)
    shares = [n / total for n in (timeline, budget, authority)]
    status: Status = (
        "good" if min(shares) >= GOOD_SHARE else "partial" if max(shares) > 0 else "missing"
    )
    return Item(
        2,
        title,
        status,
        f"timeline known on {_pct(timeline, total)} of hand-offs {span}, budget on "
        f"{_pct(budget, total)}, authority on {_pct(authority, total)} ({total:,} leads)",
    )


def _scoring(ev: Evidence) -> Item:
    title = "Agreed scoring: behaviour and fit, with one MQL threshold"
    m = ev.model
    if m is None:
        return Item(3, title, "missing", "no lead model could be read")
    rules = sum(len(s.rules) for s in m.scores)
    fit = len(m.fit.rules)
    text = (
        f"{len(m.scores)} score(s) with {rules} engagement rules, {fit} fit rules, "
        f"{len(m.triggers)} hot triggers"
    )
    if rules and fit:
        return Item(3, title, "good", text + "; an MQL needs both")
    return Item(
        3, title, "partial", text + ("; no fit rules" if rules else "; no engagement rules")
    )


def _unified(leads: list[HandOff], span: str) -> Item:
    title = "Marketing and SFA data unified (leads matched to CRM accounts)"
    matched = sum(1 for h in leads if h.account_id is not None)
    if not leads:
        return Item(4, title, "missing", f"no hand-offs {span}")
    return Item(
        4,
        title,
        _coverage(matched, len(leads)),
        f"{_pct(matched, len(leads))} of hand-offs {span} matched to a CRM account (crm.accounts)",
    )


def _reps_see(leads: list[HandOff], span: str) -> Item:
    title = "Reps see marketing activity on the leads they get"
    if not leads:
        return Item(5, title, "missing", f"no hand-offs {span}")
    with_activity = sum(1 for h in leads if h.recent_activity)
    return Item(
        5,
        title,
        _coverage(with_activity, len(leads)),
        f"{_pct(with_activity, len(leads))} of hand-offs {span} carry the lead's recent "
        f"activity (pages, downloads, events) and its score breakdown",
    )


def _outcomes(feedback: list[SalesFeedback], span: str) -> Item:
    title = "Marketing sees sales outcomes as they happen"
    by_status = Counter(f.status for f in feedback)
    outcomes = sum(n for s, n in by_status.items() if s in _OUTCOMES)
    if not feedback:
        return Item(6, title, "missing", f"no sales feedback on sfa.feedback {span}")
    detail = ", ".join(f"{s} {n:,}" for s, n in sorted(by_status.items()))
    if outcomes:
        return Item(6, title, "good", f"{outcomes:,} outcomes on sfa.feedback {span} ({detail})")
    return Item(
        6, title, "partial", f"feedback {span} ({detail}) but no opportunity, won or lost yet"
    )


def _kpis(leads: list[HandOff], fed: set[str], span: str) -> Item:
    title = "Shared KPIs from one data set (MQLs, acceptance, conversion)"
    if not leads:
        return Item(7, title, "missing", f"no hand-offs {span}: nothing to measure")
    answered = sum(1 for h in leads if h.lead_id in fed)
    if not answered:
        return Item(
            7,
            title,
            "partial",
            f"{len(leads):,} hand-offs {span} but no sales feedback: only marketing's side "
            f"of the funnel can be measured",
        )
    return Item(
        7,
        title,
        "good",
        f"both sides measured on the same leads: {len(leads):,} handed off {span}, "
        f"{answered:,} ({_pct(answered, len(leads))}) answered by sales",
    )


def _roi(feedback: list[SalesFeedback], span: str) -> Item:
    title = "Marketing ROI traced to revenue"
    won = [f for f in feedback if f.status == "won" and f.amount is not None]
    pipeline = [f for f in feedback if f.status == "opportunity" and f.amount is not None]

    def money(items: list[SalesFeedback]) -> str:
        totals: dict[str, float] = {}
        for f in items:
            key = f.currency or "?"
            totals[key] = totals.get(key, 0.0) + (f.amount or 0)
        return ", ".join(f"{c} {v:,.0f}" for c, v in sorted(totals.items()))

    if won:
        return Item(
            8,
            title,
            "good",
            f"{len(won):,} won deals with amounts {span} ({money(won)}), each traced to a lead",
        )
    if pipeline:
        return Item(
            8,
            title,
            "partial",
            f"{len(pipeline):,} opportunities with amounts {span} ({money(pipeline)}), "
            f"no won deal with an amount yet",
        )
    return Item(8, title, "missing", f"no opportunity or won amounts on sfa.feedback {span}")


def _sla(ev: Evidence, span: str) -> Item:
    title = "A hand-off SLA: how fast sales must act on a lead"
    m = ev.model
    if m is None or m.sla is None:
        return Item(9, title, "missing", "the lead model has no sla: section")
    policies = []
    for name, p in (("hot", m.sla.hot), ("mql", m.sla.mql)):
        after = (p.remind_after_minutes, p.escalate_after_minutes, p.reassign_after_minutes)
        policies.append(f"{name} {'/'.join('-' if a is None else f'{a:g}' for a in after)} min")
    steps = Counter(e.step for e in ev.sla)
    started = steps.get("started", 0)
    text = f"{', '.join(policies)} (remind/escalate/reassign)"
    if not started:
        return Item(9, title, "partial", f"{text}; no clock started {span}")
    accepted = [e.time_to_accept_s for e in ev.sla if e.step == "accepted" and e.time_to_accept_s]
    speed = f", median {median(accepted) / 60:.1f} min to accept" if accepted else ""
    return Item(
        9,
        title,
        "good",
        f"{text}; {started:,} clocks {span}: {steps.get('accepted', 0):,} accepted{speed}, "
        f"{steps.get('escalated', 0):,} escalated, {steps.get('reassigned', 0):,} reassigned",
    )


def _feedback(leads: list[HandOff], fed: set[str], span: str) -> Item:
    title = "Sales feedback on every lead (accepted, rejected with a reason)"
    if not leads:
        return Item(10, title, "missing", f"no hand-offs {span}")
    answered = sum(1 for h in leads if h.lead_id in fed)
    return Item(
        10,
        title,
        _coverage(answered, len(leads)),
        f"sales answered {_pct(answered, len(leads))} of hand-offs {span} on sfa.feedback",
    )


def _dedupe(merges: tuple[LeadMerged, ...], span: str) -> Item:
    title = "Duplicates removed and identities merged (one person, one lead)"
    why = Counter(m.why for m in merges)
    merged = sum(len(m.merged_lead_ids) for m in merges)
    detail = ", ".join(f"{k} {v:,}" for k, v in sorted(why.items()))
    return Item(
        11,
        title,
        "good",
        "retried messages deduplicated by messageId and leads merged by userId, email and "
        f"CRM id: {merged:,} leads merged {span}" + (f" ({detail})" if detail else ""),
    )


def _offline(ev: Evidence, span: str) -> Item:
    title = "Online and offline touchpoints joined (trade shows, seminars, cards)"
    offline = sum(ev.offline_by_source.values())
    detail = ", ".join(f"{s} {n:,}" for s, n in sorted(ev.offline_by_source.items()))
    if offline and ev.online_events:
        return Item(
            12,
            title,
            "good",
            f"{offline:,} offline events {span} ({detail}) alongside "
            f"{ev.online_events:,} online ones",
        )
    if offline or ev.online_events:
        which = "offline" if offline else "online"
        return Item(
            12,
            title,
            "partial",
            f"only {which} events {span} ({offline or ev.online_events:,}); "
            f"`leadstream import events` brings offline lists in",
        )
    return Item(12, title, "missing", f"no events on engagement.raw {span}")


_ORGANISATIONAL = (
    "Sales and marketing review the funnel together, regularly",
    "One revenue target that both teams are measured on",
    "An executive owns the whole funnel, from first touch to revenue",
)


def evaluate(ev: Evidence, *, span: str) -> Checklist:
    """`span` words the range in evidence sentences ("in the last 30 days")."""
    leads = _latest(ev.handoffs)
    fed = {f.lead_id for f in ev.feedback}
    feedback = list(ev.feedback)
    items = [
        _definition(ev),
        _bant(ev, leads, span),
        _scoring(ev),
        _unified(leads, span),
        _reps_see(leads, span),
        _outcomes(feedback, span),
        _kpis(leads, fed, span),
        _roi(feedback, span),
        _sla(ev, span),
        _feedback(leads, fed, span),
        _dedupe(ev.merges, span),
        _offline(ev, span),
    ]
    items += [
        Item(len(items) + i + 1, title, "cannot-see", "organisational: not in the data; judge it")
        for i, title in enumerate(_ORGANISATIONAL)
    ]
    assert len(items) == CHECKLIST_SIZE
    return Checklist(since=ev.since, until=ev.until, items=tuple(items))


_MARKS: Mapping[Status, str] = {
    "good": "[x]",
    "partial": "[~]",
    "missing": "[ ]",
    "cannot-see": "[?]",
}


def render_checklist(checklist: Checklist) -> str:
    lines = [
        f"Sales and marketing alignment, {checklist.since:%Y-%m-%d %H:%M} to "
        f"{checklist.until:%Y-%m-%d %H:%M} UTC",
        "",
    ]
    for item in checklist.items:
        lines.append(f"{_MARKS[item.status]} {item.number:>2}. {item.title}: {item.status}")
        lines.append(f"        {item.evidence}")
    unseen = sum(1 for i in checklist.items if i.status == "cannot-see")
    lines += [
        "",
        f"{checklist.good} of {CHECKLIST_SIZE} good ({unseen} organisational items not "
        f"counted: add one for each that holds): {checklist.verdict}",
        "bands: 10 or more good; 5-9 room to improve; 4 or fewer urgent",
    ]
    return "\n".join(lines) + "\n"
