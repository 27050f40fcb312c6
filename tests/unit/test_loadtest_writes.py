"""The latency phase's sizing table: what the pipeline wrote to Kafka per input event, by
topic, and in all (`loadtest/writes.py`), as the report prints it."""

from __future__ import annotations

import pytest

from loadtest.__main__ import print_table
from loadtest.writes import WrittenRecord, summarize


def _written(topic: str, n: int, key: int, value: int) -> list[WrittenRecord]:
    return [WrittenRecord(topic, key, value)] * n


def test_each_topic_s_records_and_bytes_are_per_input_event() -> None:
    written = [
        *_written("engagement.raw", 1000, 8, 892),
        *_written("leads-changelog", 500, 10, 1090),
        *_written("rep.alerts", 30, 10, 490),
    ]
    summary = summarize(written, events=1000, seconds=2)
    assert summary["topics"] == {
        "engagement.raw": {
            "records_per_1k_events": 1000.0,
            "bytes_per_event": 900,
            "kib_per_s": 439.5,
        },
        "leads-changelog": {
            "records_per_1k_events": 500.0,
            "bytes_per_event": 550,
            "kib_per_s": 268.6,
        },
        "rep.alerts": {"records_per_1k_events": 30.0, "bytes_per_event": 15, "kib_per_s": 7.3},
    }
    assert list(summary["topics"]) == ["engagement.raw", "leads-changelog", "rep.alerts"]


def test_the_totals_are_what_the_pipeline_wrote_beside_its_input() -> None:
    written = [
        *_written("engagement.raw", 100, 0, 1000),
        *_written("leads.scored", 50, 0, 1000),
        *_written("leads.routed", 10, 0, 500),
    ]
    summary = summarize(written, events=100, seconds=1)
    assert summary["written_bytes_per_event"] == 550  # (50,000 + 5,000) / 100; not the input
    assert summary["written_records_per_1k_events"] == 600.0
    assert summary["written_to_input_bytes"] == 0.55
    assert (summary["events"], summary["seconds"]) == (100, 1.0)


def test_tombstones_and_keyless_records_count_what_they_hold() -> None:
    summary = summarize(
        [WrittenRecord("leads-changelog", 12, 0), WrittenRecord("x", 0, 8)], events=2, seconds=1
    )
    assert summary["topics"]["leads-changelog"]["bytes_per_event"] == 6
    assert summary["topics"]["x"]["records_per_1k_events"] == 500.0


def test_without_the_input_in_the_window_there_is_no_ratio() -> None:
    summary = summarize(_written("leads.scored", 3, 1, 1), events=0, seconds=1)
    assert summary["written_to_input_bytes"] is None
    assert summary["topics"]["leads.scored"]["records_per_1k_events"] == 3000.0


def test_the_report_prints_a_row_per_topic_under_its_columns(
    capsys: pytest.CaptureFixture[str],
) -> None:
    written = [
        *_written("engagement.raw", 2000, 8, 892),
        *_written("leads-changelog", 1000, 10, 1090),
    ]
    print_table({"writes": summarize(written, events=2000, seconds=2)})
    lines = capsys.readouterr().out.splitlines()
    header = next(line for line in lines if "records_per_1k_events" in line)
    assert header.split() == ["topics", "records_per_1k_events", "bytes_per_event", "kib_per_s"]
    row = next(line for line in lines if "leads-changelog" in line)
    assert row.split() == ["leads-changelog", "500.0", "550", "537.1"]
    assert any(line.split() == ["written_to_input_bytes", "0.61"] for line in lines)
