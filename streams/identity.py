"""The identity graph: which identifiers are one person, and merging their leads.

Leads are keyed by person key (anonymousId, else userId) and live in partition
`person_partition(key)`. The graph lives in the same table, co-partitioned: an identifier
(a userId, `email:<address>`) is an entry in the partition of its own key, pointing at the
lead that claimed it (`alias_of`). Everything happens by messages between partitions on
`leadstream.person-events`, each handled where its entry lives:

- a lead that learns an identifier sends `Link(key, owner)` to the identifier's partition;
- the first claim of an identifier makes it an alias of its owner; a second claim by
  another lead means both are one person: the lead whose person key sorts last is asked to
  merge into the other (`MergeRequest`);
- a lead that merges sends its whole state (`MergeIn`) to the survivor and becomes an alias
  of it; the survivor combines both (every event counted once: they are disjoint, and a
  re-delivered merge is recognised by lead id) and announces it on `leads.merged`;
- an event or message reaching an alias is forwarded to the alias's lead.

Erasure (`leadstream forget`) travels the same way: a `Forget` reaches the entry of the
identifier it names, is forwarded to the lead, and the lead deletes itself and sends an
`Unlink` to every key that points at it (its identifiers, and the keys of the leads merged
into it), each deleted in its own partition; `leads.forgotten` says what went.

The survivor is the lead of the person whose key sorts first: an order every partition
agrees on without coordination and that no message can change, so any interleaving of the
same messages ends in the same lead. (Not "the oldest lead": which lead saw the earliest
event depends on arrival order when events are late.)
"""

from __future__ import annotations

from collections import ChainMap
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime

from schemas.decisions import SCHEMA_VERSION, LeadForgotten, LeadMerged
from schemas.internal import (
    FeedbackIn,
    Forget,
    LeadState,
    Link,
    MergeIn,
    MergeRequest,
    PersonEvent,
    PersonEventBatch,
    Unlink,
)
from streams.construct import trusted
from streams.lead_model import LeadModel
from streams.leads import (
    Applied,
    BatchResult,
    Decision,
    Limits,
    apply_batch,
    apply_feedback,
    as_state,
    lead_id_for,
    leave_account,
    merge_leads,
)
from streams.routing import RoutingState

__all__ = ["LocalNetwork", "apply_person_batch", "keys_of", "on_forget", "on_unlink"]


def keys_of(batch: PersonEventBatch) -> set[str]:
    """The table entries a batch reads."""
    return (
        {e.pk for e in batch.events}
        | {link.key for link in batch.links}
        | {r.at for r in batch.requests}
        | {m.into for m in batch.merge_ins}
        | {f.to for f in batch.feedback}
        | {f.to for f in batch.forgets}
        | {u.key for u in batch.unlinks}
    )


def apply_person_batch(
    entries: Mapping[str, LeadState | None],
    batch: PersonEventBatch,
    *,
    model: LeadModel,
    rotation: RoutingState | Mapping[str, int],
    limits: Limits,
    now: datetime,
) -> BatchResult:
    """A batch of one partition: identity messages first, then events."""
    result = BatchResult(rotation=as_state(rotation))

    def current(key: str) -> LeadState | None:
        if key in result.deleted:
            return None
        return result.leads.get(key) or entries.get(key)

    for link in batch.links:
        _keep(result, link.key, *on_link(current(link.key), link))
    for request in batch.requests:
        _keep(result, request.at, *on_request(current(request.at), request))
    for merge_in in batch.merge_ins:
        try:
            applied = on_merge_in(
                current(merge_in.into),
                merge_in,
                model=model,
                rotation=result.rotation,
                limits=limits,
                now=now,
            )
        except Exception as exc:  # a bug: keep the partition going, and say so
            result.failed.append((_as_event(merge_in), f"{type(exc).__name__}: {exc}"))
            continue
        result.rotation = applied.rotation
        _keep(result, merge_in.into, applied.lead, list(applied.decisions))
    for item in batch.feedback:
        _keep(result, item.to, *on_feedback(current(item.to), item, result, model=model, now=now))
    # Erasures before events: an event after a `forget` starts a fresh lead.
    for forget in batch.forgets:
        _drop(result, forget.to, *on_forget(current(forget.to), forget, model=model, now=now))
    for unlink in batch.unlinks:
        _drop(result, unlink.key, *on_unlink(current(unlink.key), unlink))
    # A view, not a copy: `entries` may be every lead there is (model replay). Most
    # batches carry events alone: then `entries` as it is (a ChainMap costs a lookup).
    gone: dict[str, None] = dict.fromkeys(result.deleted)
    view = entries
    if result.leads or gone:
        view = ChainMap(result.leads, gone, entries)  # type: ignore[arg-type]
    events = apply_batch(
        view,
        batch.events,
        model=model,
        rotation=result.rotation,
        limits=limits,
        now=now,
    )
    result.leads.update(events.leads)
    result.deleted -= events.leads.keys()  # erased, then a new lead under the same key
    result.decisions.extend(events.decisions)
    result.rotation = events.rotation
    result.duplicates += events.duplicates
    result.failed.extend(events.failed)
    return result


def on_feedback(
    entry: LeadState | None,
    item: FeedbackIn,
    result: BatchResult,
    *,
    model: LeadModel,
    now: datetime,
) -> tuple[LeadState | None, list[Decision]]:
    """Sales feedback reaching an entry: `lead:<lead_id>` forwards it to the lead, which
    applies it; feedback for a lead id nobody claimed, or older than feedback already
    applied, is rejected with the reason (it goes to the DLQ, not nowhere)."""
    lead_id = item.feedback.lead_id
    if entry is None:
        result.rejected.append(
            (item, "unknown_lead", f"lead_id {lead_id} was never handed off by this deployment")
        )
        return None, []
    if entry.alias_of is not None:
        return None, [
            FeedbackIn(
                to=entry.alias_of,
                feedback=item.feedback,
                offset=item.offset,
                partition=item.partition,
            )
        ]
    applied, problem = apply_feedback(entry, item.feedback, model=model, now=now)
    if problem is not None:
        result.rejected.append(
            (
                item,
                problem,
                f"feedback at {item.feedback.occurred_at.isoformat()} is older than "
                f"feedback already applied to {lead_id}",
            )
        )
        return None, []
    if applied.duplicate:
        result.duplicates += 1
        return None, []
    result.feedback.append((item.feedback, applied.lead))
    return applied.lead, list(applied.decisions)


def _keep(
    result: BatchResult, key: str, entry: LeadState | None, decisions: list[Decision]
) -> None:
    if entry is not None:
        result.leads[key] = entry
    result.decisions.extend(decisions)


def _drop(result: BatchResult, key: str, erase: bool, decisions: list[Decision]) -> None:
    if erase:
        result.leads.pop(key, None)
        result.deleted.add(key)
    result.decisions.extend(decisions)


def on_forget(
    entry: LeadState | None, forget: Forget, *, model: LeadModel, now: datetime
) -> tuple[bool, list[Decision]]:
    """An erasure request reaching an entry: (delete this entry?, what it sends).

    An alias forwards it to its lead. The lead deletes itself, asks every key that points
    at it to delete itself (`Unlink`), leaves its account's roll-up and says so on
    `leads.forgotten`. Nothing here: `found: false`, never a silent drop.
    """
    if entry is not None and entry.alias_of is not None:
        # The alias goes at once (its lead would ask anyway, unless the lead is gone).
        return True, [trusted(Forget, {**forget.__dict__, "to": entry.alias_of})]
    if entry is None:
        return False, [_forgotten(forget, None, keys=0, sla=False, now=now)]
    owners = tuple(sorted({entry.pk, *entry.links, *entry.aids}))
    keys = [k for k in owners if k != entry.pk]
    unlinks = [trusted(Unlink, dict(key=k, owners=owners)) for k in keys]
    told = _forgotten(forget, entry, keys=len(keys), sla=entry.sla is not None, now=now)
    return True, [*unlinks, *leave_account(entry, model=model), told]


def on_unlink(entry: LeadState | None, unlink: Unlink) -> tuple[bool, list[Decision]]:
    """Delete this entry if it points at an erased lead (one of `owners`); an entry that
    is a lead of its own, or points elsewhere by now, stays."""
    return entry is not None and entry.alias_of in unlink.owners, []


def _forgotten(
    forget: Forget, lead: LeadState | None, *, keys: int, sla: bool, now: datetime
) -> LeadForgotten:
    return trusted(
        LeadForgotten,
        dict(
            schema_version=SCHEMA_VERSION,
            request_id=forget.request_id,
            found=lead is not None,
            lead_id=lead.lead_id if lead is not None else None,
            merged_lead_ids=lead.merged if lead is not None else (),
            identifier=forget.identifier,
            identifier_sha256=forget.identifier_sha256,
            identifiers_deleted=keys,
            sla_stopped=sla,
            reason=forget.reason,
            requested_at=datetime.fromtimestamp(forget.requested_ms / 1000, tz=UTC),
            created_at=now,
        ),
    )


def on_link(entry: LeadState | None, link: Link) -> tuple[LeadState | None, list[Decision]]:
    """A lead claims the identifier this entry is keyed by."""
    if entry is None:
        return _alias(link.key, to=link.owner), []
    if entry.alias_of is None:  # a lead of its own under this key: one person with `owner`
        if entry.pk == link.owner:
            return None, []
        return on_request(entry, MergeRequest(at=link.key, into=link.owner, why=link.why))
    if entry.alias_of == link.owner:
        return None, []
    # Two leads claim one identifier: they are one person. The entry points at the
    # survivor-to-be; the other is asked to merge into it.
    if link.owner < entry.alias_of:
        moved = trusted(LeadState, {**entry.__dict__, "alias_of": link.owner})
        return moved, [MergeRequest(at=entry.alias_of, into=link.owner, why=link.why)]
    return None, [MergeRequest(at=link.owner, into=entry.alias_of, why=link.why)]


def on_request(
    entry: LeadState | None, request: MergeRequest
) -> tuple[LeadState | None, list[Decision]]:
    """The entry at `request.at` and lead `request.into` are one person."""
    if entry is None:  # nothing here (yet): point the key at the lead
        return _alias(request.at, to=request.into), []
    if entry.alias_of is not None:
        if entry.alias_of in (request.into, request.at):
            return None, []
        return None, [MergeRequest(at=entry.alias_of, into=request.into, why=request.why)]
    if entry.pk == request.into:
        return None, []
    if entry.pk < request.into:  # this lead survives: the other merges into it
        return None, [MergeRequest(at=request.into, into=entry.pk, why=request.why)]
    gone = _alias(entry.pk, to=request.into, lead_id=entry.lead_id, first_ms=entry.first_ms)
    return gone, [MergeIn(into=request.into, lead=entry, why=request.why)]


def on_merge_in(
    entry: LeadState | None,
    merge_in: MergeIn,
    *,
    model: LeadModel,
    rotation: RoutingState | Mapping[str, int],
    limits: Limits,
    now: datetime,
) -> Applied:
    """A lead's whole state arrives to be merged into the lead here."""
    other = merge_in.lead
    if entry is not None and entry.alias_of is not None:
        forward = MergeIn(into=entry.alias_of, lead=other, why=merge_in.why)
        return Applied(entry, (forward,), as_state(rotation))
    if entry is None:  # the survivor is not here: keep the lead under this key instead
        links = other.links if other.pk in other.links else (*other.links, other.pk)
        entry = trusted(LeadState, {**other.__dict__, "pk": merge_in.into, "links": links})
        return Applied(entry, (), as_state(rotation))
    if other.lead_id == entry.lead_id or other.lead_id in entry.merged:
        return Applied(entry, (), as_state(rotation))  # a re-delivery: already merged
    applied = merge_leads(entry, other, model=model, rotation=rotation, limits=limits, now=now)
    merged = applied.lead
    announce = trusted(
        LeadMerged,
        dict(
            schema_version=SCHEMA_VERSION,
            lead_id=merged.lead_id,
            merged_lead_ids=(other.lead_id, *other.merged),
            why=merge_in.why,
            score=merged.score,
            stage=merged.stage,
            model_version=model.version,
            created_at=now,
        ),
    )
    return Applied(merged, (*applied.decisions, announce), applied.rotation)


def _alias(key: str, *, to: str, lead_id: str | None = None, first_ms: int = 0) -> LeadState:
    return LeadState(lead_id=lead_id or lead_id_for(key), pk=key, alias_of=to, first_ms=first_ms)


def _as_event(merge_in: MergeIn) -> PersonEvent:
    return PersonEvent(
        mid=f"merge:{merge_in.lead.lead_id}",
        pk=merge_in.into,
        kind="identify",
        name="",
        ts_ms=merge_in.lead.last_ms,
    )


class LocalNetwork:
    """The whole graph in one process, for `model replay` and tests: messages one entry
    sends to another are delivered at once instead of through Kafka."""

    def __init__(self, *, model: LeadModel, limits: Limits, now: datetime) -> None:
        self.entries: dict[str, LeadState] = {}
        self.rotation = RoutingState()
        self.model, self.limits, self.now = model, limits, now
        self.duplicates = 0

    def send(self, events: Iterable[PersonEvent]) -> list[Decision]:
        """Apply events and every message they cause; return the records that go out."""
        return self._run(PersonEventBatch(events=tuple(events)))

    def send_forget(self, forget: Forget) -> list[Decision]:
        """Deliver an erasure request and every message it causes."""
        return self._run(to_batch([forget]))

    def _run(self, first: PersonEventBatch) -> list[Decision]:
        out: list[Decision] = []
        queue: list[PersonEventBatch] = [first]
        while queue:
            batch = queue.pop(0)
            result = apply_person_batch(
                self.entries,
                batch,
                model=self.model,
                rotation=self.rotation,
                limits=self.limits,
                now=self.now,
            )
            self.entries.update(result.leads)
            for key in result.deleted:
                self.entries.pop(key, None)
            self.rotation = result.rotation
            self.duplicates += result.duplicates
            if result.failed:
                raise RuntimeError(result.failed[0][1])
            internal = [d for d in result.decisions if isinstance(d, _INTERNAL)]
            out.extend(d for d in result.decisions if not isinstance(d, _INTERNAL))
            if internal:
                queue.append(to_batch(internal))
        return out

    def lead_of(self, key: str) -> LeadState | None:
        """The lead an identifier or person key resolves to."""
        entry = self.entries.get(key)
        for _ in range(64):
            if entry is None or entry.alias_of is None:
                return entry
            entry = self.entries.get(entry.alias_of)
        raise RuntimeError(f"alias chain from {key} does not end")


_INTERNAL = (PersonEvent, Link, MergeRequest, MergeIn, FeedbackIn, Forget, Unlink)


def to_batch(messages: Iterable[Decision]) -> PersonEventBatch:
    events, links, requests, merge_ins, feedback = [], [], [], [], []
    forgets: list[Forget] = []
    unlinks: list[Unlink] = []
    for m in messages:
        if isinstance(m, PersonEvent):
            events.append(m)
        elif isinstance(m, Link):
            links.append(m)
        elif isinstance(m, MergeRequest):
            requests.append(m)
        elif isinstance(m, MergeIn):
            merge_ins.append(m)
        elif isinstance(m, FeedbackIn):
            feedback.append(m)
        elif isinstance(m, Forget):
            forgets.append(m)
        elif isinstance(m, Unlink):
            unlinks.append(m)
    # Built from records the core made itself: no need to validate them again.
    return trusted(
        PersonEventBatch,
        dict(
            events=tuple(events),
            links=tuple(links),
            requests=tuple(requests),
            merge_ins=tuple(merge_ins),
            feedback=tuple(feedback),
            forgets=tuple(forgets),
            unlinks=tuple(unlinks),
        ),
    )
