"""`leadstream.erasure`: requests to forget a person (right to erasure), from the CLI."""

from __future__ import annotations

from typing import Self

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

__all__ = ["ErasureRequest"]


class ErasureRequest(BaseModel):
    """Forget everything Leadstream holds about the person with this email or userId.

    Keyed by `request_id`. It names the person in clear (the worker must find them), so
    the topic keeps it only a few days (`ERASURE_TOPIC_CONFIG`); the answer on
    `leads.forgotten` carries only a hash.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: int = 1
    request_id: str = Field(min_length=1, max_length=128, description="Unique; on the answer.")
    email: str | None = Field(
        default=None, min_length=3, max_length=320, pattern=r"^\s*[^@\s]+@[^@\s]+\s*$"
    )
    user_id: str | None = Field(default=None, min_length=1, max_length=256)
    reason: str = Field(default="", max_length=500, description="Why (e.g. a ticket number).")
    requested_at: AwareDatetime

    @model_validator(mode="after")
    def _one_identifier(self) -> Self:
        if (self.email is None) == (self.user_id is None):
            raise ValueError("give exactly one of email and user_id")
        return self
