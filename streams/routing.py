"""Routing: which rep gets a lead, the rule that decided it, and the trail of rules tried."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Literal

from pydantic import BaseModel, ConfigDict

from schemas.internal import TraitValue
from streams.lead_model import LeadModel, Rep, Territory
from streams.routing_model import (
    Member,
    Routing,
    RoutingRule,
    Schedule,
    Team,
    When,
    wall_instant,
)
from streams.scoring import account_domain  # compiled with the core, which calls it most

__all__ = [
    "LeadView",
    "RepLoad",
    "Route",
    "RouteDecision",
    "RoutingState",
    "TrailStep",
    "account_domain",
    "choose_rep",
    "route",
]

Outcome = Literal["matched", "skipped", "failed"]

#: How far ahead to look for a rep's next free moment before calling it never.
_HORIZON = timedelta(days=400)


@dataclass(frozen=True, slots=True)
class LeadView:
    """What routing reads of a lead.

    `scores`: named score points by score id. `account_owner`: the rep id that owns the
    lead's account: the CRM's owner from `crm.accounts` (or, if the caller knows one, the
    rep an earlier contact of the account went to). `assigned_rep`: the rep the lead was
    routed to before, if any.
    """

    traits: Mapping[str, TraitValue]
    scores: Mapping[str, int] = field(default_factory=dict)
    account_owner: str | None = None
    assigned_rep: str | None = None


@dataclass(frozen=True, slots=True)
class TrailStep:
    """One step of a routing decision: the rule tried (`assigned`, `account_owner`, a
    routing rule id, `fallback`...), how it went, and why, as a sentence for people."""

    rule: str
    outcome: Outcome
    why: str


@dataclass(frozen=True, slots=True)
class RouteDecision:
    """The rep chosen, the rule that chose it, the team (for team rules) and the trail.

    `rule` is `assigned` (the lead keeps its rep), `account_owner`, a routing rule id,
    `fallback`; for a model without `routing:`, `account_domain` and
    `territory_round_robin` too.
    """

    rep: Rep
    rule: str
    team: str | None
    trail: tuple[TrailStep, ...]

    @property
    def lines(self) -> tuple[str, ...]:
        return tuple(step.why for step in self.trail)


class RepLoad(BaseModel):
    """Leads routed to a capped rep in its current local day and ISO week."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    day: date  # the rep's local date
    day_count: int = 0
    week: date  # Monday of the rep's local ISO week
    week_count: int = 0


class RoutingState(BaseModel):
    """What routing remembers between leads, per partition of the leads table.

    `credits`: team id -> rep id -> smooth weighted round-robin credit, for the members
    that could take the team's last lead. `load`: counts of capped reps, current day and
    week only. `last_seen`: when each rep last could take a team lead (processing time).
    `rotation`: round-robin positions of a model without `routing:` (the old `Rotation`).
    Bounded: one entry per team member and rep of the model in use.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    credits: dict[str, dict[str, int]] = {}
    load: dict[str, RepLoad] = {}
    last_seen: dict[str, datetime] = {}
    rotation: dict[str, int] = {}


def route(
    *,
    lead: LeadView,
    model: LeadModel,
    state: RoutingState,
    now: datetime,
) -> tuple[RouteDecision, RoutingState]:
    """Pick a rep for `lead`; returns the decision and the state to keep for the next lead.

    1. A lead keeps the rep it was routed to while that rep is in the model, even when the
       rep is away (the trail says so); a rep removed from the model loses it.
    2. The owner of the lead's account in the CRM, when a rep of the model.
    3. With `routing:`: the first rule whose `when` matches names a team; the lead goes to
       a member who can take it now (working in their time zone, no holiday or absence,
       under caps) by smooth weighted round-robin. When nobody can, to the member who can
       soonest. Without `routing:`: one rep per company domain, else territory
       round-robin (see `choose_rep`).
    4. The fallback rep.

    `now` is the processing time (timezone-aware): working hours and caps are about when
    the rep is asked to act, not when the lead's events happened.
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    now = now.astimezone(UTC)
    routing = model.routing
    trail: list[TrailStep] = []

    if lead.assigned_rep is None:
        trail.append(TrailStep("assigned", "skipped", "assigned: not routed before"))
    elif (kept := model.rep(lead.assigned_rep)) is None:
        trail.append(
            TrailStep(
                "assigned",
                "failed",
                f"assigned: {lead.assigned_rep} is no longer a rep of the model: routing again",
            )
        )
    else:
        why = f"assigned: kept by {kept.id}, routed earlier"
        away = _away(kept.id, routing, state, now)
        if away is not None:
            why += f" ({kept.id}: {away}; a rep keeps their leads while away)"
        trail.append(TrailStep("assigned", "matched", why))
        return RouteDecision(kept, "assigned", None, tuple(trail)), state

    if lead.account_owner is None:
        trail.append(TrailStep("account_owner", "skipped", "account owner: none in the CRM"))
    elif (owner := model.rep(lead.account_owner)) is None:
        trail.append(
            TrailStep(
                "account_owner",
                "failed",
                f"account owner: the CRM's owner {lead.account_owner} is not a rep of the model",
            )
        )
    else:
        trail.append(
            TrailStep("account_owner", "matched", f"account owner: {owner.id} owns the account")
        )
        decision = RouteDecision(owner, "account_owner", None, tuple(trail))
        return decision, _counted(state, owner.id, routing, now)

    if routing is None:
        return _legacy(lead, model, state, trail)

    reason = "no rule matched"
    for rule in routing.rules:
        matched, why = _matches(rule.when, lead, routing)
        trail.append(
            TrailStep(
                rule.id,
                "matched" if matched else "failed",
                f"rule {rule.id}: {why}: {'matched' if matched else 'no match'}",
            )
        )
        if not matched:
            continue
        picked = _pick(rule, routing.team_index[rule.team], routing, state, now, trail)
        if picked is not None:
            rep_id, state = picked
            rep = model.rep(rep_id)
            assert rep is not None  # team members are reps: checked by LeadModel
            return RouteDecision(rep, rule.id, rule.team, tuple(trail)), state
        reason = f"team {rule.team} cannot take it"
        break  # the first match wins, even when its team cannot take the lead

    fallback = model.rep(model.fallback_rep)
    assert fallback is not None  # guaranteed by LeadModel validation
    trail.append(TrailStep("fallback", "matched", f"fallback: {fallback.id} ({reason})"))
    decision = RouteDecision(fallback, "fallback", None, tuple(trail))
    return decision, _counted(state, fallback.id, routing, now)


# --- rules ------------------------------------------------------------------------------


def _matches(when: When, lead: LeadView, routing: Routing) -> tuple[bool, str]:
    """Whether every condition holds, and each condition's verdict in words."""
    verdicts: list[tuple[bool, str]] = []
    given = lead.traits.get("country")
    country = given.strip().upper() if isinstance(given, str) and given.strip() else None
    if when.countries:
        if country is None:
            verdicts.append((False, "no country"))
        else:
            ok = country in when.countries
            verdicts.append((ok, f"country {country} {_in(ok)} {_listed(when.countries)}"))
    if when.regions:
        if country is None:
            verdicts.append((False, "no country"))
        else:
            inside = [r for r in when.regions if country in routing.regions[r]]
            if inside:
                verdicts.append((True, f"country {country} in region {inside[0]}"))
            else:
                verdicts.append((False, f"country {country} not in {_regions(when.regions)}"))
    if when.min_employees is not None or when.max_employees is not None:
        employees = lead.traits.get("employees")
        band = _band(when.min_employees, when.max_employees)
        if (
            not isinstance(employees, int | float)
            or isinstance(employees, bool)
            or not math.isfinite(employees)
        ):
            verdicts.append((False, "company size unknown"))
        else:
            ok = (when.min_employees is None or employees >= when.min_employees) and (
                when.max_employees is None or employees <= when.max_employees
            )
            count = int(employees) if employees == int(employees) else employees
            verdicts.append((ok, f"{count} employees {_in(ok)} {band}"))
    if when.industries:
        industry = lead.traits.get("industry")
        if not isinstance(industry, str) or not industry.strip():
            verdicts.append((False, "no industry"))
        else:
            ok = industry.strip().lower() in when.industries
            verdicts.append((ok, f"industry {industry} {_in(ok)} {_listed(when.industries)}"))
    if when.score is not None:
        points = lead.scores.get(when.score.id, 0)
        ok = points >= when.score.min
        relation = "at least" if ok else "under"
        verdicts.append((ok, f"score {when.score.id} {points} {relation} {when.score.min}"))
    if not verdicts:
        return True, "always"
    return all(ok for ok, _ in verdicts), ", ".join(text for _, text in verdicts)


def _in(ok: bool) -> str:
    return "in" if ok else "not in"


def _listed(values: tuple[str, ...]) -> str:
    return f"[{', '.join(values)}]"


def _regions(names: tuple[str, ...]) -> str:
    return f"region {names[0]}" if len(names) == 1 else f"regions {', '.join(names)}"


def _band(low: int | None, high: int | None) -> str:
    if low is not None and high is not None:
        return f"{low}-{high}"
    return f"{low} or more" if low is not None else f"up to {high}"


# --- teams ------------------------------------------------------------------------------


def _pick(
    rule: RoutingRule,
    team: Team,
    routing: Routing,
    state: RoutingState,
    now: datetime,
    trail: list[TrailStep],
) -> tuple[str, RoutingState] | None:
    """The member who gets the lead and the new state; None when nobody ever can."""
    available: list[Member] = []
    for member in team.members:
        blocked = _blocked(member.rep, routing, state, now)
        if blocked is None:
            available.append(member)
        else:
            trail.append(TrailStep(rule.id, "failed", f"{member.rep}: {blocked[0]}"))
    if available:
        chosen, credits, notes = _smooth_wrr(available, state, team.id, now)
        among = ", ".join(f"{m.rep} (weight {m.weight})" for m in available)
        why = f"team {team.id}: {chosen} by weighted round-robin among {among}"
        if len(available) == 1:
            why = f"team {team.id}: {chosen}, the only member who can take it now"
        trail.append(TrailStep(rule.id, "matched", why + "".join(f"; {n}" for n in notes)))
        return chosen, _after_pick(state, team.id, credits, available, chosen, routing, now)

    soonest: datetime | None = None
    tied: list[Member] = []
    for member in team.members:
        at = _next_free(member.rep, routing, state, now)
        if at is None or (soonest is not None and at > soonest):
            continue
        if soonest is None or at < soonest:
            soonest, tied = at, []
        tied.append(member)
    if soonest is None:
        trail.append(
            TrailStep(
                rule.id,
                "failed",
                f"team {team.id}: nobody can take leads within {_HORIZON.days} days",
            )
        )
        return None
    chosen, credits, _ = _smooth_wrr(tied, state, team.id, now)
    schedule = routing.schedules.get(chosen)
    also = [m.rep for m in tied if m.rep != chosen]
    shared = f" (so is {', '.join(also)}: chosen by weighted round-robin)" if also else ""
    trail.append(
        TrailStep(
            rule.id,
            "matched",
            f"nobody in team {team.id} can take it now: next available is {chosen} at "
            f"{_local(soonest, schedule)}{shared}",
        )
    )
    return chosen, _after_pick(state, team.id, credits, tied, chosen, routing, now)


def _smooth_wrr(
    pool: list[Member], state: RoutingState, team: str, now: datetime
) -> tuple[str, dict[str, int], list[str]]:
    """Smooth weighted round-robin (nginx's): every member gains its weight, the richest
    is chosen and pays the pool's total weight. Over any run of total-weight leads with
    the same pool, each member gets exactly its weight.

    Fairness: members not in the pool earn nothing. One who joins it (new to the team,
    back from leave or from the night) starts at the pool's average credit: an even
    share from then on, never the leads it missed.
    """
    previous = state.credits.get(team, {})
    staying = [previous[m.rep] for m in pool if m.rep in previous]
    level = sum(staying) // len(staying) if staying else 0
    notes = []
    credits: dict[str, int] = {}
    for member in pool:
        if member.rep in previous:
            credits[member.rep] = previous[member.rep]
            continue
        credits[member.rep] = level
        if staying:  # someone was in the rotation already: say how the newcomer joins
            seen = state.last_seen.get(member.rep)
            back = (
                "joins the rotation"
                if seen is None
                else f"rejoins the rotation (last in it {_ago(now - seen)} ago)"
            )
            notes.append(f"{member.rep} {back}: starts level with the team, no catch-up")
    total = sum(m.weight for m in pool)
    for member in pool:
        credits[member.rep] += member.weight
    chosen = max(pool, key=lambda m: credits[m.rep]).rep  # ties: the first listed
    credits[chosen] -= total
    return chosen, credits, notes


def _ago(span: timedelta) -> str:
    if span >= timedelta(days=2):
        return f"{span.days} days"
    hours = int(span.total_seconds() // 3600)
    return f"{hours} hours" if hours >= 2 else f"{int(span.total_seconds() // 60)} minutes"


def _after_pick(
    state: RoutingState,
    team: str,
    credits: dict[str, int],
    pool: list[Member],
    chosen: str,
    routing: Routing,
    now: datetime,
) -> RoutingState:
    teams = {t.id for t in routing.teams}
    members = {m.rep for t in routing.teams for m in t.members}
    all_credits = {t: c for t, c in state.credits.items() if t in teams and t != team}
    all_credits[team] = credits
    seen = {rep: at for rep, at in state.last_seen.items() if rep in members}
    seen.update({m.rep: now for m in pool})
    updated = state.model_copy(update={"credits": all_credits, "last_seen": seen})
    return _counted(updated, chosen, routing, now)


# --- availability -----------------------------------------------------------------------


def _blocked(
    rep: str, routing: Routing, state: RoutingState, at: datetime, *, caps: bool = True
) -> tuple[str, datetime] | None:
    """Why `rep` cannot take a new lead at `at`, and the next moment worth checking again;
    None when it can."""
    schedule = routing.schedules.get(rep)
    if schedule is None:
        return None
    for start, end, absence in schedule.absences:
        if start <= at < end:
            return f"out of office until {absence.until_text}", end
    local = at.astimezone(schedule.zone)
    today = local.date()
    if today in schedule.holiday_set:
        return f"holiday on {today}", _midnight(today + timedelta(days=1), schedule)
    if routing.respect_working_hours and not _working(schedule, local):
        return (
            f"outside working hours: {local:%a %H:%M} in {schedule.timezone}, "
            f"works {schedule.hours_text}",
            _next_shift(schedule, local, at),
        )
    if caps:
        day_count, week_count = _counts(state.load.get(rep), schedule, local)
        if schedule.daily_cap is not None and day_count >= schedule.daily_cap:
            return (
                f"daily cap {schedule.daily_cap} reached",
                _midnight(today + timedelta(days=1), schedule),
            )
        if schedule.weekly_cap is not None and week_count >= schedule.weekly_cap:
            monday = today - timedelta(days=today.weekday())
            return (
                f"weekly cap {schedule.weekly_cap} reached",
                _midnight(monday + timedelta(days=7), schedule),
            )
    return None


def _away(rep: str, routing: Routing | None, state: RoutingState, now: datetime) -> str | None:
    """Why a rep who keeps a lead cannot act on it now (caps do not apply to kept leads)."""
    if routing is None:
        return None
    blocked = _blocked(rep, routing, state, now, caps=False)
    return None if blocked is None else blocked[0]


def _next_free(rep: str, routing: Routing, state: RoutingState, now: datetime) -> datetime | None:
    """The first moment from `now` at which `rep` can take a lead; None beyond the horizon."""
    at = now
    while at - now <= _HORIZON:
        blocked = _blocked(rep, routing, state, at)
        if blocked is None:
            return at
        at = max(blocked[1], at + timedelta(seconds=1))
    return None


def _working(schedule: Schedule, local: datetime) -> bool:
    minute = local.hour * 60 + local.minute
    return any(start <= minute < end for start, end in schedule.ranges[local.weekday()])


def _next_shift(schedule: Schedule, local: datetime, at: datetime) -> datetime:
    """The start of the rep's next working range after `at`."""
    for offset in range(8):
        day = local.date() + timedelta(days=offset)
        for start, _ in schedule.ranges[day.weekday()]:
            begins = wall_instant(
                datetime.combine(day, time()) + timedelta(minutes=start), schedule.zone
            )
            if begins > at:
                return begins
    return at + timedelta(days=7)  # unreachable: a schedule has some working hours


def _midnight(day: date, schedule: Schedule) -> datetime:
    return wall_instant(datetime.combine(day, time()), schedule.zone)


def _counts(load: RepLoad | None, schedule: Schedule, local: datetime) -> tuple[int, int]:
    """Leads routed to the rep today and this ISO week, both in its time zone."""
    if load is None:
        return 0, 0
    today = local.date()
    monday = today - timedelta(days=today.weekday())
    return (
        load.day_count if load.day == today else 0,
        load.week_count if load.week == monday else 0,
    )


def _counted(state: RoutingState, rep: str, routing: Routing | None, now: datetime) -> RoutingState:
    """`state` with one more lead for `rep` when the rep has a cap (others are not counted).

    Every lead routed to a capped rep counts, whatever the rule; only the team rotation
    stops at a cap (an account owner gets their account's leads over it).
    """
    if routing is None:
        return state
    schedule = routing.schedules.get(rep)
    if schedule is None or (schedule.daily_cap is None and schedule.weekly_cap is None):
        return state
    local = now.astimezone(schedule.zone)
    day_count, week_count = _counts(state.load.get(rep), schedule, local)
    today = local.date()
    load = {r: counts for r, counts in state.load.items() if r in routing.schedules and r != rep}
    load[rep] = RepLoad(
        day=today,
        day_count=day_count + 1,
        week=today - timedelta(days=today.weekday()),
        week_count=week_count + 1,
    )
    return state.model_copy(update={"load": load})


def _local(at: datetime, schedule: Schedule | None) -> str:
    if schedule is None:
        return f"{at:%Y-%m-%d %H:%M} UTC"
    return f"{at.astimezone(schedule.zone):%a %Y-%m-%d %H:%M} {schedule.timezone}"


# --- without a routing section: the chain of earlier releases ---------------------------


@dataclass(frozen=True, slots=True)
class Route:
    rep: Rep
    rule: str  # account_owner | account_domain | territory_round_robin | fallback


def choose_rep(
    traits: Mapping[str, TraitValue],
    model: LeadModel,
    rotation: Mapping[str, int],
    *,
    owner: str | None = None,
) -> tuple[Route, dict[str, int]]:
    """Pick a rep the way releases before `routing:` did; returns the route and the
    updated round-robin positions. Ignores the model's `routing:` section.

    0. A lead matched to a CRM account whose owner is one of the model's reps goes to that
       owner (`owner`): the CRM is the record of who works which account.
    1. A lead with a company domain goes to that account's owner: the matching rep that
       wins rendezvous hashing on the domain. Every partition computes the same owner with
       no coordination, so all contacts of one account reach one rep, and adding a rep
       moves only the accounts it wins.
    2. Otherwise round-robin among reps whose territory matches.
    3. Otherwise the fallback rep (a queue with an owner).
    """
    if owner is not None and (crm_owner := model.rep(owner)) is not None:
        return Route(crm_owner, "account_owner"), dict(rotation)
    rep, rule, new_rotation, _ = _territory(traits, model, rotation)
    return Route(rep, rule), new_rotation


def _territory(
    traits: Mapping[str, TraitValue], model: LeadModel, rotation: Mapping[str, int]
) -> tuple[Rep, str, dict[str, int], str]:
    """Rendezvous owner of the company domain, else territory round-robin, else fallback;
    with the sentence that says why."""
    candidates = [
        rep for rep in model.reps if rep.id != model.fallback_rep and _covers(rep.territory, traits)
    ]
    fallback = model.rep(model.fallback_rep)
    assert fallback is not None  # guaranteed by LeadModel validation
    if not candidates:
        return (
            fallback,
            "fallback",
            dict(rotation),
            f"fallback: {fallback.id} (no rep's territory covers the lead)",
        )
    names = ", ".join(rep.id for rep in candidates)
    domain = account_domain(traits, model)
    if domain is not None:
        winner = max(candidates, key=lambda rep: _weight(domain, rep.id))
        why = f"account domain: {domain} belongs to {winner.id} (one rep of {names} per domain)"
        return winner, "account_domain", dict(rotation), why
    pool = ",".join(rep.id for rep in candidates)
    position = rotation.get(pool, 0) % len(candidates)
    chosen = candidates[position]
    why = f"territory: {chosen.id} by round-robin among {names}"
    return chosen, "territory_round_robin", {**rotation, pool: position + 1}, why


def _legacy(
    lead: LeadView, model: LeadModel, state: RoutingState, trail: list[TrailStep]
) -> tuple[RouteDecision, RoutingState]:
    rep, rule, rotation, why = _territory(lead.traits, model, state.rotation)
    trail.append(TrailStep(rule, "matched", why))
    decision = RouteDecision(rep, rule, None, tuple(trail))
    if rotation == state.rotation:
        return decision, state
    return decision, state.model_copy(update={"rotation": rotation})


def _covers(territory: Territory, traits: Mapping[str, TraitValue]) -> bool:
    if territory.countries:
        country = traits.get("country")
        if not isinstance(country, str) or country not in territory.countries:
            return False
    employees = traits.get("employees")
    if territory.min_employees is not None or territory.max_employees is not None:
        if not isinstance(employees, int):
            return False
        if territory.min_employees is not None and employees < territory.min_employees:
            return False
        if territory.max_employees is not None and employees > territory.max_employees:
            return False
    return True


def _weight(domain: str, rep_id: str) -> int:
    digest = hashlib.blake2b(f"{domain}\x00{rep_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")
