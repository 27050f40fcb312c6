"""The lead core: apply engagement events to lead state and decide what to emit.

Pure: no Faust, Kafka, metrics or clock. `apply_batch` is what the agent calls, once
per micro-batch; `apply_event` is the rule for one event.
"""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from schemas.decisions import (
    SCHEMA_VERSION,
    UNKNOWN,
    Activity,
    BreakdownLine,
    HandOff,
    LeadScored,
    RepAlert,
    trusted,
)
from schemas.internal import PersonEvent, TraitValue
from streams.lead_model import LeadModel
from streams.routing import account_domain, choose_rep
from streams.scoring import Fire, add_engagement, breakdown, is_known, stage_for, update_triggers
from streams.state import LeadState

__all__ = [
    "Applied",
    "BatchResult",
    "Decision",
    "Limits",
    "apply_batch",
    "apply_event",
    "lead_id_for",
]

Decision = LeadScored | HandOff | RepAlert

_MAX_ANONYMOUS_IDS = 5


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds on per-lead state (from settings)."""

    dedupe_window: int = 32
    activity_kept: int = 10


@dataclass(frozen=True, slots=True)
class Applied:
    lead: LeadState
    decisions: tuple[Decision, ...]
    rotation: dict[str, int]
    duplicate: bool = False


@dataclass(slots=True)
class BatchResult:
    """What one micro-batch changed: leads to write once, records to send, counts."""

    leads: dict[str, LeadState] = field(default_factory=dict)
    decisions: list[Decision] = field(default_factory=list)
    rotation: dict[str, int] = field(default_factory=dict)
    duplicates: int = 0
    failed: list[tuple[PersonEvent, str]] = field(default_factory=list)  # (event, error)


def lead_id_for(person_key: str) -> str:
    """Stable, opaque lead id (no PII in keys or logs)."""
    return "ld_" + hashlib.blake2b(person_key.encode("utf-8"), digest_size=8).hexdigest()


def _digest(message_id: str) -> str:
    """64 bits of the messageId (CRC-32 and Adler-32, both C), 16 hex chars.

    Compared only within one lead's window of recent ids, so a false duplicate needs two
    of ~32 ids to collide in 64 bits; a cryptographic hash would cost 5x more per event.
    """
    data = message_id.encode("utf-8")
    return f"{zlib.crc32(data):08x}{zlib.adler32(data):08x}"


def _stable_id(*parts: str) -> str:
    return hashlib.blake2b("\x00".join(parts).encode("utf-8"), digest_size=12).hexdigest()


def _NEW(*, lead_id: str, pk: str) -> LeadState:
    return LeadState(lead_id=lead_id, pk=pk)


def _replace(lead: LeadState, changes: dict[str, object]) -> LeadState:
    """A copy with `changes`, unvalidated: every value comes from the core itself.

    (model_construct instead of model_copy: a third of the cost on the hot path.)
    """
    return trusted(LeadState, {**lead.__dict__, **changes})


def _ms_to_dt(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def apply_batch(
    leads: Mapping[str, LeadState | None],
    events: Iterable[PersonEvent],
    *,
    model: LeadModel,
    rotation: Mapping[str, int],
    limits: Limits,
    now: datetime,
    apply: Callable[..., Applied] | None = None,
) -> BatchResult:
    """Apply events in order; each changed lead appears once in the result.

    An event the core fails on (a bug, by definition) is set aside in `failed` with the
    error, and its lead keeps the state it had: one bad event must not block a partition.
    `apply` replaces `apply_event` in tests.
    """
    apply = apply or apply_event
    result = BatchResult(rotation=dict(rotation))
    for event in events:
        current = result.leads.get(event.pk) or leads.get(event.pk)
        try:
            applied = apply(
                current, event, model=model, rotation=result.rotation, limits=limits, now=now
            )
        except Exception as exc:
            result.failed.append((event, f"{type(exc).__name__}: {exc}"))
            continue
        if applied.duplicate:
            result.duplicates += 1
            continue
        result.leads[event.pk] = applied.lead
        result.decisions.extend(applied.decisions)
        result.rotation = applied.rotation
    return result


def apply_event(
    lead: LeadState | None,
    event: PersonEvent,
    *,
    model: LeadModel,
    rotation: Mapping[str, int],
    limits: Limits,
    now: datetime,
) -> Applied:
    """One event: dedupe, identity, score, triggers, routing; the decisions it causes."""
    digest = _digest(event.mid)
    if lead is not None and digest in lead.seen:
        return Applied(lead, (), dict(rotation), duplicate=True)
    if lead is None:
        lead = _NEW(lead_id=lead_id_for(event.pk), pk=event.pk)

    aids = lead.aids
    if event.aid and event.aid not in aids:
        aids = (*aids, event.aid)[-_MAX_ANONYMOUS_IDS:]
    uid = event.uid or lead.uid
    traits = {**lead.traits, **event.traits}
    rules = add_engagement(lead.rules, event, model)
    hits, fired, fires = update_triggers(lead.hits, lead.fired, event, model)
    score, lines = breakdown(rules, traits, model)
    known = is_known(uid, traits)

    # A trigger that fires while the visitor is anonymous waits until we know who it is.
    pending_fires = [Fire(t, m, ts) for t, m, ts in lead.pending]
    to_alert = (pending_fires + fires) if known else []
    pending = (
        () if known else lead.pending + tuple((f.trigger, f.message_id, f.ts_ms) for f in fires)
    )
    became_mql = known and lead.mql_ms is None and score >= model.mql_threshold
    mql_ms = event.ts_ms if became_mql else lead.mql_ms
    stage = stage_for(known=known, score=score, engaged=bool(rules), mql=mql_ms is not None)

    new = _replace(
        lead,
        {
            "aids": aids,
            "uid": uid,
            "traits": traits,
            "rules": rules,
            "hits": hits,
            "fired": fired,
            "pending": pending,
            "score": score,
            "stage": stage,
            "mql_ms": mql_ms,
            "activity": _add_activity(lead.activity, event, limits.activity_kept),
            "seen": (*lead.seen, digest)[-limits.dedupe_window :],
        },
    )
    decisions: list[Decision] = []
    event_at = _ms_to_dt(event.ts_ms)
    if score != lead.score or stage != lead.stage:
        decisions.append(
            trusted(
                LeadScored,
                dict(
                    schema_version=SCHEMA_VERSION,
                    lead_id=new.lead_id,
                    score=score,
                    previous_score=lead.score,
                    breakdown=lines,
                    stage=stage,
                    previous_stage=lead.stage,
                    model_version=model.version,
                    message_id=event.mid,
                    occurred_at=event_at,
                    created_at=now,
                ),
            )
        )
    new_rotation = dict(rotation)
    if to_alert or became_mql:
        if new.rep is None or model.rep(new.rep) is None:
            route, new_rotation = choose_rep(traits, model, rotation)
            new = _replace(new, {"rep": route.rep.id, "route_rule": route.rule})
        decisions.extend(
            _hand_off(new, to_alert, became_mql, lines, model=model, event=event, now=now)
        )
    return Applied(new, tuple(decisions), new_rotation)


def _hand_off(
    lead: LeadState,
    fires: list[Fire],
    became_mql: bool,
    lines: tuple[BreakdownLine, ...],
    *,
    model: LeadModel,
    event: PersonEvent,
    now: datetime,
) -> list[Decision]:
    rep = model.rep(lead.rep or "")
    assert rep is not None
    traits = lead.traits
    who = _text(traits.get("name")) or _full_name(traits) or _text(traits.get("email"))
    who = who or lead.lead_id
    event_at = _ms_to_dt(event.ts_ms)
    out: list[Decision] = [
        trusted(
            HandOff,
            dict(
                schema_version=SCHEMA_VERSION,
                handoff_id=_stable_id(lead.lead_id, "handoff", event.mid),
                lead_id=lead.lead_id,
                reason="hot_trigger" if fires else "mql",
                trigger=fires[0].trigger if fires else None,
                email=_text(traits.get("email")),
                name=_text(traits.get("name")) or _full_name(traits),
                company=_text(traits.get("company")),
                account_domain=account_domain(traits, model),
                rep_id=rep.id,
                rep_name=rep.name,
                rep_email=rep.email,
                routing_rule=lead.route_rule or "fallback",
                score=lead.score,
                breakdown=lines,
                stage=lead.stage,
                purchase_timeline=_text(traits.get("purchase_timeline")) or UNKNOWN,
                budget=_text(traits.get("budget")) or UNKNOWN,
                authority=_text(traits.get("authority")) or UNKNOWN,
                recent_activity=tuple(
                    trusted(Activity, dict(at=_ms_to_dt(ms), kind=kind, label=label))
                    for ms, kind, label in reversed(lead.activity)
                ),
                model_version=model.version,
                created_at=now,
            ),
        )
    ]
    triggers = {t.id: t for t in model.triggers}
    alerts = [
        (f.trigger, f.message_id, triggers[f.trigger].message)
        for f in fires
        if f.trigger in triggers
    ]
    if became_mql and not fires:
        alerts.append(("mql", event.mid, f"became a marketing-qualified lead (score {lead.score})"))
    for trigger, message_id, what in alerts:
        out.append(
            trusted(
                RepAlert,
                dict(
                    schema_version=SCHEMA_VERSION,
                    alert_id=_stable_id(lead.lead_id, trigger, message_id),
                    rep_id=rep.id,
                    rep_name=rep.name,
                    rep_email=rep.email,
                    lead_id=lead.lead_id,
                    email=_text(traits.get("email")),
                    company=_text(traits.get("company")),
                    trigger=trigger,
                    message=f"{who} {what}",
                    score=lead.score,
                    model_version=model.version,
                    event_at=event_at,
                    created_at=now,
                ),
            )
        )
    return out


def _add_activity(
    activity: tuple[tuple[int, str, str], ...], event: PersonEvent, kept: int
) -> tuple[tuple[int, str, str], ...]:
    if event.kind in ("track", "page"):
        label = event.name
    elif event.kind == "identify":
        label = "identified" + (f" as {event.traits['email']}" if event.traits.get("email") else "")
    else:
        label = f"joined account {event.traits.get('company') or ''}".rstrip()
    item = (event.ts_ms, event.kind, label)
    if not activity or activity[-1][0] <= event.ts_ms:  # the usual case: in order
        return (*activity, item)[-kept:]
    return tuple(sorted((*activity, item), key=lambda a: a[0]))[-kept:]


def _text(value: TraitValue) -> str | None:
    if value is None or isinstance(value, bool):
        return None
    return str(value)


def _full_name(traits: Mapping[str, TraitValue]) -> str | None:
    parts = [_text(traits.get("first_name")), _text(traits.get("last_name"))]
    joined = " ".join(p for p in parts if p)
    return joined or None
