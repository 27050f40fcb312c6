"""The record on `lead.model`: a published lead model, its YAML source kept verbatim."""

from __future__ import annotations

import hashlib
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["MODEL_RECORD_SCHEMA_VERSION", "PublishedModel", "text_sha256"]

#: Bumped on any change a reader of `lead.model` must know about.
MODEL_RECORD_SCHEMA_VERSION = 1


def text_sha256(text: str) -> str:
    """Hex SHA-256 of a model's text as UTF-8: what `PublishedModel.sha256` holds."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class PublishedModel(BaseModel):
    """One publish of a lead model; keyed by the model's name, so compaction keeps the newest.

    `name` and `version` repeat what `text` says, for people and tools reading the topic;
    a worker trusts only `text`, validated the same way as a model file.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: int = MODEL_RECORD_SCHEMA_VERSION
    name: str
    version: str
    text: str = Field(description="The lead model's YAML source, verbatim.")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="Hex SHA-256 of `text` (UTF-8).")
    rescore: bool = Field(
        default=False,
        description="Replay each lead's stored scoring history through this model on switching.",
    )
    published_at: datetime
    published_by: str | None = Field(default=None, description="user@host that published it.")

    @model_validator(mode="after")
    def _digest_matches(self) -> PublishedModel:
        # A record whose text was altered (or truncated) after publishing is not that model.
        if text_sha256(self.text) != self.sha256:
            raise ValueError("sha256 does not match the text")
        return self
