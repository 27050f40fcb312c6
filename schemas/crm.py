"""The record on `crm.accounts`: one CRM account (company), keyed by account_id.

Tombstone convention: a record keyed by an account_id with a null value deletes that account
(and compaction then forgets it). The CRM connector and `leadstream import accounts` write it.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = ["CRM_ACCOUNT_SCHEMA_VERSION", "CrmAccount", "normalize_domain"]

#: Bumped on any change a reader of `crm.accounts` must know about.
CRM_ACCOUNT_SCHEMA_VERSION = 1

_SCHEME = re.compile(r"^[a-z][a-z0-9+.-]*://")
_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")


def normalize_domain(value: str) -> str | None:
    """'https://www.Acme.com/about' -> 'acme.com'; None when it is not a domain name.

    Lowercase, no scheme, path, port, user or trailing dot, no leading `www.`; at least two
    labels. Internationalized names are kept in their ASCII (punycode) form, so a CRM that
    writes `例え.jp` and an email address at `xn--r8jz45g.jp` meet.
    """
    text = value.strip().lower()
    text = _SCHEME.sub("", text)
    text = text.split("/", 1)[0].split("?", 1)[0].split("#", 1)[0]
    text = text.rsplit("@", 1)[-1].split(":", 1)[0].strip().rstrip(".")
    if text.startswith("www."):
        text = text[4:]
    if not text.isascii():
        try:
            text = text.encode("idna").decode("ascii")
        except UnicodeError:
            return None
    labels = text.split(".")
    if len(labels) < 2 or not all(_LABEL.match(label) for label in labels):
        return None
    return text


Text = Annotated[str, Field(min_length=1, max_length=256)]


class CrmAccount(BaseModel):
    """A company as the CRM knows it: what lead-to-account matching and routing read."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: int = CRM_ACCOUNT_SCHEMA_VERSION
    account_id: Text = Field(description="The CRM's id of the account; the record key.")
    name: Text = Field(description="Company name as the CRM spells it (fuzzy-matched).")
    domains: tuple[str, ...] = Field(
        default=(),
        description="Email/web domains of the company, lowercase, without scheme or `www.`; "
        "subdomains of these match too.",
    )
    employees: int | None = Field(default=None, ge=0)
    industry: str | None = Field(default=None, max_length=256)
    country: str | None = Field(
        default=None, pattern=r"^[A-Z]{2}$", description="ISO 3166-1 alpha-2, upper case."
    )
    region: str | None = Field(default=None, max_length=256)
    owner_rep: str | None = Field(
        default=None, max_length=256, description="Id of the owning rep in the lead model."
    )
    updated_at: datetime

    @field_validator("account_id", "name", mode="before")
    @classmethod
    def _strip(cls, value: Any) -> Any:
        return value.strip() if isinstance(value, str) else value

    @field_validator("industry", "region", "owner_rep", mode="before")
    @classmethod
    def _blank_is_none(cls, value: Any) -> Any:
        if isinstance(value, str):
            return value.strip() or None
        return value

    @field_validator("country", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        if isinstance(value, str):
            return value.strip().upper() or None
        return value

    @field_validator("domains", mode="before")
    @classmethod
    def _domains(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list | tuple):
            return value  # pydantic words the type error
        out: list[str] = []
        for item in value:
            if not isinstance(item, str):
                raise ValueError(f"domains: {item!r} is not text")
            domain = normalize_domain(item)
            if domain is None:
                raise ValueError(f"domains: {item!r} is not a domain name")
            if domain not in out:
                out.append(domain)
        return tuple(out)

    @field_validator("updated_at")
    @classmethod
    def _aware_utc(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        try:
            return value.astimezone(UTC)
        except OverflowError:  # 0001-01-01T00:00+01:00 is a valid input but not a UTC time
            raise ValueError("updated_at is out of range once converted to UTC") from None
