"""The hand-off SLA: a clock per handed-off lead, with reminder, escalation and reassignment.

Pure: the clock (processing time, `now`) is passed in. The clock starts when a lead is handed
off, stops when the rep reports anything (accepted, contacted, rejected...), and otherwise
moves through the steps of the priority's policy; each step is an `SlaEvent`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, time, timedelta

from schemas.decisions import SCHEMA_VERSION, RepAlert, SlaEvent
from schemas.internal import LeadState
from streams.construct import trusted
from streams.lead_model import LeadModel, Rep, SlaPolicy
from streams.routing_model import Schedule, wall_instant

__all__ = [
    "STEPS",
    "SlaClocks",
    "add_working_minutes",
    "due_ms",
    "sla_alert",
    "sla_started",
    "sla_stopped",
    "step_due",
]

#: The steps after `started`, in order.
STEPS = ("reminded", "escalated", "reassigned")

Clock = tuple[str, str, str, int, int]  # (handoff id, priority, rep, started ms, steps taken)


def _policy(model: LeadModel, priority: str) -> SlaPolicy | None:
    if model.sla is None:
        return None
    return model.sla.hot if priority == "hot" else model.sla.mql


def _minutes(policy: SlaPolicy) -> tuple[float | None, ...]:
    return (
        policy.remind_after_minutes,
        policy.escalate_after_minutes,
        policy.reassign_after_minutes,
    )


def due_ms(clock: Clock, model: LeadModel) -> int | None:
    """When the clock's next step falls due, or None when it has no step left."""
    _, priority, rep, started_ms, taken = clock
    policy = _policy(model, priority)
    if policy is None:
        return None
    for index in range(taken, len(STEPS)):
        minutes = _minutes(policy)[index]
        if minutes is not None:
            schedule = _schedule(model, rep) if policy.working_hours else None
            if schedule is None:
                return started_ms + int(minutes * 60_000)
            due = add_working_minutes(_dt(started_ms), minutes, schedule)
            return int(due.timestamp() * 1000)
    return None


def _schedule(model: LeadModel, rep: str) -> Schedule | None:
    return model.routing.schedules.get(rep) if model.routing is not None else None


def add_working_minutes(start: datetime, minutes: float, schedule: Schedule) -> datetime:
    """`start` plus `minutes` of the rep's working time (their hours, in their time zone,
    holidays off): a hand-off at 17:50 on a Friday with 30 minutes is due 09:20 Monday."""
    zone = schedule.zone
    remaining = minutes
    first = start.astimezone(zone).date()
    for offset in range(400):
        day = first + timedelta(days=offset)
        if day in schedule.holidays:
            continue
        midnight = datetime.combine(day, time())
        for begin, end in schedule.ranges[day.weekday()]:
            opens = wall_instant(midnight + timedelta(minutes=begin), zone)
            closes = wall_instant(midnight + timedelta(minutes=end), zone)
            if closes <= start:
                continue
            since = max(opens, start)
            span = (closes - since).total_seconds() / 60
            if span >= remaining:
                return since + timedelta(minutes=remaining)
            remaining -= span
    return start + timedelta(minutes=minutes)  # no working time in 400 days: wall clock


def sla_started(
    lead: LeadState, *, handoff_id: str, priority: str, rep: str, model: LeadModel, now: datetime
) -> tuple[Clock | None, list[SlaEvent]]:
    """A hand-off starts the clock (unless the model has no SLA for it)."""
    if _policy(model, priority) is None:
        return None, []
    clock: Clock = (handoff_id, priority, rep, _ms(now), 0)
    return clock, [_event(lead, clock, "started", model=model, now=now, reason="handed off")]


def sla_stopped(
    lead: LeadState, clock: Clock, *, status: str, at: datetime, model: LeadModel, now: datetime
) -> SlaEvent:
    """The rep reported back: the clock stops (accepted and contacted count as accepting)."""
    step = "accepted" if status in ("accepted", "contacted") else "stopped"
    waited = max(0.0, (_ms(at) - clock[3]) / 1000)
    stopped: Clock = (clock[0], clock[1], clock[2], clock[3], len(STEPS))
    return _event(
        lead,
        stopped,
        step,
        model=model,
        now=now,
        reason=f"the rep reported {status}",
        time_to_accept_s=waited if step == "accepted" else None,
    )


def step_due(
    lead: LeadState, clock: Clock, *, model: LeadModel, now: datetime, next_rep: Rep | None
) -> tuple[Clock | None, str | None, list[SlaEvent | RepAlert]]:
    """Take the clock's next step if it is due at `now`.

    Returns the clock after it (None once the lead moved to another rep: the caller starts
    a new clock with the new hand-off), the rep the lead moves to (a reassignment to
    `next_rep`), and the records: the step's `SlaEvent` and the alert it sends (a reminder
    to the rep, a note to the manager; the next rep's alert comes with the new hand-off).
    """
    due = due_ms(clock, model)
    if due is None or _ms(now) < due:
        return clock, None, []
    handoff_id, priority, rep_id, started_ms, taken = clock
    policy = _policy(model, priority)
    assert policy is not None  # due_ms found a step
    index = next(i for i in range(taken, len(STEPS)) if _minutes(policy)[i] is not None)
    step, minutes = STEPS[index], _minutes(policy)[index]
    waited = f"{minutes:g} minutes"
    rep = model.rep(rep_id)
    name = rep.name if rep is not None else rep_id
    after: Clock = (handoff_id, priority, rep_id, started_ms, index + 1)
    if step == "reminded":
        reason = f"not accepted after {waited}"
        records: list[SlaEvent | RepAlert] = [
            _event(lead, after, step, model=model, now=now, reason=reason)
        ]
        if rep is not None:
            records.append(
                sla_alert(lead, rep, "sla-reminder", f"still waits for you: {reason}", model, now)
            )
        return after, None, records
    if step == "escalated":
        manager = model.rep(_manager(lead, model))
        reason = f"{name} has not accepted after {waited}"
        records = [
            _event(
                lead,
                after,
                step,
                model=model,
                now=now,
                reason=reason,
                to_rep=manager.id if manager else None,
            )
        ]
        if manager is not None:
            records.append(
                sla_alert(lead, manager, "sla-escalation", f"is waiting: {reason}", model, now)
            )
        return after, None, records
    reason = f"{name} did not accept within {waited}"
    if next_rep is not None and next_rep.id != rep_id:
        event = _event(lead, after, step, model=model, now=now, reason=reason, to_rep=next_rep.id)
        return None, next_rep.id, [event]
    reason += "; no other rep can take it"
    return after, None, [_event(lead, after, step, model=model, now=now, reason=reason)]


def _manager(lead: LeadState, model: LeadModel) -> str:
    """Who hears an escalation: the manager of the team that routed the lead, else the
    SLA's `escalate_to`, else the fallback rep."""
    if model.routing is not None and lead.route_team is not None:
        for team in model.routing.teams:
            if team.id == lead.route_team and team.manager is not None:
                return team.manager
    return (model.sla.escalate_to if model.sla else None) or model.fallback_rep


def _event(
    lead: LeadState,
    clock: Clock,
    step: str,
    *,
    model: LeadModel,
    now: datetime,
    reason: str,
    to_rep: str | None = None,
    time_to_accept_s: float | None = None,
) -> SlaEvent:
    handoff_id, priority, rep_id, started_ms, _ = clock
    due = due_ms(clock, model) if step not in ("accepted", "stopped") else None
    return trusted(
        SlaEvent,
        dict(
            schema_version=SCHEMA_VERSION,
            lead_id=lead.lead_id,
            handoff_id=handoff_id,
            priority=priority,
            step=step,
            rep_id=rep_id,
            to_rep_id=to_rep,
            started_at=_dt(started_ms),
            due_at=_dt(due) if due is not None else None,
            time_to_accept_s=time_to_accept_s,
            reason=reason,
            model_version=model.version,
            created_at=now,
        ),
    )


def sla_alert(
    lead: LeadState, rep: Rep, trigger: str, what: str, model: LeadModel, now: datetime
) -> RepAlert:
    who = lead.traits.get("name") or lead.traits.get("email") or lead.lead_id
    return trusted(
        RepAlert,
        dict(
            schema_version=SCHEMA_VERSION,
            alert_id=hashlib.blake2b(
                f"{lead.lead_id}\x00{trigger}\x00{lead.sla}".encode(), digest_size=12
            ).hexdigest(),
            rep_id=rep.id,
            rep_name=rep.name,
            rep_email=rep.email,
            lead_id=lead.lead_id,
            email=lead.traits.get("email") if isinstance(lead.traits.get("email"), str) else None,
            company=(
                lead.traits.get("company") if isinstance(lead.traits.get("company"), str) else None
            ),
            trigger=trigger,
            message=f"{who} {what}",
            score=lead.score,
            model_version=model.version,
            event_at=now,
            created_at=now,
        ),
    )


def _ms(at: datetime) -> int:
    return int(at.timestamp() * 1000)


def _dt(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


class SlaClocks:
    """Which leads of each partition have a running clock, and when its next step is due.

    In memory only: the clocks themselves are in the leads (the table), so a worker given
    a partition rebuilds this from it (`rebuild`) and a restart loses nothing.
    """

    def __init__(self) -> None:
        self._due: dict[int, dict[str, int]] = {}

    def knows(self, partition: int) -> bool:
        return partition in self._due

    def rebuild(self, partition: int, leads: Mapping[str, LeadState], model: LeadModel) -> None:
        self._due[partition] = {}
        self.note(partition, leads, model)

    def note(self, partition: int, leads: Mapping[str, LeadState], model: LeadModel) -> None:
        due = self._due.get(partition)
        if due is None:
            return  # not built yet: `rebuild` will read these from the table
        for pk, lead in leads.items():
            when = due_ms(lead.sla, model) if lead.sla is not None else None
            if when is None:
                due.pop(pk, None)
            else:
                due[pk] = when

    def drop(self, partition: int, keys: Iterable[str]) -> None:
        """Leads that are gone (erased): their clocks with them."""
        due = self._due.get(partition)
        if due is not None:
            for pk in keys:
                due.pop(pk, None)

    def due(self, partition: int, now_ms: int) -> list[str]:
        return [pk for pk, when in self._due.get(partition, {}).items() if when <= now_ms]

    def forget(self, partitions: Iterable[int]) -> None:
        for partition in partitions:
            self._due.pop(partition, None)
