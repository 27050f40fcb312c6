"""The lead core: apply engagement events to lead state and decide what to emit.

Pure: no Faust, Kafka, metrics or clock. `apply_batch` is what the agent calls, once
per micro-batch; `apply_event` is the rule for one event.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final, final
from zlib import adler32, crc32

from schemas.decisions import (
    SCHEMA_VERSION,
    Activity,
    BreakdownLine,
    HandOff,
    LeadForgotten,
    LeadMerged,
    LeadScored,
    RepAlert,
    SlaEvent,
    Stage,
)
from schemas.feedback import SalesFeedback
from schemas.internal import (
    ContactUpdate,
    FeedbackIn,
    Forget,
    LeadState,
    Link,
    MergeIn,
    MergeRequest,
    PersonEvent,
    TraitValue,
    Unlink,
)
from streams.construct import trusted
from streams.lead_model import Grade, LeadModel, Rep, grade_at_least
from streams.matching import AccountDirectory, free_mail_domains
from streams.normalize import (
    DEFAULT_EMAIL_RULES,
    EmailRules,
    email_identity,
    normalize_traits,
)
from streams.qualify import qualify
from streams.routing import LeadView, RoutingState, choose_rep, route
from streams.scoring import (
    SALES_STAGES,
    DecayState,
    Engagement,
    Fire,
    account_domain,
    add_engagement,
    decayed,
    fit_of,
    is_known,
    named_scores,
    next_stage,
    update_triggers,
)
from streams.sla import due_ms as sla_due_ms
from streams.sla import sla_alert, sla_started, sla_stopped, step_due

__all__ = [
    "DIGEST_CHARS",
    "Applied",
    "BatchResult",
    "Decision",
    "Limits",
    "apply_batch",
    "apply_event",
    "apply_feedback",
    "apply_outcome",
    "identity_keys",
    "lead_id_for",
    "leave_account",
    "merge_leads",
    "rescore_lead",
    "seen_digests",
    "sla_tick",
    "with_accounts",
]

Decision = (
    LeadScored
    | HandOff
    | RepAlert
    | ContactUpdate
    | LeadMerged
    | LeadForgotten
    | SlaEvent
    # identity graph messages to other entries (streams/identity.py)
    | PersonEvent
    | Link
    | MergeRequest
    | MergeIn
    | FeedbackIn
    | Forget
    | Unlink
)

_MAX_ANONYMOUS_IDS = 5


_ACTIVITY_ON_HANDOFF = 10


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds on per-lead state, and normalization defaults (from settings)."""

    dedupe_window: int = 32
    history_kept: int = 20
    # Activity older than this by the lead's clock leaves its history (0: no time limit).
    activity_retention_ms: int = 0
    email_rules: EmailRules = DEFAULT_EMAIL_RULES  # which providers ignore dots, +tags
    phone_region: str | None = None  # for national-format phones of leads with no country
    fiscal_year_start_month: int = 1  # "this quarter", 今期: fiscal periods
    # CRM accounts to match leads to. Not a setting: the worker passes the directory in
    # use for each batch (`crm.accounts` changes it at run time).
    accounts: AccountDirectory | None = None


@final
class Applied:
    """One event's outcome; never changed once built.

    A plain class: compiled, mypyc builds it natively (a named tuple's `__new__`, or a
    dataclass's `__init__`, runs interpreted: ~2,500 instructions, once per event).
    """

    __slots__ = ("decisions", "duplicate", "lead", "rotation")

    def __init__(
        self,
        lead: LeadState,
        decisions: tuple[Decision, ...],
        rotation: RoutingState,
        duplicate: bool = False,
    ) -> None:
        self.lead: Final = lead
        self.decisions: Final = decisions
        self.rotation: Final = rotation
        self.duplicate: Final = duplicate


@dataclass(slots=True)
class BatchResult:
    """What one micro-batch changed: leads to write once, records to send, counts."""

    leads: dict[str, LeadState] = field(default_factory=dict)
    decisions: list[Decision] = field(default_factory=list)
    rotation: RoutingState = field(default_factory=RoutingState)
    duplicates: int = 0
    failed: list[tuple[PersonEvent, str]] = field(default_factory=list)  # (event, error)
    # Feedback that cannot be used: (feedback, DLQ reason, message), for the DLQ.
    rejected: list[tuple[FeedbackIn, str, str]] = field(default_factory=list)
    # Feedback applied, with the lead after it: the won amounts and rejection reasons the
    # KPI metrics count (the decisions alone carry neither).
    feedback: list[tuple[SalesFeedback, LeadState]] = field(default_factory=list)
    # Entries erased (a forgotten lead, its identifiers' aliases): deleted from the table,
    # a tombstone on its changelog. A key erased and then written again is in `leads` only.
    deleted: set[str] = field(default_factory=set)


def as_state(rotation: RoutingState | Mapping[str, int]) -> RoutingState:
    """Routing state, from the state itself or a bare round-robin mapping (older callers)."""
    if isinstance(rotation, RoutingState):
        return rotation
    return RoutingState(rotation=dict(rotation))


def with_accounts(limits: Limits, accounts: AccountDirectory | None) -> Limits:
    """`limits` with the CRM account directory in use now (cheap when it is the same)."""
    if limits.accounts is accounts:
        return limits
    return dataclasses.replace(limits, accounts=accounts)


def lead_id_for(person_key: str) -> str:
    """Stable, opaque lead id (no PII in keys or logs)."""
    return "ld_" + hashlib.blake2b(person_key.encode("utf-8"), digest_size=8).hexdigest()


def _digest(message_id: str) -> str:
    """64 bits of the messageId (CRC-32 and Adler-32, both C), 16 hex chars.

    Compared only within one lead's window of recent ids, so a false duplicate needs two
    of ~32 ids to collide in 64 bits; a cryptographic hash would cost 5x more per event.
    """
    data = message_id.encode("utf-8")
    # Both as 8 hex digits, CRC first (half the cost of an f-string with two formats).
    return ((crc32(data) << 32) | adler32(data)).to_bytes(8, "big").hex()


#: The length of a digest in a lead's `seen`, which holds them end to end.
DIGEST_CHARS = 16


def _seen(seen: str, digest: str) -> bool:
    """Whether `digest` is one of the digests in `seen` (a match across two is not)."""
    at = seen.find(digest)
    while at >= 0:
        if at % DIGEST_CHARS == 0:
            return True
        at = seen.find(digest, at + 1)
    return False


def seen_digests(lead: LeadState) -> tuple[str, ...]:
    """The digests of the messageIds a lead remembers, oldest first."""
    return tuple(lead.seen[i : i + DIGEST_CHARS] for i in range(0, len(lead.seen), DIGEST_CHARS))


def _stable_id(*parts: str) -> str:
    return hashlib.blake2b("\x00".join(parts).encode("utf-8"), digest_size=12).hexdigest()


#: A new lead's fields. Sharing the empty containers is safe: state is never mutated in
#: place. (Validating a new LeadState deep-copies every mutable default: 5 us a lead.)
_NEW_LEAD: dict[str, object] = LeadState(lead_id="", pk="").__dict__


def _NEW(*, lead_id: str, pk: str, first_ms: int = 0) -> LeadState:
    return trusted(LeadState, {**_NEW_LEAD, "lead_id": lead_id, "pk": pk, "first_ms": first_ms})


def _replace(lead: LeadState, changes: dict[str, object]) -> LeadState:
    """A copy with `changes`, unvalidated: every value comes from the core itself.

    (model_construct instead of model_copy: a third of the cost on the hot path.)
    """
    return trusted(LeadState, {**lead.__dict__, **changes})


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)


def _ms_to_dt(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def apply_batch(
    leads: Mapping[str, LeadState | None],
    events: Iterable[PersonEvent],
    *,
    model: LeadModel,
    rotation: RoutingState | Mapping[str, int],
    limits: Limits,
    now: datetime,
    apply: Callable[..., Applied] | None = None,
) -> BatchResult:
    """Apply events in order; each changed lead appears once in the result.

    An event the core fails on (a bug, by definition) is set aside in `failed` with the
    error, and its lead keeps the state it had: one bad event must not block a partition.
    `apply` replaces `apply_event` in tests.
    """
    result = BatchResult(rotation=as_state(rotation))
    for event in events:
        pk = event.pk
        current = result.leads.get(pk) or leads.get(pk)
        try:
            if apply is None:  # a direct call: compiled, it skips the keyword-argument parsing
                applied = apply_event(
                    current, event, model=model, rotation=result.rotation, limits=limits, now=now
                )
            else:
                applied = apply(
                    current, event, model=model, rotation=result.rotation, limits=limits, now=now
                )
        except Exception as exc:
            result.failed.append((event, f"{type(exc).__name__}: {exc}"))
            continue
        if applied.duplicate:
            result.duplicates += 1
            continue
        result.leads[pk] = applied.lead
        result.decisions.extend(applied.decisions)
        result.rotation = applied.rotation
    return result


def apply_event(
    lead: LeadState | None,
    event: PersonEvent,
    *,
    model: LeadModel,
    rotation: RoutingState | Mapping[str, int],
    limits: Limits,
    now: datetime,
) -> Applied:
    """One event: dedupe, identity, score, triggers, stage, routing; the decisions it causes."""
    fields = event.__dict__  # the hot path reads fields as dict items (see _seen_only)
    digest = _digest(fields["mid"])
    read_at = _read_at(event)
    if lead is not None:
        state = lead.__dict__
        alias_of = state["alias_of"]
        if alias_of is not None:
            # This identifier belongs to another lead now (a merge): the event goes there.
            forwarded = trusted(PersonEvent, {**fields, "pk": alias_of})
            return Applied(lead, (forwarded,), as_state(rotation))
        offsets: dict[str, int] = state["applied"]
        if _seen(state["seen"], digest) or (
            read_at is not None and offsets.get(read_at[0], -1) >= read_at[1]
        ):
            return Applied(lead, (), as_state(rotation), duplicate=True)
    if lead is None:
        pk: str = fields["pk"]
        lead = _NEW(lead_id=lead_id_for(pk), pk=pk, first_ms=fields["ts_ms"])
    elif lead.__dict__["model"] != model.version:
        lead = _migrate(lead, model)

    seen_only = _seen_only(lead, event, digest, read_at, model=model, limits=limits)
    if seen_only is not None:
        return Applied(seen_only, (), as_state(rotation))

    # Both models' fields as dict items from here on too (see _seen_only).
    state = lead.__dict__
    ts_ms: int = fields["ts_ms"]
    last_ms: int = state["last_ms"]
    clock = max(last_ms, ts_ms)
    aids: tuple[str, ...] = state["aids"]
    aid: str | None = fields["aid"]
    if aid and aid not in aids:
        aids = (*aids, aid)[-_MAX_ANONYMOUS_IDS:]
    uid: str | None = fields["uid"] or state["uid"]
    new_traits: dict[str, TraitValue] = fields["traits"]
    traits: dict[str, TraitValue] = state["traits"]
    if new_traits:
        traits = {**traits, **new_traits}
        if "phone" in new_traits:  # E.164 in the lead's country (known only here)
            traits = normalize_traits(traits, default_region=limits.phone_region)
    engagement = add_engagement(_engagement(lead), event, model)
    hits, fired, fires = update_triggers(state["hits"], state["fired"], event, model)
    changes: dict[str, object] = {
        "aids": aids,
        "uid": uid,
        "traits": traits,
        "rules": engagement.rules,
        "days": engagement.days,
        "assets": engagement.assets,
        "decay": engagement.decay,
        "hits": hits,
        "fired": fired,
        "model": model.version,
    }
    _record(changes, state, fields, digest, read_at, clock=clock, limits=limits)
    known = is_known(uid, traits)
    # A trigger that fires while the visitor is anonymous waits until we know who it is.
    pending: tuple[tuple[str, str, int], ...] = state["pending"]
    if known:
        fires = [Fire(t, m, ts) for t, m, ts in pending] + fires
        changes["pending"] = ()
    elif fires:
        changes["pending"] = pending + tuple((f.trigger, f.message_id, f.ts_ms) for f in fires)
        fires = []
    applied = _decide(lead, changes, engagement, fires, event, model, rotation, now, limits=limits)
    if fields["uid"] or new_traits or (applied.lead.rep is not None and state["rep"] is None):
        return _claim(applied, limits)
    return applied


def _seen_only(
    lead: LeadState,
    event: PersonEvent,
    digest: str,
    read_at: tuple[str, int] | None,
    *,
    model: LeadModel,
    limits: Limits,
) -> LeadState | None:
    """The lead after an event no rule or trigger reads, from a lead we know: nothing to
    decide, nothing to emit (over half of all traffic, at a third of the cost). None for
    any other event.

    The hottest code of the worker. It reads both models' fields from their `__dict__`,
    each once: a dict lookup instead of pydantic's attribute hook (~4x cheaper, compiled).
    """
    state = lead.__dict__
    fields = event.__dict__
    uid = fields["uid"]
    aid = fields["aid"]
    if (
        fields["traits"]
        or (uid is not None and uid != state["uid"])
        or (aid and aid not in state["aids"])
        or state["pending"]
        or _read(model.index, fields["kind"], fields["name"])
    ):
        return None
    ts_ms: int = fields["ts_ms"]
    last_ms: int = state["last_ms"]
    clock = max(last_ms, ts_ms)
    if _points(state["decay"], model, clock) != state["scores"]:
        return None  # a score decayed or reset: the lead's scores change
    changed = dict(state)
    _record(changed, state, fields, digest, read_at, clock=clock, limits=limits)
    return trusted(LeadState, changed)


def _read(index: Any, kind: str, name: str) -> bool:
    """`index.reads(kind, name)` from its two tables, calling it only for a page it has not
    seen yet: a call of the interpreted method from compiled code cost ~1,500 instructions,
    2.5% of the core's per event."""
    if kind == "track":
        track_read: frozenset[str] = index.track_read
        return name in track_read
    if kind == "page":
        page_read: dict[str, bool] = index.page_read
        found = page_read.get(name)
        if found is not None:
            return found
        return bool(index.reads(kind, name))
    return False


def _record(
    into: dict[str, object],
    lead: dict[str, Any],
    event: dict[str, Any],
    digest: str,
    read_at: tuple[str, int] | None,
    *,
    clock: int,
    limits: Limits,
) -> None:
    """Set in `into` what every applied event changes in its lead, on either path: the
    clock, the count, the history, the dedupe window, the raw offset applied, the first
    touch. Reads the lead's and the event's `__dict__` (see _seen_only); writes into the
    caller's dict (a dict of its own per event would cost 3% of the core)."""
    events: int = lead["events"]
    seen: str = lead["seen"]
    item: tuple[int, str, str, str | None] = (
        event["ts_ms"],
        event["kind"],
        event["name"],
        event["asset"],
    )
    into["last_ms"] = clock
    into["events"] = events + 1
    into["history"] = _add_item(lead["history"], item, limits, clock=clock)
    into["seen"] = (seen + digest)[-limits.dedupe_window * DIGEST_CHARS :]
    into["applied"] = _applied(lead["applied"], read_at)
    # The first touch: the UTM source and campaign of the lead's first event with either;
    # a lead keeps them for good.
    if (lead["source"] is None and lead["campaign"] is None) and (
        event["source"] is not None or event["campaign"] is not None
    ):
        into["source"] = event["source"]
        into["campaign"] = event["campaign"]


def identity_keys(
    lead: LeadState, rules: EmailRules = DEFAULT_EMAIL_RULES
) -> list[tuple[str, str]]:
    """The identifiers a lead is known by besides its own key, as (key, what it is).

    A userId is keyed as itself (server-side events are keyed by it, so its alias and any
    lead it formed live in one partition); an email by its identity form; the CRM's id of
    the person (trait `crm_id`, `contact_id`, ...) as `crm:<id>`.
    """
    keys = []
    if lead.uid is not None and lead.uid != lead.pk:
        keys.append((lead.uid, "userId"))
    email = lead.traits.get("email")
    if isinstance(email, str) and email:
        keys.append(("email:" + email_identity(email, rules=rules), "email"))
    if lead.rep is not None:  # handed off: sales feedback will name it by its lead id
        keys.append((f"lead:{lead.lead_id}", "lead_id"))
    crm_id = lead.traits.get("crm_id")
    if isinstance(crm_id, str | int) and not isinstance(crm_id, bool) and str(crm_id):
        keys.append((f"crm:{crm_id}", "crm_id"))
    return keys


def _claim(applied: Applied, limits: Limits) -> Applied:
    """Claim the lead's new identifiers in the identity graph (streams/identity.py)."""
    lead = applied.lead
    fresh = [
        (key, why) for key, why in identity_keys(lead, limits.email_rules) if key not in lead.links
    ]
    if not fresh:
        return applied
    links = tuple(trusted(Link, dict(key=key, owner=lead.pk, why=why)) for key, why in fresh)
    claimed = _replace(lead, {"links": (*lead.links, *(key for key, _ in fresh))})
    return Applied(claimed, (*applied.decisions, *links), applied.rotation)


def _decide(
    lead: LeadState,
    changes: dict[str, object],
    engagement: Engagement,
    fires: list[Fire],
    event: PersonEvent,
    model: LeadModel,
    rotation: RoutingState | Mapping[str, int],
    now: datetime,
    *,
    limits: Limits,
    reason_prefix: str = "",
    alert_fires: bool = True,
) -> Applied:
    """Scores, grade and stage of the changed lead, and the records that tells the world."""
    old = lead.__dict__  # fields as dict items (see _seen_only)
    old_traits: Mapping[str, TraitValue] = old["traits"]
    accounts = limits.accounts
    if accounts is not None and "traits" in changes and changes["traits"] is not old_traits:
        _match_account(changes, accounts, model)
    traits: Mapping[str, TraitValue] = changes.get("traits", old_traits)  # type: ignore[assignment]
    uid: str | None = changes.get("uid", old["uid"])  # type: ignore[assignment]
    last_ms: int = old["last_ms"]
    clock: int = changes.get("last_ms", last_ms)  # type: ignore[assignment]
    fit, grade, fit_lines = fit_of(traits, model)
    points = _points(engagement.decay, model, clock)
    known = is_known(uid, traits)
    old_stage: Stage = old["stage"]
    old_grade: Grade = old["grade"]
    ts_ms: int = event.__dict__["ts_ms"]
    start, why_start = old_stage, None
    if old_stage == "mql" and clock > last_ms and old["decay"]:
        # Time passes before this event counts: an MQL that decayed under its margin is
        # recycled first, whatever the events at this moment add (else the order of events
        # with one timestamp would decide whether a lead stays an MQL).
        start, why_start = next_stage(
            "mql",
            known=known,
            points=_points(old["decay"], model, clock),
            grade=old_grade,
            model=model,
        )
    stage, reason = next_stage(start, known=known, points=points, grade=grade, model=model)
    if stage == start and start != old_stage:
        reason = why_start
    if reason is not None and reason_prefix:
        reason = reason_prefix + reason
    primary = points.get(model.index.primary_id, 0)
    if fires:
        fires = _fit_enough(fires, grade, lead, changes, model)
    became_mql = stage == "mql" and old_stage != "mql"
    changes["scores"] = points
    changes["score"] = primary
    changes["fit"] = fit
    changes["grade"] = grade
    changes["stage"] = stage
    changes["stage_ms"] = ts_ms if stage != old_stage else old["stage_ms"]
    changes["mql_ms"] = ts_ms if became_mql else old["mql_ms"]
    new = _replace(lead, changes)
    decisions: list[Decision] = []
    changed = (
        points != old["scores"] or stage != old_stage or (grade, fit) != (old_grade, old["fit"])
    )
    handing_off = bool(fires if alert_fires else ()) or became_mql
    # Lines cost more than the rest of scoring: only built when something goes out.
    named = named_scores(engagement, model, clock) if changed or handing_off else ()
    if changed:
        decisions.append(
            trusted(
                LeadScored,
                dict(
                    schema_version=SCHEMA_VERSION,
                    lead_id=new.lead_id,
                    score=primary,
                    previous_score=old["score"],
                    breakdown=named[0].breakdown,
                    scores=named,
                    fit=fit,
                    grade=grade,
                    fit_breakdown=fit_lines,
                    stage=stage,
                    previous_stage=old_stage,
                    reason=reason,
                    model_version=model.version,
                    message_id=event.__dict__["mid"],
                    occurred_at=_ms_to_dt(ts_ms),
                    created_at=now,
                ),
            )
        )
    new_rotation = as_state(rotation)
    alerting = fires if alert_fires else []
    if handing_off:
        if new.rep is None or model.rep(new.rep) is None:
            decision, new_rotation = route(
                lead=LeadView(
                    traits=traits,
                    scores=points,
                    account_owner=new.account_owner,
                    assigned_rep=new.rep,
                ),
                model=model,
                state=new_rotation,
                now=now,
            )
            new = _replace(
                new,
                {
                    "rep": decision.rep.id,
                    "route_rule": decision.rule,
                    "route_team": decision.team,
                    "route_trail": decision.lines,
                },
            )
        qualified = tuple(s.id for s in named if s.points >= s.threshold)
        handed = _hand_off(
            new,
            alerting,
            became_mql,
            named[0].breakdown,
            qualified,
            model=model,
            event=event,
            now=now,
            limits=limits,
        )
        decisions.extend(handed)
        if model.sla is not None and new.sla is None and new.stage not in SALES_STAGES:
            clock_, started = sla_started(
                new,
                handoff_id=handed[0].handoff_id,  # type: ignore[union-attr]
                priority="hot" if alerting else "mql",
                rep=new.rep or model.fallback_rep,
                model=model,
                now=now,
            )
            new = _replace(new, {"sla": clock_})
            decisions.extend(started)
    if model.accounts.enabled:
        decisions.extend(
            _contact_updates(lead, new, traits, primary, clock, event, model, rotation)
        )
    return Applied(new, tuple(decisions), new_rotation)


def _match_account(
    changes: dict[str, object], accounts: AccountDirectory, model: LeadModel
) -> None:
    """The CRM account of a lead whose traits changed: recorded with how it matched, and
    its firmographics in the traits fit scoring reads (the CRM knows a company's size and
    industry better than a form; a country the lead gave stays)."""
    traits: dict[str, TraitValue] = changes["traits"]  # type: ignore[assignment]
    email = _text(traits.get("email"))
    found = accounts.match(
        # The domain as the email gives it: `match` normalizes it, once per distinct value.
        email_domain=email.rpartition("@")[2] if email and "@" in email else None,
        company=_text(traits.get("company")),
        free_mail=free_mail_domains(model.fit.free_mail_domains),
    )
    if found is None:
        return
    account = found.account
    firm: dict[str, TraitValue] = {}
    if account.employees is not None:
        firm["employees"] = account.employees
    if account.industry:
        firm["industry"] = account.industry
    if account.country and not traits.get("country"):
        firm["country"] = account.country
    changes.update(
        traits={**traits, **firm} if firm else traits,
        account=account.account_id,
        account_via=found.method,
        account_confidence=round(found.confidence, 3),
        account_owner=account.owner_rep,
        account_domain=account.domains[0] if account.domains else None,
    )


def _points(decay: Mapping[str, DecayState], model: LeadModel, clock: int) -> dict[str, int]:
    """Every score's points at the lead's clock; zero scores are left out (most visitors
    never score, and their state stays small)."""
    if not decay:
        return {}
    points: dict[str, int] = {}
    for score_id, half_life_ms, reset_after_ms in model.index.decays:
        current = decay.get(score_id)
        if current is not None and (p := decayed(current, half_life_ms, reset_after_ms, clock)):
            points[score_id] = p
    return points


def _fit_enough(
    fires: list[Fire],
    grade: Grade,
    lead: LeadState,
    changes: dict[str, object],
    model: LeadModel,
) -> list[Fire]:
    """The fires whose trigger the lead's grade allows. A fire held back by `min_grade`
    does not start its trigger's cooldown: the lead alerts once its fit is good enough."""
    triggers = model.index.triggers
    kept = [
        f
        for f in fires
        if f.trigger in triggers and grade_at_least(grade, triggers[f.trigger].min_grade)
    ]
    if len(kept) < len(fires):
        fired = dict(changes.get("fired", lead.fired))  # type: ignore[call-overload]
        for f in fires:
            if f not in kept and fired.get(f.trigger) == f.ts_ms:
                before = lead.fired.get(f.trigger)
                if before is None or before == f.ts_ms:
                    fired.pop(f.trigger, None)
                else:
                    fired[f.trigger] = before
        changes["fired"] = fired
    return kept


def _contact_updates(
    lead: LeadState,
    new: LeadState,
    traits: Mapping[str, TraitValue],
    primary: int,
    clock: int,
    event: PersonEvent,
    model: LeadModel,
    rotation: RoutingState | Mapping[str, int],
) -> list[ContactUpdate]:
    """What the lead's accounts must hear: its new primary score, and when it moved to
    another company, that it left the old one (score 0)."""
    domain = new.account_domain or account_domain(traits, model)
    before = (
        domain
        if traits is lead.traits and new.account_domain == lead.account_domain
        else lead.account_domain or account_domain(lead.traits, model)
    )
    out = []
    if before is not None and before != domain:
        out.append(_contact(before, new, 0, clock, event, model, rep=None))
    if domain is not None and (primary != lead.score or domain != before):
        owner = new.rep if new.route_rule in ("account_owner", "account_domain") else None
        if owner is None:  # the account's owner, as routing would pick it; no rotation
            owner = choose_rep(traits, model, as_state(rotation).rotation, owner=new.account_owner)[
                0
            ].rep.id
        out.append(_contact(domain, new, primary, clock, event, model, rep=owner))
    return out


def _contact(
    account: str,
    lead: LeadState,
    score: int,
    clock: int,
    event: PersonEvent,
    model: LeadModel,
    *,
    rep: str | None,
) -> ContactUpdate:
    return trusted(
        ContactUpdate,
        dict(
            account=account,
            lead_id=lead.lead_id,
            score=score,
            ts_ms=clock,
            rep=rep,
            mid=event.mid,
            model=model.version,
        ),
    )


def _engagement(lead: LeadState) -> Engagement:
    state = lead.__dict__  # dict items: it runs for every event that scores (see _seen_only)
    return Engagement(state["rules"], state["days"], state["assets"], state["decay"])


def _migrate(lead: LeadState, model: LeadModel) -> LeadState:
    """A lead last scored by another model: keep what the new model still has, drop the rest.

    The new model applies from now on; nothing is rescored (that is `rescore_lead`). Totals
    of rules the new model lacks stay while their score exists: their points are part of
    it, and its breakdown shows them as `retired:` lines.
    """
    rules, scores, triggers = model.index.rules, model.index.scores, model.index.triggers
    return _replace(
        lead,
        {
            "rules": {k: v for k, v in lead.rules.items() if v[4] in scores},
            "days": {k: v for k, v in lead.days.items() if k in rules},
            "assets": {k: v for k, v in lead.assets.items() if k in rules},
            "decay": {k: v for k, v in lead.decay.items() if k in scores},
            "hits": {k: v for k, v in lead.hits.items() if k in triggers},
            "fired": {k: v for k, v in lead.fired.items() if k in triggers},
            "pending": tuple(p for p in lead.pending if p[0] in triggers),
            "model": model.version,
        },
    )


def rescore_lead(
    lead: LeadState,
    *,
    model: LeadModel,
    rotation: RoutingState | Mapping[str, int],
    now: datetime,
    limits: Limits | None = None,
) -> Applied:
    """Replay the lead's stored history through `model` (a `--rescore` publish).

    Engagement, caps, decay and trigger windows are rebuilt from scratch; stage moves as the
    new scores say (a new MQL is handed off), but old trigger hits do not alert again.
    Exact when the history was not trimmed (`history_kept`).
    """
    engagement, hits, fired = _replay(lead.history, lead.pk, model)
    # The marker the records carry: the latest event's kind and name, at the lead's clock.
    kind, name = (lead.history[-1][1], lead.history[-1][2]) if lead.history else ("identify", "")
    changes: dict[str, object] = {
        "rules": engagement.rules,
        "days": engagement.days,
        "assets": engagement.assets,
        "decay": engagement.decay,
        "hits": hits,
        "fired": {**fired, **{k: v for k, v in lead.fired.items() if k in model.index.triggers}},
        "pending": (),
        "model": model.version,
    }
    marker = _synthetic(
        lead.pk, mid=f"rescore:{model.version}", kind=kind, name=name, ts_ms=lead.last_ms
    )
    return _decide(
        lead,
        changes,
        engagement,
        [],
        marker,
        model,
        rotation,
        now,
        limits=limits or Limits(),
        reason_prefix=f"rescored with model {model.version}: ",
        alert_fires=False,
    )


_OUTCOME_STAGE: dict[str, Stage] = {
    "accepted": "sal",
    "rejected": "recycled",
    "opportunity": "opportunity",
    "won": "won",
    "lost": "lost",
}
_OUTCOME_REASON = {
    "accepted": "accepted by rep",
    "rejected": "rejected by rep",
    "contacted": "contacted by rep",
    "opportunity": "opportunity created",
    "won": "won",
    "lost": "lost",
}


_STAGE_RANK = {"anonymous": 0, "known": 1, "engaged": 2, "recycled": 3, "mql": 4}


def merge_leads(
    survivor: LeadState,
    other: LeadState,
    *,
    model: LeadModel,
    rotation: RoutingState | Mapping[str, int],
    limits: Limits,
    now: datetime,
) -> Applied:
    """One person's two leads as one: `other` merges into `survivor` (streams/identity.py).

    Their events are disjoint (every message reached one lead), so every event counts once:
    when neither history was trimmed, both histories are replayed through the model in event
    time order (exact, caps included); otherwise their engagement adds up, decay anchored
    at the later clock. Old trigger hits do not alert again; a merged lead that now
    qualifies is handed off.
    """
    older, newer = (survivor, other) if survivor.last_ms <= other.last_ms else (other, survivor)
    history = tuple(sorted((*survivor.history, *other.history), key=lambda h: h[0]))
    # Replay only a complete history: trimmed by count (`history_kept`) or by age
    # (`activity_retention_ms`), it no longer holds every event the scores count.
    complete = (
        survivor.events + other.events <= limits.history_kept
        and len(history) >= survivor.events + other.events
    )
    if complete:
        engagement, hits, fired = _replay(history, survivor.pk, model)
    else:
        engagement = _add_up(_engagement(survivor), _engagement(other), model)
        hits = {
            t: tuple(sorted((*survivor.hits.get(t, ()), *other.hits.get(t, ()))))[-16:]
            for t in {*survivor.hits, *other.hits}
        }
        fired = {}
    fired = {**fired, **_latest(survivor.fired, other.fired)}
    stage = _merged_stage(survivor, other)
    changes: dict[str, object] = {
        "aids": tuple(dict.fromkeys((*survivor.aids, *other.aids)))[-_MAX_ANONYMOUS_IDS:],
        "uid": survivor.uid or other.uid,
        "traits": {**older.traits, **newer.traits},
        "rules": engagement.rules,
        "days": engagement.days,
        "assets": engagement.assets,
        "decay": engagement.decay,
        "hits": hits,
        "fired": fired,
        "pending": tuple(dict.fromkeys((*survivor.pending, *other.pending))),
        "last_ms": max(survivor.last_ms, other.last_ms),
        "events": survivor.events + other.events,
        "history": _retained(
            history[-limits.history_kept :], limits, max(survivor.last_ms, other.last_ms)
        ),
        "seen": (survivor.seen + other.seen)[-limits.dedupe_window * 2 * DIGEST_CHARS :],
        "applied": {
            k: max(survivor.applied.get(k, -1), other.applied.get(k, -1))
            for k in {*survivor.applied, *other.applied}
        },
        # The other lead's own key now points here too: an erasure deletes it with the rest.
        "links": tuple(dict.fromkeys((*survivor.links, other.pk, *other.links))),
        "merged": (*survivor.merged, other.lead_id, *other.merged),
        **_account_of(survivor if survivor.account is not None else other),
        **_touch_of(survivor if survivor.source or survivor.campaign else other),
        "rep": survivor.rep or other.rep,
        "sla": survivor.sla or other.sla,  # a hand-off still waiting keeps its clock
        "feedback_ms": max(survivor.feedback_ms, other.feedback_ms),
        "route_rule": survivor.route_rule if survivor.rep else other.route_rule,
        "mql_ms": min((m for m in (survivor.mql_ms, other.mql_ms) if m is not None), default=None),
        "model": model.version,
    }
    base = _replace(survivor, {"stage": stage})
    marker = _synthetic(
        survivor.pk,
        mid=f"merge:{other.lead_id}",
        kind="identify",
        name="",
        ts_ms=max(survivor.last_ms, other.last_ms),
    )
    applied = _claim(
        _decide(
            base,
            changes,
            engagement,
            [],
            marker,
            model,
            rotation,
            now,
            limits=limits,
            reason_prefix="merged: ",
            alert_fires=False,
        ),
        limits,
    )
    # The merged lead leaves its account: the survivor's contact entry stands for both.
    gone = (
        (other.account_domain or account_domain(other.traits, model))
        if model.accounts.enabled
        else None
    )
    leave = (
        [_contact(gone, other, 0, applied.lead.last_ms, marker, model, rep=None)] if gone else []
    )
    return Applied(applied.lead, (*applied.decisions, *leave), applied.rotation)


def leave_account(lead: LeadState, *, model: LeadModel) -> tuple[ContactUpdate, ...]:
    """What takes an erased lead out of its account's roll-up (its contact score to 0)."""
    gone = (
        (lead.account_domain or account_domain(lead.traits, model))
        if model.accounts.enabled
        else None
    )
    if not gone:
        return ()
    marker = _synthetic(
        lead.pk, mid=f"forget:{lead.lead_id}", kind="identify", name="", ts_ms=lead.last_ms
    )
    return (_contact(gone, lead, 0, lead.last_ms, marker, model, rep=None),)


def _account_of(lead: LeadState) -> dict[str, object]:
    return {
        "account": lead.account,
        "account_via": lead.account_via,
        "account_confidence": lead.account_confidence,
        "account_owner": lead.account_owner,
        "account_domain": lead.account_domain,
    }


def _touch_of(lead: LeadState) -> dict[str, object]:
    return {"source": lead.source, "campaign": lead.campaign}


def _add_up(a: Engagement, b: Engagement, model: LeadModel) -> Engagement:
    """Engagement of two disjoint event sets, when their histories cannot be replayed."""
    rules = dict(a.rules)
    for rule, (raw, counted, n, n_counted, owner) in b.rules.items():
        r0, c0, n0, nc0, _ = rules.get(rule, (0, 0, 0, 0, owner))
        rules[rule] = (r0 + raw, c0 + counted, n0 + n, nc0 + n_counted, owner)
    days = dict(a.days)
    for rule, recent in b.days.items():
        merged = dict(days.get(rule, ()))
        for day, n in recent:
            merged[day] = merged.get(day, 0) + n
        days[rule] = tuple(sorted(merged.items()))[-3:]
    assets = {
        r: tuple(dict.fromkeys((*a.assets.get(r, ()), *b.assets.get(r, ()))))
        for r in {*a.assets, *b.assets}
    }
    decay = dict(a.decay)
    scores = model.index.scores
    for score_id, (value, as_of, start) in b.decay.items():
        if score_id not in decay:
            decay[score_id] = (value, as_of, start)
            continue
        v0, as0, st0 = decay[score_id]
        score = scores.get(score_id)
        half = score.decay.half_life_ms if score is not None else None
        at = max(as0, as_of)
        if half is None:
            total = v0 + value
        else:
            total = v0 * 2.0 ** ((as0 - at) / half) + value * 2.0 ** ((as_of - at) / half)
        decay[score_id] = (total, at, min(st0, start))
    return Engagement(rules, days, assets, decay)


def _latest(a: Mapping[str, int], b: Mapping[str, int]) -> dict[str, int]:
    return {k: max(a.get(k, b.get(k, 0)), b.get(k, a.get(k, 0))) for k in {*a, *b}}


def _merged_stage(a: LeadState, b: LeadState) -> Stage:
    """Sales stages win (the later change of the two); else the further along."""
    sales = [x for x in (a, b) if x.stage not in _STAGE_RANK]
    if sales:
        return max(sales, key=lambda x: x.stage_ms).stage
    return max(a.stage, b.stage, key=lambda st: _STAGE_RANK[st])


def apply_feedback(
    lead: LeadState, feedback: SalesFeedback, *, model: LeadModel, now: datetime
) -> tuple[Applied, str | None]:
    """Sales feedback for this lead: the stage it moves to, the SLA clock it stops.

    Returns the result and, when the feedback cannot be used, why (a DLQ reason):
    `out_of_order` when it happened before feedback already applied. A re-delivered
    feedback (same feedback_id) changes nothing.
    """
    digest = _digest(f"feedback:{feedback.feedback_id}")
    if _seen(lead.seen, digest):
        return Applied(lead, (), RoutingState(), duplicate=True), None
    at_ms = (feedback.occurred_at - _EPOCH) // _MS
    if at_ms < lead.feedback_ms:
        return Applied(lead, (), RoutingState()), "out_of_order"
    decisions: list[Decision] = []
    if lead.sla is not None:
        decisions.append(
            sla_stopped(
                lead,
                lead.sla,
                status=feedback.status,
                at=feedback.occurred_at,
                model=model,
                now=now,
            )
        )
    moved = apply_outcome(lead, feedback, model=model, now=now)
    decisions.extend(moved.decisions)
    new = _replace(
        moved.lead,
        {
            "sla": None,
            "feedback_ms": at_ms,
            "seen": (lead.seen + digest)[-_SEEN_WITH_FEEDBACK * DIGEST_CHARS :],
        },
    )
    return Applied(new, tuple(decisions), RoutingState()), None


_SEEN_WITH_FEEDBACK = 64


def sla_tick(
    lead: LeadState,
    *,
    model: LeadModel,
    rotation: RoutingState | Mapping[str, int],
    limits: Limits,
    now: datetime,
) -> Applied | None:
    """The lead's SLA clock at `now`: None when no step is due; else the step taken, and
    for a reassignment the new hand-off (to the next rep) with its own clock."""
    clock = lead.sla
    if clock is None:
        return None
    due = sla_due_ms(clock, model)
    if due is None or due > int(now.timestamp() * 1000):
        return None
    after, moved_to, records = step_due(
        lead, clock, model=model, now=now, next_rep=_next_rep(lead, clock[2], model)
    )
    decisions: list[Decision] = list(records)
    new = _replace(lead, {"sla": after})
    if moved_to is not None:
        marker = _synthetic(
            lead.pk, mid=f"sla:{clock[0]}:{moved_to}", kind="identify", name="", ts_ms=lead.last_ms
        )
        new = _replace(new, {"rep": moved_to, "route_rule": "sla_reassigned"})
        named = named_scores(_engagement(new), model, new.last_ms)
        qualified = tuple(s.id for s in named if s.points >= s.threshold)
        handed = _hand_off(
            new,
            [],
            False,
            named[0].breakdown,
            qualified,
            model=model,
            event=marker,
            now=now,
            limits=limits,
            reason="hot_trigger" if clock[1] == "hot" else "mql",
        )
        rep = model.rep(moved_to)
        assert rep is not None
        decisions.extend(handed)
        decisions.append(
            sla_alert(new, rep, "sla-reassigned", f"is yours now: {records[0].reason}", model, now)  # type: ignore[union-attr]
        )
        restarted, started = sla_started(
            new,
            handoff_id=handed[0].handoff_id,  # type: ignore[union-attr]
            priority=clock[1],
            rep=moved_to,
            model=model,
            now=now,
        )
        new = _replace(new, {"sla": restarted})
        decisions.extend(started)
    return Applied(new, tuple(decisions), as_state(rotation))


def _read_at(event: PersonEvent) -> tuple[str, int] | None:
    """("<person key>|<raw partition>", raw offset) of an event read from engagement.raw."""
    fields = event.__dict__  # hot path: dict items, not pydantic attributes
    src: tuple[int, int] | None = fields["src"]
    if src is None:
        return None
    origin: str = fields["aid"] or fields["uid"] or fields["pk"]
    return f"{origin}|{src[0]}", src[1]


def _applied(applied: dict[str, int], read_at: tuple[str, int] | None) -> dict[str, int]:
    if read_at is None or applied.get(read_at[0], -1) >= read_at[1]:
        return applied
    return {**applied, read_at[0]: read_at[1]}


def _synthetic(
    pk: str, *, mid: str, kind: str, name: str, ts_ms: int, asset: str | None = None
) -> PersonEvent:
    """An event the core makes up itself (a replayed history item, a marker for records
    that no input event caused); unvalidated, like every record the core builds."""
    return trusted(
        PersonEvent,
        dict(
            mid=mid,
            pk=pk,
            kind=kind,
            name=name,
            ts_ms=ts_ms,
            aid=None,
            uid=None,
            traits={},
            asset=asset,
            source=None,
            campaign=None,
            src=None,
        ),
    )


def _replay(
    history: Iterable[tuple[int, str, str, str | None]], pk: str, model: LeadModel
) -> tuple[Engagement, Mapping[str, tuple[int, ...]], Mapping[str, int]]:
    """Engagement and trigger windows rebuilt from a history, oldest first (no alerts)."""
    engagement = Engagement({}, {}, {}, {})
    hits: Mapping[str, tuple[int, ...]] = {}
    fired: Mapping[str, int] = {}
    for ts_ms, kind, name, asset in history:
        past = _synthetic(pk, mid="", kind=kind, name=name, ts_ms=ts_ms, asset=asset)
        engagement = add_engagement(engagement, past, model)
        hits, fired, _ = update_triggers(hits, fired, past, model)
    return engagement, hits, fired


def _in_territory(rep: Rep, traits: Mapping[str, TraitValue]) -> bool:
    t = rep.territory
    country, employees = traits.get("country"), traits.get("employees")
    if t.countries and country not in t.countries:
        return False
    if t.min_employees is not None or t.max_employees is not None:
        if not isinstance(employees, int) or isinstance(employees, bool):
            return False
        if t.min_employees is not None and employees < t.min_employees:
            return False
        if t.max_employees is not None and employees > t.max_employees:
            return False
    return True


def _next_rep(lead: LeadState, current: str, model: LeadModel) -> Rep | None:
    """Who takes a lead its rep did not accept: the other reps whose territory covers it
    (the fallback rep last), the same one for the same lead on every worker."""
    others = [
        r
        for r in model.reps
        if r.id not in (current, model.fallback_rep) and _in_territory(r, lead.traits)
    ]
    if others:
        return max(others, key=lambda r: _stable_id(lead.lead_id, r.id))
    fallback = model.rep(model.fallback_rep)
    return fallback if fallback is not None and fallback.id != current else None


def apply_outcome(
    lead: LeadState, outcome: SalesFeedback, *, model: LeadModel, now: datetime
) -> Applied:
    """A sales outcome moves the lead through the sales stages.

    Rejected and recycled leads go back to marketing with their engagement reset, so they
    must earn an MQL again. An outcome that does not change the stage emits nothing.
    """
    # Contacted: the rep is on it; an MQL not yet accepted counts as accepted.
    stage = _OUTCOME_STAGE.get(outcome.status) or ("sal" if lead.stage == "mql" else lead.stage)
    if stage == lead.stage:
        return Applied(lead, (), RoutingState())
    at_ms = (outcome.occurred_at - _EPOCH) // _MS
    changes: dict[str, object] = {"stage": stage, "stage_ms": at_ms}
    if stage == "recycled":
        changes.update(rules={}, days={}, assets={}, decay={}, scores={}, score=0)
    new = _replace(lead, changes)
    engagement = _engagement(new)
    clock = max(new.last_ms, at_ms)
    named = named_scores(engagement, model, clock)
    fit, grade, fit_lines = fit_of(new.traits, model)
    said = ": ".join(x for x in (outcome.reason, outcome.reason_text) if x)
    reason = _OUTCOME_REASON[outcome.status] + (f": {said}" if said else "")
    scored = trusted(
        LeadScored,
        dict(
            schema_version=SCHEMA_VERSION,
            lead_id=new.lead_id,
            score=named[0].points,
            previous_score=lead.score,
            breakdown=named[0].breakdown,
            scores=named,
            fit=fit,
            grade=grade,
            fit_breakdown=fit_lines,
            stage=stage,
            previous_stage=lead.stage,
            reason=reason,
            model_version=model.version,
            message_id=f"feedback:{outcome.feedback_id}",
            occurred_at=outcome.occurred_at,
            created_at=now,
        ),
    )
    return Applied(new, (scored,), RoutingState())


def _hand_off(
    lead: LeadState,
    fires: list[Fire],
    became_mql: bool,
    lines: tuple[BreakdownLine, ...],
    qualified: tuple[str, ...],
    *,
    model: LeadModel,
    event: PersonEvent,
    now: datetime,
    limits: Limits,
    reason: str | None = None,
) -> list[Decision]:
    rep = model.rep(lead.rep or "")
    assert rep is not None
    traits = lead.traits
    who = _text(traits.get("name")) or _full_name(traits) or _text(traits.get("email"))
    who = who or lead.lead_id
    event_at = _ms_to_dt(event.ts_ms)
    # Relative answers ("this quarter", 今期) are read as of the event that hands off.
    bant = qualify(
        traits,
        as_of=event_at.date(),
        fiscal_year_start_month=limits.fiscal_year_start_month,
        memo=model.index.qualify_memo,
    )
    out: list[Decision] = [
        trusted(
            HandOff,
            dict(
                schema_version=SCHEMA_VERSION,
                handoff_id=_stable_id(lead.lead_id, "handoff", event.mid),
                lead_id=lead.lead_id,
                reason=reason or ("hot_trigger" if fires else "mql"),
                trigger=fires[0].trigger if fires else None,
                email=_text(traits.get("email")),
                name=_text(traits.get("name")) or _full_name(traits),
                company=_text(traits.get("company")),
                account_domain=lead.account_domain or account_domain(traits, model),
                account_id=lead.account,
                account_match=lead.account_via,
                account_match_confidence=lead.account_confidence,
                rep_id=rep.id,
                rep_name=rep.name,
                rep_email=rep.email,
                routing_rule=lead.route_rule or "fallback",
                routing_team=lead.route_team,
                routing_trail=lead.route_trail,
                score=lead.score,
                breakdown=lines,
                qualified_by=qualified,
                fit=lead.fit,
                grade=lead.grade,
                stage=lead.stage,
                purchase_timeline=bant.timeline,
                purchase_timeline_text=bant.timeline_text,
                budget=bant.budget,
                budget_text=bant.budget_text,
                authority=bant.authority,
                authority_text=bant.authority_text,
                need=bant.need,
                need_text=bant.need_text,
                recent_activity=_recent_activity(lead, model_kept=_ACTIVITY_ON_HANDOFF),
                model_version=model.version,
                created_at=now,
            ),
        )
    ]
    triggers = model.index.triggers
    alerts = [(f.trigger, f.message_id, triggers[f.trigger].message) for f in fires]
    if became_mql and not fires:
        alerts.append(
            (
                "mql",
                event.mid,
                f"became a marketing-qualified lead (score {lead.score}, fit {lead.grade})",
            )
        )
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


_History = tuple[tuple[int, str, str, str | None], ...]


def _add_item(
    history: _History, item: tuple[int, str, str, str | None], limits: Limits, *, clock: int
) -> _History:
    """The history with `item` (an event's ms, kind, name, asset), at most `history_kept`
    entries, none older than the activity retention by the lead's clock `clock` (ms)."""
    kept = limits.history_kept
    if not history or history[-1][0] <= item[0]:  # the usual case: in order
        return _retained((*history, item)[-kept:], limits, clock)
    return _retained(tuple(sorted((*history, item), key=lambda a: a[0]))[-kept:], limits, clock)


def _retained(history: _History, limits: Limits, clock: int) -> _History:
    """Entries within the activity retention (`activity_retention_ms` before `clock`).

    Only the activity log goes: the engagement the scores hold (points per rule, decay)
    stays, so the scores and their breakdowns still add up; decay is what ages a score.
    """
    if not limits.activity_retention_ms or not history:
        return history
    oldest = clock - limits.activity_retention_ms
    if history[0][0] >= oldest:  # the usual case: nothing expired
        return history
    return tuple(h for h in history if h[0] >= oldest)


def _recent_activity(lead: LeadState, *, model_kept: int) -> tuple[Activity, ...]:
    out = []
    email = _text(lead.traits.get("email"))
    company = _text(lead.traits.get("company"))
    for ms, kind, name, _ in reversed(lead.history[-model_kept:]):
        if kind in ("track", "page"):
            label = name
        elif kind == "identify":
            label = "identified" + (f" as {email}" if email else "")
        else:
            label = f"joined account {company or ''}".rstrip()
        out.append(trusted(Activity, dict(at=_ms_to_dt(ms), kind=kind, label=label)))
    return tuple(out)


def _text(value: TraitValue) -> str | None:
    if value is None or isinstance(value, bool):
        return None
    return str(value)


def _full_name(traits: Mapping[str, TraitValue]) -> str | None:
    parts = [_text(traits.get("first_name")), _text(traits.get("last_name"))]
    joined = " ".join(p for p in parts if p)
    return joined or None
