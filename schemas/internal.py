"""Records on Leadstream's own internal topics; not a contract for other consumers."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

__all__ = ["PersonEvent", "PersonEventBatch", "TraitValue"]

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


class PersonEventBatch(BaseModel):
    """`leadstream.person-events`: a micro-batch of events whose people share one partition."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    events: tuple[PersonEvent, ...]
