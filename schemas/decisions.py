"""Decision records Leadstream emits: scores, SFA hand-offs, rep alerts, dead letters."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "SCHEMA_VERSION",
    "UNKNOWN",
    "AccountScored",
    "Activity",
    "Authority",
    "BreakdownLine",
    "Budget",
    "DeadLetter",
    "DlqReason",
    "HandOff",
    "LeadForgotten",
    "LeadMerged",
    "LeadScored",
    "NamedScore",
    "Need",
    "RepAlert",
    "SlaEvent",
    "Stage",
    "Timeline",
    "trusted",
]

_M = TypeVar("_M", bound=BaseModel)

#: Bumped on any change a consumer must know about; every record carries it.
SCHEMA_VERSION = 2

#: Written where a qualifying fact (timeline, budget, authority) is not known yet.
UNKNOWN = "unknown"

#: The lifecycle: engagement moves a lead up to `mql`; sales feedback moves it on to `sal`
#: (accepted), `opportunity`, `won` or `lost`; `recycled` sends it back to marketing.
Stage = Literal[
    "anonymous",
    "known",
    "engaged",
    "mql",
    "sal",
    "opportunity",
    "won",
    "lost",
    "recycled",
]

Grade = Literal["A", "B", "C", "D"]

#: Purchase timing and BANT buckets a hand-off carries (streams/qualify.py reads answers
#: in Japanese and English into them); the answer as given travels beside each.
Timeline = Literal[
    "within_1_month",
    "within_3_months",
    "within_6_months",
    "within_12_months",
    "over_12_months",
    "no_plan",
    "unknown",
]
Budget = Literal["approved", "planned", "none", "unknown"]
Authority = Literal["decision_maker", "influencer", "user", "unknown"]
Need = Literal["confirmed", "exploring", "none", "unknown"]

DlqReason = Literal[
    "empty_value",
    "too_large",
    "not_utf8",
    "invalid_json",
    "not_object",
    "unknown_type",
    "missing_field",
    "wrong_type",
    "invalid_timestamp",
    "missing_identity",
    "invalid_value",
    "processing_error",
    # sales feedback (sfa.feedback)
    "unknown_lead",
    "out_of_order",
]


class _Record(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: int = SCHEMA_VERSION


class BreakdownLine(BaseModel):
    """One rule's share of a score; the lines of a breakdown add up to the score exactly."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    rule: str = Field(
        description="Rule id from the lead model, prefixed by what it is: engagement:, "
        "cap:, decay: or fit:."
    )
    label: str
    points: int
    count: int = Field(default=1, description="How many events or traits the line covers.")


class Activity(BaseModel):
    """One thing the lead did, as a rep should read it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    at: datetime
    kind: Literal["page", "track", "identify", "group"]
    label: str


class NamedScore(BaseModel):
    """One of the model's named scores for a lead; its breakdown sums to `points`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    points: int
    threshold: int
    breakdown: tuple[BreakdownLine, ...]


class LeadScored(_Record):
    """`leads.scored`, keyed by lead_id: every change of a lead's scores, grade or stage."""

    lead_id: str
    score: int = Field(description="The primary (first) score of the model.")
    previous_score: int
    breakdown: tuple[BreakdownLine, ...] = Field(description="Of the primary score.")
    scores: tuple[NamedScore, ...] = Field(description="Every named score, primary first.")
    fit: int
    grade: Grade
    fit_breakdown: tuple[BreakdownLine, ...]
    stage: Stage
    previous_stage: Stage
    reason: str | None = Field(description="Why the stage changed; null when it did not.")
    model_version: str
    message_id: str = Field(description="The event that caused the change.")
    occurred_at: datetime = Field(description="Event time of that event.")
    created_at: datetime


class HandOff(_Record):
    """`leads.routed`, keyed by lead_id: the hand-off an SFA consumes (upsert by lead_id)."""

    handoff_id: str = Field(description="Deterministic: a re-delivery has the same id.")
    lead_id: str
    reason: Literal["mql", "hot_trigger"]
    trigger: str | None
    email: str | None
    name: str | None
    company: str | None
    account_domain: str | None
    account_id: str | None = Field(description="The CRM account matched, if any.")
    account_match: Literal["domain", "company_name"] | None = Field(
        description="How the account was matched: email domain, or fuzzy company name."
    )
    account_match_confidence: float | None = Field(description="0-1; 1 for a domain match.")
    rep_id: str
    rep_name: str
    rep_email: str
    routing_rule: str = Field(
        description="Why this rep: account_owner (the CRM's), a routing rule's id, "
        "account_domain, territory_round_robin (models without routing rules), fallback, "
        "sla_reassigned."
    )
    routing_team: str | None = Field(description="The team whose rotation chose the rep.")
    routing_trail: tuple[str, ...] = Field(
        description="Every routing rule tried, matched or failed, and why: the audit trail."
    )
    score: int
    breakdown: tuple[BreakdownLine, ...]
    qualified_by: tuple[str, ...] = Field(description="Scores at or over their threshold.")
    fit: int
    grade: Grade
    stage: Stage
    purchase_timeline: Timeline = Field(
        description=f"When they plan to buy, as a bucket; '{UNKNOWN}' when not said or unclear."
    )
    purchase_timeline_text: str | None = Field(description="The answer as given, if any.")
    budget: Budget
    budget_text: str | None
    authority: Authority
    authority_text: str | None
    need: Need
    need_text: str | None
    recent_activity: tuple[Activity, ...]
    model_version: str
    created_at: datetime


class RepAlert(_Record):
    """`rep.alerts`, keyed by rep_id: tell a rep now that a lead is hot."""

    alert_id: str = Field(description="Deterministic from lead, trigger and the causing event.")
    rep_id: str
    rep_name: str
    rep_email: str
    lead_id: str
    email: str | None
    company: str | None
    trigger: str
    message: str
    score: int
    model_version: str
    event_at: datetime = Field(
        description="Event time of what made the alert go out: the trigger event, or the "
        "identify that revealed who fired a trigger while anonymous."
    )
    created_at: datetime


class LeadMerged(_Record):
    """`leads.merged`, keyed by the surviving lead_id: leads found to be one person.

    The SFA merges the same records: `merged_lead_ids` now live on as `lead_id`. Their
    events count once in the surviving lead's score and history.
    """

    lead_id: str = Field(description="The surviving lead (the one first seen).")
    merged_lead_ids: tuple[str, ...]
    why: str = Field(description="The identifier they share: userId, email or crm_id.")
    score: int = Field(description="The surviving lead's primary score after the merge.")
    stage: Stage
    model_version: str
    created_at: datetime


class LeadForgotten(_Record):
    """`leads.forgotten`, compacted, keyed by lead_id (by `request_id` when nobody was
    found): a person's lead was erased, or there was nothing to erase.

    Downstream systems delete what they hold for every id in `lead_id` and
    `merged_lead_ids`: records Leadstream wrote before the erasure stay on its output
    topics until their retention ends. Never carries the email or userId in clear.
    """

    request_id: str
    found: bool = Field(description="false: no lead is known by this identifier.")
    lead_id: str | None = Field(description="The erased lead; null when not found.")
    merged_lead_ids: tuple[str, ...] = Field(description="Leads merged into it, erased too.")
    identifier: Literal["email", "userId"]
    identifier_sha256: str = Field(
        description="SHA-256 (hex) of the email trimmed and lowercased, or of the userId."
    )
    identifiers_deleted: int = Field(
        description="Identifier entries (userId, email, CRM id, anonymousIds, merged leads' "
        "keys) deleted with it, in their own partitions."
    )
    sla_stopped: bool = Field(description="A hand-off SLA clock was running and is gone.")
    reason: str
    requested_at: datetime
    created_at: datetime


class SlaEvent(_Record):
    """`leads.sla`, keyed by lead_id: every step of a hand-off's acceptance clock."""

    lead_id: str
    handoff_id: str
    priority: Literal["hot", "mql"]
    step: Literal["started", "reminded", "escalated", "reassigned", "accepted", "stopped"]
    rep_id: str = Field(description="The rep the clock runs for (before a reassignment).")
    to_rep_id: str | None = Field(description="reassigned: the next rep; escalated: the manager.")
    started_at: datetime
    due_at: datetime | None = Field(description="When the next step happens, if nobody acts.")
    time_to_accept_s: float | None = Field(description="accepted: seconds from the hand-off.")
    reason: str
    model_version: str
    created_at: datetime


class AccountScored(_Record):
    """`accounts.scored`, keyed by account domain: an account's roll-up changed."""

    account: str = Field(description="The company email domain.")
    score: int = Field(description="Sum of its contacts' primary scores.")
    previous_score: int
    contacts: int = Field(description="Contacts with a score.")
    engaged_contacts: int = Field(description="Contacts counted toward the buying group.")
    buying_group: bool
    rep_id: str | None
    model_version: str
    occurred_at: datetime
    created_at: datetime


class DeadLetter(_Record):
    """`engagement.dlq`: an input that could not be used, kept whole with the reason."""

    reason: DlqReason
    message: str
    source_topic: str
    partition: int
    offset: int
    key: str | None
    value: str
    value_encoding: Literal["utf-8", "base64"]
    received_at: datetime


def trusted(cls: type[_M], values: dict[str, Any]) -> _M:
    """Build a model from values the core computed itself, skipping validation.

    `values` must name every field. pydantic's model_construct does the same but also fills
    defaults field by field, which costs more than the rest of scoring an event. Since every
    field is set, the instances of a class share one fields-set: pydantic copies it when it
    copies a model, and only ever adds a field name to it, which is already there.
    """
    fields = _ALL_FIELDS.get(cls)
    if fields is None:
        if cls.__new__ is not object.__new__:
            raise TypeError(f"{cls.__name__} defines __new__: not built by trusted()")
        fields = _ALL_FIELDS[cls] = set(cls.model_fields)
    # BaseModel's slots set through their descriptors: object.__setattr__ would look each
    # one up on the class first (a third of this function's cost; it runs ~3 times an event).
    obj = _new(cls)
    _set_dict(obj, values)
    _set_fields_set(obj, fields)
    _set_extra(obj, None)
    _set_private(obj, None)
    return obj


_new = object.__new__
_set_dict = BaseModel.__dict__["__dict__"].__set__
_set_fields_set = BaseModel.__dict__["__pydantic_fields_set__"].__set__
_set_extra = BaseModel.__dict__["__pydantic_extra__"].__set__
_set_private = BaseModel.__dict__["__pydantic_private__"].__set__
#: Each model class's field names (a cache: the classes do not change).
_ALL_FIELDS: dict[type[BaseModel], set[str]] = {}
