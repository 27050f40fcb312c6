"""Scoring: engagement points with caps, fit points, triggers, breakdown and stage."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from schemas.decisions import BreakdownLine, Stage, trusted
from schemas.internal import PersonEvent, TraitValue
from streams.lead_model import LeadModel, Trigger, remember

__all__ = [
    "Fire",
    "add_engagement",
    "breakdown",
    "is_known",
    "stage_for",
    "update_triggers",
]

_DAY_MS = 86_400_000


@dataclass(frozen=True, slots=True)
class Fire:
    """A hot trigger that fired, and the event that made it fire."""

    trigger: str
    message_id: str
    ts_ms: int


def add_engagement(
    rules: Mapping[str, tuple[int, int]], event: PersonEvent, model: LeadModel
) -> Mapping[str, tuple[int, int]]:
    """Add the event's engagement points to the per-rule totals, honouring `max_points`."""
    if event.kind == "track":
        matched = [(r.id, r.points, r.max_points) for r in model.event_rules(event.name)]
    elif event.kind == "page":
        matched = [(r.id, r.points, r.max_points) for r in model.page_rules(event.name)]
    else:
        return rules  # state is never mutated in place: sharing it is safe, copying is not free
    if not matched:
        return rules
    out = dict(rules)
    for rule_id, points, cap in matched:
        total, count = out.get(rule_id, (0, 0))
        if cap is not None and points > 0:
            points = max(0, min(points, cap - total))
        out[rule_id] = (total + points, count + 1)
    return out


def update_triggers(
    hits: Mapping[str, tuple[int, ...]],
    fired: Mapping[str, int],
    event: PersonEvent,
    model: LeadModel,
) -> tuple[Mapping[str, tuple[int, ...]], Mapping[str, int], list[Fire]]:
    """Record the event against matching triggers; return the triggers that fire now.

    Windows use event time, so late events count where they belong.
    """
    triggers = model.triggers_for(event.kind, event.name)
    if not triggers:
        return hits, fired, []  # shared, not copied: state is never mutated in place
    new_hits = dict(hits)
    new_fired = dict(fired)
    fires: list[Fire] = []
    for trigger in triggers:
        # Keep a few more times than the trigger needs, so a late event can still
        # complete an older window; bounded, so state stays small.
        kept = max(trigger.count * 3, 8)
        times = tuple(sorted((*new_hits.get(trigger.id, ()), event.ts_ms)))[-kept:]
        new_hits[trigger.id] = times
        if _fires(trigger, times, event.ts_ms, new_fired.get(trigger.id)):
            new_fired[trigger.id] = event.ts_ms
            fires.append(Fire(trigger.id, event.mid, event.ts_ms))
    return new_hits, new_fired, fires


def _fires(trigger: Trigger, times: tuple[int, ...], now_ms: int, last_fired: int | None) -> bool:
    """True when `count` hits including the one at `now_ms` fall within the window."""
    if last_fired is not None and abs(now_ms - last_fired) < trigger.cooldown_days * _DAY_MS:
        return False
    window_ms = trigger.within_days * _DAY_MS
    n = trigger.count
    for start in range(len(times) - n + 1):
        run = times[start : start + n]
        if run[0] <= now_ms <= run[-1] and run[-1] - run[0] <= window_ms:
            return True
    return False


def breakdown(
    rules: Mapping[str, tuple[int, int]], traits: Mapping[str, TraitValue], model: LeadModel
) -> tuple[int, tuple[BreakdownLine, ...]]:
    """The score and the lines it is made of; the lines sum to the score exactly."""
    labels = model.index.labels
    # model_construct: the values are ours and already valid; validation would double the cost.
    lines = [
        trusted(
            BreakdownLine,
            {
                "rule": f"engagement:{rule_id}",
                "label": labels.get(rule_id, rule_id),
                "points": p,
                "count": n,
            },
        )
        for rule_id, (p, n) in sorted(rules.items())
        if n
    ]
    lines.extend(_fit_lines(traits, model))
    return sum(line.points for line in lines), tuple(lines)


def _fit_lines(traits: Mapping[str, TraitValue], model: LeadModel) -> tuple[BreakdownLine, ...]:
    employees, title = traits.get("employees"), traits.get("title")
    memo = model.index.fit_memo
    found = memo.get((employees, title))
    if found is None:
        found = _compute_fit_lines(employees, title, model)
        remember(memo, (employees, title), found)
    return found  # type: ignore[return-value]


def _compute_fit_lines(
    employees: TraitValue, title: TraitValue, model: LeadModel
) -> tuple[BreakdownLine, ...]:
    lines: list[BreakdownLine] = []
    if isinstance(employees, int) and not isinstance(employees, bool):
        for band in model.fit.company_size:
            upper = band.max_employees
            if band.min_employees <= employees and (upper is None or employees <= upper):
                label = f"company size {band.min_employees}-{upper if upper else ''}".rstrip("-")
                lines.append(BreakdownLine(rule=f"fit:{band.id}", label=label, points=band.points))
                break
    if isinstance(title, str):
        lowered = title.lower()
        for rule in model.fit.seniority:
            if any(word in lowered for word in rule.title_contains):
                lines.append(
                    BreakdownLine(rule=f"fit:{rule.id}", label=f"title {title}", points=rule.points)
                )
                break
    return tuple(lines)


def is_known(uid: str | None, traits: Mapping[str, TraitValue]) -> bool:
    """A lead is known once we can tell who they are (a userId or an email)."""
    return uid is not None or bool(traits.get("email"))


def stage_for(*, known: bool, score: int, engaged: bool, mql: bool) -> Stage:
    if not known:
        return "anonymous"
    if mql:
        return "mql"
    return "engaged" if engaged and score > 0 else "known"
