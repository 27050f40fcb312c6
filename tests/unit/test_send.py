"""`leadstream send`: JSONL lines checked one by one, keyed by person, bad lines reported."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from streams.send import BadLine, prepare_lines


def line(**overrides: Any) -> bytes:
    doc: dict[str, Any] = {
        "type": "page",
        "messageId": "m-1",
        "anonymousId": "anon-1",
        "timestamp": "2026-11-20T09:00:00Z",
        "properties": {"path": "/pricing"},
    }
    doc.update(overrides)
    return orjson.dumps({k: v for k, v in doc.items() if v is not ...}) + b"\n"


def test_good_lines_are_keyed_by_person() -> None:
    lines = [
        line(messageId="a"),
        line(messageId="b", anonymousId="anon-2", userId="crm-2"),
        line(messageId="c", anonymousId=..., userId="crm-3"),
    ]

    prepared = prepare_lines(lines)

    assert [key for key, _ in prepared.records] == [b"anon-1", b"anon-2", b"crm-3"]
    assert [value for _, value in prepared.records] == [raw.rstrip(b"\n") for raw in lines]
    assert (prepared.bad, prepared.blank) == ([], 0)


def test_bad_lines_are_reported_by_number_and_do_not_stop_the_rest() -> None:
    lines = [
        line(messageId="ok-1"),
        b'{"type": "page", \n',
        line(messageId="ok-2"),
        line(messageId="no-one", anonymousId=...),
        b"[1, 2, 3]\n",
        line(messageId="ok-3", timestamp=1763629200),
        line(messageId="ok-4", userId="crm-4"),
    ]

    prepared = prepare_lines(lines)

    assert [(b.line, b.reason) for b in prepared.bad] == [
        (2, "invalid_json"),
        (4, "missing_identity"),
        (5, "not_object"),
        (6, "invalid_timestamp"),
    ]
    assert prepared.bad[3].message == "timestamp: timestamp must be an ISO 8601 string"
    assert [orjson.loads(v)["messageId"] for _, v in prepared.records] == ["ok-1", "ok-2", "ok-4"]


def test_bad_line_reads_as_a_sentence() -> None:
    (bad,) = prepare_lines([b"\n", line(messageId="")]).bad

    assert bad == BadLine(2, "invalid_value", "messageId: String should have at least 1 character")
    assert str(bad) == "line 2: invalid_value: messageId: String should have at least 1 character"


def test_blank_lines_are_counted_and_keep_line_numbers() -> None:
    lines = [b"\n", b"   \n", b"\r\n", line(messageId="x"), b"", b"\t\n", b"nope\n"]

    prepared = prepare_lines(lines)

    assert prepared.blank == 5
    assert len(prepared.records) == 1
    assert [(b.line, b.reason) for b in prepared.bad] == [(7, "invalid_json")]


@pytest.mark.parametrize("ending", [b"\n", b"\r\n", b""])
def test_line_endings_are_not_sent(ending: bytes) -> None:
    raw = line().rstrip(b"\n")

    prepared = prepare_lines([raw + ending])

    assert prepared.records == [(b"anon-1", raw)]


def test_raw_mode_passes_every_non_blank_line_through() -> None:
    lines = [
        line(messageId="ok"),
        b"not json\n",
        b"\xff\xfe\n",
        b"\n",
        line(messageId="no-one", anonymousId=...),
    ]

    prepared = prepare_lines(lines, validate=False)

    assert prepared.records == [
        (b"anon-1", line(messageId="ok").rstrip(b"\n")),
        (None, b"not json"),
        (None, b"\xff\xfe"),
        (None, line(messageId="no-one", anonymousId=...).rstrip(b"\n")),
    ]
    assert prepared.bad == []
    assert prepared.blank == 1


def test_empty_input() -> None:
    prepared = prepare_lines([])

    assert (prepared.records, prepared.bad, prepared.blank) == ([], [], 0)
