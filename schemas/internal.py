"""Records on Leadstream's own internal topics; not a contract for other consumers."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

__all__ = ["ContactUpdate", "ContactUpdateBatch", "PersonEvent", "PersonEventBatch", "TraitValue"]

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


class PersonEventBatch(BaseModel):
    """`leadstream.person-events`: a micro-batch of events whose people share one partition."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    events: tuple[PersonEvent, ...]


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
