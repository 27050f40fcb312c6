"""Input contract: one Segment Spec message (track, page, identify, group) per record."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

__all__ = [
    "MAX_ID_LENGTH",
    "EngagementEvent",
    "GroupEvent",
    "IdentifyEvent",
    "PageEvent",
    "TrackEvent",
]

#: Ids longer than this are refused: they are either garbage or an attack on state size.
MAX_ID_LENGTH = 256

Id = Annotated[str, Field(min_length=1, max_length=MAX_ID_LENGTH)]


class _SegmentMessage(BaseModel):
    """Fields common to every Segment message.

    The Segment Spec is not ours, so unknown fields are ignored rather than refused:
    SDKs add fields (`sentAt`, `integrations`, `channel`, ...) that scoring does not need.
    """

    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)

    message_id: Id = Field(alias="messageId")
    anonymous_id: Id | None = Field(default=None, alias="anonymousId")
    user_id: Id | None = Field(default=None, alias="userId")
    timestamp: datetime
    context: dict[str, Any] = Field(default_factory=dict)

    @field_validator("timestamp", mode="before")
    @classmethod
    def _iso_8601_only(cls, value: Any) -> Any:
        # pydantic would take a number as a Unix time; the contract says ISO 8601 text.
        if not isinstance(value, str):
            raise PydanticCustomError("invalid_timestamp", "timestamp must be an ISO 8601 string")
        return value

    @field_validator("timestamp")
    @classmethod
    def _aware_utc(cls, value: datetime) -> datetime:
        # Naive timestamps are read as UTC, as Segment does.
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        try:
            return value.astimezone(UTC)
        except OverflowError:  # 0001-01-01T00:00+01:00 is a valid input but not a UTC time
            raise PydanticCustomError(
                "invalid_timestamp", "timestamp is out of range once converted to UTC"
            ) from None

    @model_validator(mode="after")
    def _someone(self) -> _SegmentMessage:
        if self.anonymous_id is None and self.user_id is None:
            raise PydanticCustomError(
                "missing_identity", "at least one of anonymousId or userId is required"
            )
        return self


class TrackEvent(_SegmentMessage):
    """A named action: `Whitepaper Downloaded`, `Demo Requested`, `Email Link Clicked`."""

    type: Literal["track"]
    event: Annotated[str, Field(min_length=1, max_length=MAX_ID_LENGTH)]
    properties: dict[str, Any] = Field(default_factory=dict)


class PageEvent(_SegmentMessage):
    """A page view; the path comes from `properties.path`, else from `properties.url`."""

    type: Literal["page"]
    name: str | None = None
    properties: dict[str, Any] = Field(default_factory=dict)


class IdentifyEvent(_SegmentMessage):
    """Who the visitor is: links `anonymousId` to `userId` and carries person traits."""

    type: Literal["identify"]
    traits: dict[str, Any] = Field(default_factory=dict)


class GroupEvent(_SegmentMessage):
    """The account the person belongs to, with company traits."""

    type: Literal["group"]
    group_id: str | None = Field(default=None, alias="groupId")
    traits: dict[str, Any] = Field(default_factory=dict)


EngagementEvent = Annotated[
    TrackEvent | PageEvent | IdentifyEvent | GroupEvent,
    Field(discriminator="type"),
]
