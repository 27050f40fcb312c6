"""Scoring: engagement points with caps and decay, fit and grade, triggers, lifecycle stage.

Everything here is a pure function of lead state, one event and the model. Decay uses event
time only: a lead's scores are read at its clock (the latest event time seen), or at a time
the caller gives (`read_score`), never by a job over all leads.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, final

from schemas.decisions import BreakdownLine, NamedScore, Stage
from schemas.internal import PersonEvent, TraitValue
from streams.construct import trusted
from streams.lead_model import (
    FitRule,
    Grade,
    LeadModel,
    Rule,
    Score,
    Trigger,
    grade_at_least,
    remember,
)

__all__ = [
    "DecayState",
    "Engagement",
    "Fire",
    "account_domain",
    "add_engagement",
    "decayed",
    "fit_of",
    "is_known",
    "named_scores",
    "next_stage",
    "read_score",
    "score_lines",
    "update_triggers",
]

_DAY_MS = 86_400_000
_DAYS_KEPT = 3  # per-day cap memory: a late event older than this counts as a fresh day
_ASSETS_KEPT = 32
_NO_START = -(2**62)  # the start of a score's first run: no event is too old for it

DecayState = tuple[float, int, int]  # (value at as_of, as_of ms, run start ms)
# (raw points, counted points, events, counted events, score id); "counted" is after caps.
RuleTotals = tuple[int, int, int, int, str]


@dataclass(frozen=True, slots=True)
class Fire:
    """A hot trigger that fired, and the event that made it fire."""

    trigger: str
    message_id: str
    ts_ms: int


@final
class Engagement:
    """The engagement part of a lead's state (see LeadState for the shapes); never changed
    once built.

    A plain class, not a frozen dataclass: compiled, mypyc builds it natively, where a
    dataclass's generated `__init__` runs interpreted (~6,000 instructions a build).
    """

    __slots__ = ("assets", "days", "decay", "rules")

    def __init__(
        self,
        rules: Mapping[str, RuleTotals],
        days: Mapping[str, tuple[tuple[int, int], ...]],
        assets: Mapping[str, tuple[str, ...]],
        decay: Mapping[str, DecayState],
    ) -> None:
        self.rules: Final = rules
        self.days: Final = days
        self.assets: Final = assets
        self.decay: Final = decay


def add_engagement(state: Engagement, event: PersonEvent, model: LeadModel) -> Engagement:
    """Add the event's points to every score it matches, honouring caps, resets and decay.

    Exact for late events: a late event's points decay from its own time. An event older
    than the start of a score's current run (before a reset) adds nothing to it.
    Returns `state` itself (not a copy) when the event matches no rule.
    """
    matched = model.rules_for(event.kind, event.name)
    if not matched:
        return state
    rules, days, assets, decay = (
        dict(state.rules),
        dict(state.days),
        dict(state.assets),
        dict(state.decay),
    )
    t = event.ts_ms
    done: set[str] = set()
    for score, rule in matched:
        if score.id not in done:
            done.add(score.id)
            _roll(score, t, rules, days, assets, decay)
        value, as_of, start = decay[score.id]
        if t < start:
            continue  # before the reset that started this run: expired already
        raw, counted, n, n_counted, _ = rules.get(rule.id, (0, 0, 0, 0, score.id))
        points = _capped(rule, event, t, counted, n_counted, days, assets)
        rules[rule.id] = (
            raw + rule.points,
            counted + points,
            n + 1,
            n_counted + (points != 0),
            score.id,
        )
        if points:
            decay[score.id] = _add(score, value, as_of, start, t, points)
    return Engagement(rules, days, assets, decay)


def _roll(
    score: Score,
    t: int,
    rules: dict[str, RuleTotals],
    days: dict[str, tuple[tuple[int, int], ...]],
    assets: dict[str, tuple[str, ...]],
    decay: dict[str, DecayState],
) -> None:
    """Start the score's first run, or a new one at `t` if it went idle past its reset.

    A first run has no lower bound (a late event older than the first one counts); a run
    started by a reset begins at the event that came after the idle gap.
    """
    current = decay.get(score.id)
    if current is None:
        decay[score.id] = (0.0, t, _NO_START)
        return
    reset_ms = score.decay.reset_after_ms
    if reset_ms is None or t - current[1] <= reset_ms:
        return
    # The score's rules, and rules of an earlier model that counted toward it.
    for key in [k for k, totals in rules.items() if totals[4] == score.id]:
        rules.pop(key, None)
        days.pop(key, None)
        assets.pop(key, None)
    decay[score.id] = (0.0, t, t)


def _add(score: Score, value: float, as_of: int, start: int, t: int, points: int) -> DecayState:
    half_life = score.decay.half_life_ms
    if half_life is None:
        return (value + points, max(as_of, t), start)
    if t >= as_of:
        return (value * 2.0 ** ((as_of - t) / half_life) + points, t, start)
    return (value + points * 2.0 ** ((t - as_of) / half_life), as_of, start)


def _capped(
    rule: Rule,
    event: PersonEvent,
    t: int,
    counted: int,
    n_counted: int,
    days: dict[str, tuple[tuple[int, int], ...]],
    assets: dict[str, tuple[str, ...]],
) -> int:
    """The points this event counts for after the rule's caps (0 when a cap holds it back).

    Every cap is checked before any is recorded: an event one cap holds back leaves no
    trace in the others (its asset can still count on another day).
    """
    if rule.max_count is not None and n_counted >= rule.max_count:
        return 0
    asset_key = known = None
    if rule.once_per_asset:
        asset_key = f"{zlib.crc32((event.asset or event.name).encode()):08x}"
        known = assets.get(rule.id, ())
        if asset_key in known:
            return 0
    recent = day = None
    if rule.max_per_day is not None:
        day = t // _DAY_MS
        recent = dict(days.get(rule.id, ()))
        if recent.get(day, 0) >= rule.max_per_day:
            return 0
    points = rule.points
    if rule.max_points is not None:
        room = rule.max_points - abs(counted)
        points = int(math.copysign(max(0, min(abs(points), room)), points))
        if not points:
            return 0
    if asset_key is not None and known is not None:
        assets[rule.id] = (*known, asset_key)[-_ASSETS_KEPT:]
    if recent is not None and day is not None:
        recent[day] = recent.get(day, 0) + 1
        days[rule.id] = tuple(sorted(recent.items()))[-_DAYS_KEPT:]
    return points


def read_score(decay: Mapping[str, DecayState], score: Score, at_ms: int) -> int:
    """A score's points at `at_ms` (at least its last event time): decayed, or 0 if reset."""
    current = decay.get(score.id)
    if current is None:
        return 0
    return decayed(current, score.decay.half_life_ms, score.decay.reset_after_ms, at_ms)


def decayed(
    current: DecayState, half_life_ms: float | None, reset_after_ms: float | None, at_ms: int
) -> int:
    """`read_score` of a score's state, with its decay's parameters (the lead model's
    `index.decays` holds them as plain values, for the per-event check)."""
    value, as_of, _ = current
    idle = max(0, at_ms - as_of)
    if reset_after_ms is not None and idle > reset_after_ms:
        return 0
    if half_life_ms is not None and idle:
        value *= 2.0 ** (-idle / half_life_ms)
    return math.floor(value + 0.5)  # half up, the same for every order of the same events


def score_lines(
    state: Engagement, score: Score, at_ms: int, model: LeadModel
) -> tuple[int, tuple[BreakdownLine, ...]]:
    """A score's points at `at_ms` and the lines that add up to them exactly.

    One line per rule with its raw points; a `cap:` line per rule whose caps held points
    back; a `retired:` line per rule an earlier model had (its points stay: a new model
    does not rewrite scores); one `decay:` line for what time took away (or a reset).
    """
    points = read_score(state.decay, score, at_ms)
    lines: list[BreakdownLine] = []
    counted_total = 0
    known = model.index.rules
    for rule_id, (_, counted, _, n_counted, score_id) in state.rules.items():
        if score_id == score.id and rule_id not in known and counted:
            counted_total += counted
            lines.append(
                _line(f"retired:{rule_id}", f"{rule_id} (not in this model)", counted, n_counted)
            )
    for rule in score.rules:
        totals = state.rules.get(rule.id)
        if totals is None or not totals[2]:
            continue
        raw, counted, n, n_counted, _ = totals
        counted_total += counted
        lines.append(_line(f"engagement:{rule.id}", rule.text, raw, n))
        if counted != raw:
            lines.append(
                _line(
                    f"cap:{rule.id}",
                    f"{rule.text}: {_cap_text(rule)}",
                    counted - raw,
                    n - n_counted,
                )
            )
    if points != counted_total:
        current = state.decay.get(score.id)
        reset_ms = score.decay.reset_after_ms
        idle = at_ms - current[1] if current is not None else 0
        label = (
            f"reset after {score.decay.reset_after_days:g} idle days"
            if reset_ms is not None and idle > reset_ms
            else f"decay ({score.decay.text or 'none'})"
        )
        lines.append(_line(f"decay:{score.id}", label, points - counted_total, 1))
    return points, tuple(lines)


def _line(rule: str, label: str, points: int, count: int) -> BreakdownLine:
    # Values are ours and already valid; validation would double the cost of scoring.
    return trusted(BreakdownLine, {"rule": rule, "label": label, "points": points, "count": count})


def _cap_text(rule: Rule) -> str:
    caps = []
    if rule.once_per_asset:
        caps.append("once per asset")
    if rule.max_per_day is not None:
        caps.append(f"at most {rule.max_per_day} a day")
    if rule.max_count is not None:
        caps.append(f"at most {rule.max_count} events")
    if rule.max_points is not None:
        caps.append(f"at most {rule.max_points} points")
    return "capped, " + ", ".join(caps)


def named_scores(state: Engagement, model: LeadModel, at_ms: int) -> tuple[NamedScore, ...]:
    out = []
    for score in model.scores:
        points, lines = score_lines(state, score, at_ms, model)
        out.append(
            trusted(
                NamedScore,
                {
                    "id": score.id,
                    "points": points,
                    "threshold": score.threshold,
                    "breakdown": lines,
                },
            )
        )
    return tuple(out)


# --- fit -------------------------------------------------------------------------------


def fit_of(
    traits: Mapping[str, TraitValue], model: LeadModel
) -> tuple[int, Grade, tuple[BreakdownLine, ...]]:
    """Fit points, grade and lines from the lead's traits (memoized: few distinct ones)."""
    email = traits.get("email")
    domain = email.rsplit("@", 1)[1] if isinstance(email, str) and "@" in email else None
    key = (
        traits.get("employees"),
        traits.get("industry"),
        traits.get("country"),
        traits.get("title"),
        traits.get("company"),
        domain,
    )
    memo = model.index.fit_memo
    found = memo.get(key)
    if found is None:
        found = _compute_fit(traits, domain, model)
        remember(memo, key, found)
    return found


def _compute_fit(
    traits: Mapping[str, TraitValue], domain: str | None, model: LeadModel
) -> tuple[int, Grade, tuple[BreakdownLine, ...]]:
    derived: dict[str, TraitValue] = {
        "email_domain": domain,
        "free_mail": domain is not None and domain in model.index.free_mail,
        "competitor": domain is not None and domain in model.index.competitors,
    }
    lines: list[BreakdownLine] = []
    groups: set[str] = set()
    for rule in model.fit.rules:
        if rule.group is not None and rule.group in groups:
            continue
        value = derived[rule.trait] if rule.trait in derived else traits.get(rule.trait)
        if _fit_matches(rule, value):
            if rule.group is not None:
                groups.add(rule.group)
            lines.append(_line(f"fit:{rule.id}", rule.text, rule.points, 1))
    points = sum(line.points for line in lines)
    return points, model.fit.grades.grade(points), tuple(lines)


def _fit_matches(rule: FitRule, value: TraitValue) -> bool:
    if rule.trait in ("free_mail", "competitor"):
        return value is True
    if rule.min is not None or rule.max is not None:
        if not isinstance(value, int | float) or isinstance(value, bool):
            return False
        return (rule.min is None or value >= rule.min) and (rule.max is None or value <= rule.max)
    if not isinstance(value, str):
        return False
    lowered = value.lower()
    if rule.in_ is not None:
        return lowered in rule.in_
    return any(word in lowered for word in rule.contains or ())


# --- triggers --------------------------------------------------------------------------


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


# --- lifecycle -------------------------------------------------------------------------

#: Stages that only sales feedback moves a lead out of.
SALES_STAGES: frozenset[str] = frozenset({"sal", "opportunity", "won", "lost"})


def account_domain(traits: Mapping[str, TraitValue], model: LeadModel) -> str | None:
    """The company domain of the lead's email, or None for free-mail and unknown emails.

    Routing's (streams.routing re-exports it); here so that the core, which asks it at
    most events that score, calls it compiled (interpreted, a call from compiled code
    cost ~4,000 instructions, ~2.5% of the core's per event)."""
    email = traits.get("email")
    if not isinstance(email, str) or "@" not in email:
        return None
    domain = email.rsplit("@", 1)[1]
    return None if domain in model.index.free_mail else domain


def is_known(uid: str | None, traits: Mapping[str, TraitValue]) -> bool:
    """A lead is known once we can tell who they are (a userId or an email)."""
    return uid is not None or bool(traits.get("email"))


def next_stage(
    stage: Stage,
    *,
    known: bool,
    points: Mapping[str, int],
    grade: Grade,
    model: LeadModel,
) -> tuple[Stage, str | None]:
    """The stage engagement moves a lead to, and why (None when it stays).

    Engagement moves a lead up to `mql`, and an MQL whose scores fall back under their
    thresholds (decay, negative points, a worse grade) to `recycled`. Sales stages
    (accepted, opportunity, won, lost) move only on sales feedback.
    """
    if stage in SALES_STAGES:
        return stage, None
    fit_ok = grade_at_least(grade, model.mql.min_grade)
    qualified = [s for s in model.scores if points.get(s.id, 0) >= s.threshold]
    if known and fit_ok and qualified:
        if stage == "mql":
            return stage, None
        why = ", ".join(f"{s.id} {points[s.id]} >= {s.threshold}" for s in qualified)
        again = "re-qualified: " if stage == "recycled" else ""
        return "mql", f"{again}{why} and fit {grade} >= {model.mql.min_grade}"
    if stage == "mql":
        if not model.mql.recycle_on_decay:
            return stage, None
        if not fit_ok:
            return "recycled", f"fit fell to {grade}, under {model.mql.min_grade}"
        below = model.mql.recycle_below
        if any(points.get(s.id, 0) >= s.threshold * below for s in model.scores):
            return stage, None  # within the margin: still an MQL
        under = ", ".join(
            f"{s.id} {points.get(s.id, 0)} < {s.threshold * below:g}" for s in model.scores
        )
        return "recycled", f"scores fell under {below:.0%} of their thresholds: {under}"
    if stage == "recycled":
        return stage, None
    if not known:
        return "anonymous", None
    engaged = any(p > 0 for p in points.values())
    if stage == "anonymous":
        return ("engaged", "identified, with engagement") if engaged else ("known", "identified")
    if stage == "known" and engaged:
        return "engaged", "first engagement"
    return stage, None
