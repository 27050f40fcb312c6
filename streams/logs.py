"""Log output: one JSON object per line for production, or text for humans; no emails in either.

Leads are people: an email address in a log line is personal data copied to wherever logs go.
Every address in a message (and in extra fields) is replaced by `email:<first 8 hex digits
of its sha256>`, the same for the same address, so lines about one person can still be
followed without naming them.
"""

from __future__ import annotations

import hashlib
import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any, Literal

import orjson

__all__ = ["JsonFormatter", "LogFormat", "RedactingFormatter", "hash_emails", "logging_config"]

LogFormat = Literal["text", "json"]

_EMAIL = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")

# Attributes every LogRecord has; anything else on a record came from `extra=`.
_STANDARD = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys() | {"message", "asctime"}
)


def _hash(match: re.Match[str]) -> str:
    digest = hashlib.sha256(match[0].lower().encode()).hexdigest()
    return f"email:{digest[:8]}"


def hash_emails(text: str) -> str:
    """`text` with every email address replaced by `email:<8 hex of sha256(lowercased)>`."""
    return _EMAIL.sub(_hash, text) if "@" in text else text


def _clean(value: Any) -> Any:
    if isinstance(value, str):
        return hash_emails(value)
    if isinstance(value, bool | int | float) or value is None:
        return value
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_clean(v) for v in value]
    return hash_emails(repr(value))


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ISO 8601), level, logger, message, extra fields,
    and `exc_info` as text when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": hash_emails(record.getMessage()),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_") and key not in out:
                out[key] = _clean(value)
        if record.exc_info:
            out["exc_info"] = hash_emails(self.formatException(record.exc_info))
        if record.stack_info:
            out["stack_info"] = hash_emails(self.formatStack(record.stack_info))
        return orjson.dumps(out, default=repr).decode()


class RedactingFormatter(logging.Formatter):
    """The text format, with email addresses hashed as in the JSON one."""

    def format(self, record: logging.LogRecord) -> str:
        return hash_emails(super().format(record))


_TEXT_FORMAT = "[%(asctime)s] [%(process)d] [%(levelname)s] %(name)s: %(message)s"


def logging_config(*, log_format: LogFormat, level: str) -> dict[str, Any]:
    """A `logging.config.dictConfig` dict: one handler on stdout in the chosen format."""
    formatter: dict[str, Any] = (
        {"()": JsonFormatter}
        if log_format == "json"
        else {"()": RedactingFormatter, "format": _TEXT_FORMAT}
    )
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"leadstream": formatter},
        "handlers": {
            "stdout": {
                "class": "logging.StreamHandler",
                "formatter": "leadstream",
                "stream": sys.stdout,
            }
        },
        "root": {"level": level.upper(), "handlers": ["stdout"]},
    }
