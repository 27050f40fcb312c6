"""Records of the rep notifier: alerts it could not deliver, and deliveries it made."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from schemas.decisions import SCHEMA_VERSION, RepAlert

__all__ = ["ChannelType", "Delivered", "DlqCause", "UndeliveredAlert"]

#: The kinds of channel a rep can be notified on (the channels file's `type`).
ChannelType = Literal["slack", "webhook", "email"]

#: Why a delivery was given up: the receiver refused it for good (a 4xx other than 408/429,
#: an SMTP 5xx), every attempt failed, or the channel's circuit was open.
DlqCause = Literal["permanent_error", "retries_exhausted", "circuit_open"]


class _Record(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: int = SCHEMA_VERSION


class UndeliveredAlert(_Record):
    """`rep.alerts.dlq`, keyed by rep_id: an alert one of a rep's channels did not receive."""

    alert: RepAlert = Field(description="The alert as read from rep.alerts.")
    rep_id: str
    channel: ChannelType
    channel_id: str = Field(
        description="`<type>:<hash of the destination>`: which of the rep's channels."
    )
    cause: DlqCause
    attempts: int = Field(description="Delivery attempts made (0: the circuit was open).")
    last_error: str = Field(description="What the last attempt (or the circuit) said.")
    failed_at: datetime


class Delivered(_Record):
    """`rep.alerts.delivered` (compacted), keyed by `<alert_id>|<channel_id>`: a delivery made.

    Read back at start-up so that an alert read again after a restart or a rebalance is not
    delivered to the same channel twice.
    """

    rep_id: str
    channel: ChannelType
    attempts: int
    alert_created_at: datetime = Field(
        description="The alert's created_at: entries older than the dedupe window are dropped."
    )
    delivered_at: datetime
