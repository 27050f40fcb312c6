"""Wire models of Leadstream: Segment input events and the decision records it emits."""

from schemas.decisions import (
    SCHEMA_VERSION,
    BreakdownLine,
    DeadLetter,
    HandOff,
    LeadScored,
    RepAlert,
)
from schemas.events import (
    EngagementEvent,
    GroupEvent,
    IdentifyEvent,
    PageEvent,
    TrackEvent,
)

__all__ = [
    "SCHEMA_VERSION",
    "BreakdownLine",
    "DeadLetter",
    "EngagementEvent",
    "GroupEvent",
    "HandOff",
    "IdentifyEvent",
    "LeadScored",
    "PageEvent",
    "RepAlert",
    "TrackEvent",
]
