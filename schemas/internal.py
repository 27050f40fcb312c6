"""Records on Leadstream's own internal topics; not a contract for other consumers."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, field_validator

from schemas.decisions import Stage
from schemas.feedback import SalesFeedback

__all__ = [
    "ContactUpdate",
    "ContactUpdateBatch",
    "FeedbackIn",
    "Forget",
    "LeadState",
    "Link",
    "MergeIn",
    "MergeRequest",
    "PersonEvent",
    "PersonEventBatch",
    "TraitValue",
    "Unlink",
]

TraitValue = str | int | float | bool | None


class PersonEvent(BaseModel):
    """A validated, normalized engagement event, addressed to one person.

    Short field names: these are written once per event on the repartition topic.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    mid: str  # Segment messageId
    pk: str  # person key: anonymousId if present, else userId
    kind: Literal["track", "page", "identify", "group"]
    name: str  # track event name, page path, or "" for identify/group
    ts_ms: int  # event time, Unix ms
    aid: str | None = None
    uid: str | None = None
    traits: dict[str, TraitValue] = {}
    asset: str | None = None  # what a track event was about (caps "once per asset")
    # UTM fields (`context.campaign.source` / `.name`), trimmed, at most 64 characters.
    source: str | None = None
    campaign: str | None = None
    # Where the intake read it on engagement.raw: (partition, offset). Lets a lead tell a
    # re-read after a crash from a new event, however many events came since.
    src: tuple[int, int] | None = None


class LeadState(BaseModel):
    """One person's lead. Short field names: this is written once per batch per lead.

    Bounded by construction: `seen`, `history`, `hits` and the cap memories are trimmed to
    fixed or settings-given lengths, and the per-rule maps have at most one entry per rule
    of the model.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    lead_id: str
    pk: str  # person key
    aids: tuple[str, ...] = ()  # anonymousIds seen (most recent last, at most 5)
    uid: str | None = None
    traits: dict[str, TraitValue] = {}
    # Engagement since each score last reset: rule id -> (raw points, counted points,
    # events, counted events, score id); "counted" is after caps. Rules a newer model
    # dropped stay until their score resets: their points are still in it.
    rules: dict[str, tuple[int, int, int, int, str]] = {}
    days: dict[str, tuple[tuple[int, int], ...]] = {}  # rule -> recent (UTC day, counted)
    assets: dict[str, tuple[str, ...]] = {}  # rule -> digests of assets counted
    # score id -> (decayed value at as_of, as_of ms, ms the current run started)
    decay: dict[str, tuple[float, int, int]] = {}
    scores: dict[str, int] = {}  # score id -> points as last reported
    score: int = 0  # the primary score as last reported
    fit: int = 0
    grade: str = "D"
    last_ms: int = 0  # latest event time seen: the lead's clock for decay
    hits: dict[str, tuple[int, ...]] = {}  # trigger id -> recent matching event times, ms
    fired: dict[str, int] = {}  # trigger id -> event time it last fired, ms
    pending: tuple[tuple[str, str, int], ...] = ()  # (trigger, messageId, ms) while anonymous
    stage: Stage = "anonymous"
    stage_ms: int = 0  # event time of the last stage change
    rep: str | None = None
    route_rule: str | None = None
    route_team: str | None = None
    route_trail: tuple[str, ...] = ()  # the routing rules tried, as sentences
    mql_ms: int | None = None
    # First touch: the UTM source and campaign of the first event that carried either
    # (in arrival order); never overwritten. Labels the live funnel and revenue metrics.
    source: str | None = None
    campaign: str | None = None
    # The highest engagement.raw offset applied, per "<person key>|<raw partition>": events
    # of one person on one raw partition arrive in offset order, so one at or below it is a
    # re-read (after a crash or a rebalance), not a new event.
    applied: dict[str, int] = {}
    model: str = ""  # version of the model that last scored this lead
    # The CRM account the lead matched (streams/matching.py), how, and how sure.
    account: str | None = None  # account_id
    account_via: str | None = None  # "domain" or "company_name"
    account_confidence: float | None = None
    account_owner: str | None = None  # the account's owner rep in the CRM
    account_domain: str | None = None  # the account's main domain: its roll-up key
    # Identity. An entry whose `alias_of` is set is not a lead but a pointer: the identifier
    # it is keyed by belongs to that lead (see streams/identity.py).
    alias_of: str | None = None
    first_ms: int = 0  # event time of the first event this lead applied
    links: tuple[str, ...] = ()  # identifier keys this lead has claimed (userId, email:...)
    events: int = 0  # events applied; more than len(history) means history was trimmed
    merged: tuple[str, ...] = ()  # lead ids merged into this one
    # Sales: event time of the latest feedback applied (older feedback is out of order),
    # and the hand-off SLA clock while it runs: (handoff id, priority, rep, started ms,
    # steps taken). None when no hand-off waits for acceptance.
    feedback_ms: int = 0
    sla: tuple[str, str, str, int, int] | None = None
    # Recent events, oldest first: (event ms, kind, name, asset). The scoring history a
    # `--rescore` replays, and the recent activity on a hand-off.
    history: tuple[tuple[int, str, str, str | None], ...] = ()
    # Digests of recent messageIds, oldest first: 16 hex characters each, in one string
    # (one object to copy and search per event, not a tuple of 32; ~100 bytes less state).
    seen: str = ""

    @field_validator("seen", mode="before")
    @classmethod
    def _seen_as_one_string(cls, value: object) -> object:
        """State written before the window was one string held a list of digests."""
        if isinstance(value, list | tuple) and all(isinstance(d, str) for d in value):
            return "".join(value)
        return value


class Link(BaseModel):
    """Identifier `key` (a userId, `email:<address>`) belongs to lead `owner`.

    Sent to the partition of `key`, where the identity graph keeps it as an alias entry.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    key: str
    owner: str  # person key of the claiming lead
    why: str  # what the identifier is: "userId", "email"


class MergeRequest(BaseModel):
    """The entry at `at` and lead `into` are one person; the lead whose key sorts last
    merges into the other."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    at: str
    into: str
    why: str


class MergeIn(BaseModel):
    """Lead `lead` (its whole state) merges into the lead at `into`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    into: str
    lead: LeadState
    why: str


class FeedbackIn(BaseModel):
    """A sales feedback record on its way to its lead: first to the entry `lead:<lead_id>`
    (the lead claimed it when it was handed off), then to the lead itself."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    to: str
    feedback: SalesFeedback
    offset: int = -1  # where it was read on sfa.feedback (for a dead letter)
    partition: int = -1


class Forget(BaseModel):
    """An erasure request on its way to the person's lead: first to the entry of the
    identifier it names (`email:<address>`, a userId), then to the lead it points at."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    to: str
    request_id: str
    identifier: Literal["email", "userId"]
    identifier_sha256: str
    reason: str = ""
    requested_ms: int  # when the erasure was requested, Unix ms


class Unlink(BaseModel):
    """Delete the entry `key` if it is an alias of one of `owners` (an erased lead and the
    person keys merged into it). Sent to the partition of `key`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    key: str
    owners: tuple[str, ...]


class PersonEventBatch(BaseModel):
    """`leadstream.person-events`: a micro-batch for one partition of the person key space:
    events, and the identity graph's messages to the entries of that partition."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    events: tuple[PersonEvent, ...]
    links: tuple[Link, ...] = ()
    requests: tuple[MergeRequest, ...] = ()
    merge_ins: tuple[MergeIn, ...] = ()
    feedback: tuple[FeedbackIn, ...] = ()
    forgets: tuple[Forget, ...] = ()
    unlinks: tuple[Unlink, ...] = ()


class ContactUpdate(BaseModel):
    """A contact's primary score changed: its account's roll-up must follow.

    On `leadstream.account-updates`, keyed by account (the company email domain), so all
    contacts of one account meet in one partition of the accounts table.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    account: str
    lead_id: str
    score: int
    ts_ms: int  # event time of the change
    rep: str | None  # the account owner the lead was routed to, if any
    mid: str  # the event that caused it: with lead_id, what makes a re-delivery idempotent
    model: str  # model version


class ContactUpdateBatch(BaseModel):
    """`leadstream.account-updates`: contact updates whose accounts share one partition."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    updates: tuple[ContactUpdate, ...]
