"""Log formatting: one JSON object per line, no email address in any output."""

from __future__ import annotations

import hashlib
import io
import json
import logging
import logging.config

import pytest

from streams.logs import JsonFormatter, RedactingFormatter, hash_emails, logging_config

EMAIL = "Jane.Doe+promo@Acme-Robotics.co.jp"
HASHED = "email:" + hashlib.sha256(EMAIL.lower().encode()).hexdigest()[:8]


def _record(msg: str, *args: object, **extra: object) -> logging.LogRecord:
    record = logging.LogRecord("streams.app", logging.WARNING, __file__, 1, msg, args, None)
    for key, value in extra.items():
        setattr(record, key, value)
    return record


def test_a_json_line_has_time_level_logger_message_and_extra_fields() -> None:
    line = JsonFormatter().format(_record("lead %s routed", "ld_1", rep_id="carla", batch=3))
    assert "\n" not in line
    out = json.loads(line)
    assert out["level"] == "warning"
    assert out["logger"] == "streams.app"
    assert out["message"] == "lead ld_1 routed"
    assert out["time"].endswith("+00:00")
    assert out["rep_id"] == "carla" and out["batch"] == 3


@pytest.mark.parametrize(
    "record",
    [
        _record(f"identified as {EMAIL}"),
        _record("identified as %s", EMAIL),
        _record("lead", contact={"emails": [EMAIL]}),
        _record("lead", email=EMAIL),
    ],
)
def test_an_email_never_appears_in_a_json_line(record: logging.LogRecord) -> None:
    line = JsonFormatter().format(record)
    assert EMAIL.lower() not in line.lower()
    assert "acme-robotics" not in line.lower()
    assert HASHED in line


def test_an_email_in_an_exception_is_hashed() -> None:
    try:
        raise ValueError(f"bad lead {EMAIL}")
    except ValueError:
        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", (), None)
        import sys

        record.exc_info = sys.exc_info()
    out = json.loads(JsonFormatter().format(record))
    assert "ValueError" in out["exc_info"] and EMAIL not in out["exc_info"]
    assert HASHED in out["exc_info"]


def test_the_same_address_hashes_the_same_whatever_its_case() -> None:
    assert hash_emails(f"a {EMAIL} b {EMAIL.upper()}") == f"a {HASHED} b {HASHED}"
    assert hash_emails("no address here: @mention, user@, @host.com") == (
        "no address here: @mention, user@, @host.com"
    )


def test_the_text_format_hashes_emails_too() -> None:
    line = RedactingFormatter("%(levelname)s %(message)s").format(_record("to %s", EMAIL))
    assert line == f"WARNING to {HASHED}"


@pytest.mark.parametrize("log_format", ["json", "text"])
def test_logging_config_writes_the_chosen_format_at_the_chosen_level(
    log_format: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    stream = io.StringIO()
    monkeypatch.setattr("sys.stdout", stream)
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    try:
        logging.config.dictConfig(logging_config(log_format=log_format, level="warning"))  # type: ignore[arg-type]
        logging.getLogger("streams.test").info("hidden %s", EMAIL)
        logging.getLogger("streams.test").warning("shown %s", EMAIL)
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1 and EMAIL not in lines[0] and HASHED in lines[0]
    if log_format == "json":
        assert json.loads(lines[0])["message"] == f"shown {HASHED}"
    else:
        assert lines[0].endswith(f"[WARNING] streams.test: shown {HASHED}")
