"""The load test's throughput figures: end to end (the ratios), the sustained slope, and what
each leaves out; the core its workers ran."""

from __future__ import annotations

import asyncio
import http.server
import threading
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import orjson
import pytest
from prometheus_client import CollectorRegistry, generate_latest

from loadtest import harness
from loadtest.__main__ import options
from loadtest.harness import (
    FINAL_POLL_S,
    POLL_S,
    LatencyProbe,
    Sample,
    Worker,
    end_to_end,
    next_poll_s,
    sustained,
    traffic,
)
from streams.metrics import Metrics


def test_the_slope_runs_between_10_and_90_percent_of_the_events() -> None:
    # Start-up (nothing applied for 5 s) and a slow tail do not count.
    samples = [Sample(0, 0), Sample(5, 0), Sample(6, 100), Sample(10, 900), Sample(30, 1000)]
    assert sustained(samples, 1000) == pytest.approx((900 - 100) / (10 - 6))


def test_with_several_workers_it_starts_once_every_worker_is_applying() -> None:
    """The first worker drains alone, then pauses while the late one joins the group: that
    is start-up, not the two workers' throughput."""
    samples = [
        Sample(0, 0, all_in=False),
        Sample(1, 150, all_in=False),  # 10%: one worker in
        Sample(4, 200, all_in=False),  # the group rebalances: both wait
        Sample(5, 300, all_in=True),  # both applying
        Sample(7, 1400, all_in=True),  # 93%
    ]
    assert sustained(samples, 1500) == pytest.approx((1400 - 300) / (7 - 5))


def test_a_worker_that_never_applies_before_90_percent_leaves_the_10_percent_mark() -> None:
    samples = [Sample(0, 0, False), Sample(2, 100, False), Sample(4, 950, False)]
    assert sustained(samples, 1000) == pytest.approx((950 - 100) / (4 - 2))


def test_a_run_too_short_for_the_slope_counts_from_the_last_idle_sample() -> None:
    samples = [Sample(0, 0), Sample(1, 0), Sample(3, 1000)]
    assert sustained(samples, 1000) == pytest.approx(1000 / 2)


def test_end_to_end_runs_from_the_intakes_first_read_to_the_last_event_applied() -> None:
    # Nothing read at 4 s, 5,000 read at 5 s: the first read is put at 4.5 s. The intake
    # reads the whole backlog early; the stage applies it by 14 s.
    samples = [
        Sample(0, 0, received=0),
        Sample(4, 0, received=0),
        Sample(5, 50, received=5_000),
        Sample(6, 100, received=10_000),
        Sample(10, 600, received=10_000),
        Sample(14, 1_000, received=10_000),
        Sample(15, 1_000, received=10_000),
    ]
    assert end_to_end(samples, 1_000) == pytest.approx(1_000 / (14 - 4.5))
    # The 10%-90% slope leaves the start out, and with it most of the reading: higher.
    assert sustained(samples, 1_000) == pytest.approx((1_000 - 100) / (14 - 6))
    assert sustained(samples, 1_000) > end_to_end(samples, 1_000)


def test_end_to_end_from_the_first_sample_when_the_intake_had_read_before_it() -> None:
    samples = [Sample(2, 0, received=300), Sample(4, 1_000, received=1_000)]
    assert end_to_end(samples, 1_000) == pytest.approx(1_000 / 2)


def test_the_last_second_of_a_drain_is_read_ten_times_as_often() -> None:
    """The end of the end-to-end time is the first read that finds every event applied: at
    one read per 0.5 s it would fall ~0.25 s late on average."""
    draining = [Sample(0.0, 0), Sample(0.5, 20_000), Sample(1.0, 40_000)]  # 40,000 events/s
    assert next_poll_s(draining, 300_000) == POLL_S  # 6.5 s to go
    assert next_poll_s(draining, 75_000) == FINAL_POLL_S  # 0.9 s to go
    assert next_poll_s([*draining, Sample(1.05, 42_000)], 75_000) == FINAL_POLL_S


def test_a_stalled_or_idle_drain_is_not_read_faster() -> None:
    stalled = [Sample(0.0, 10_000), Sample(0.5, 10_000), Sample(1.0, 10_000)]
    assert next_poll_s(stalled, 10_001) == POLL_S
    assert next_poll_s([Sample(0.0, 0)], 1) == POLL_S  # the first read: no rate yet


def _serving(text: str) -> tuple[http.server.HTTPServer, int]:
    """An HTTP server on a free port answering every GET with `text` (a /metrics page)."""

    class Page(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = text.encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            return None

    server = http.server.HTTPServer(("127.0.0.1", 0), Page)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, server.server_address[1]


@pytest.mark.parametrize("core", ["compiled", "python"])
def test_the_report_names_the_core_the_worker_exports(core: str) -> None:
    registry = CollectorRegistry()
    Metrics.create(registry).core_info.labels(core=core).set(1)
    server, port = _serving(generate_latest(registry).decode())
    try:
        worker = Worker(proc=None, web_port=port, log_path=Path("worker.log"))  # type: ignore[arg-type]
        assert worker.core() == core
    finally:
        server.shutdown()


def test_a_worker_that_does_not_answer_runs_an_unknown_core() -> None:
    server, port = _serving("")
    server.shutdown()
    server.server_close()
    worker = Worker(proc=None, web_port=port, log_path=Path("worker.log"))  # type: ignore[arg-type]
    assert worker.core() == "unknown"


def test_a_run_sends_browser_messages_unless_told_server_or_lean() -> None:
    def first(argv: list[str]) -> dict[str, object]:
        opts = options(["--leads", "50", *argv])
        message: dict[str, object] = orjson.loads(
            traffic(opts).next(now_ms=1_795_000_000_000).value
        )
        return message

    default, lean = first([]), first(["--payload", "lean"])
    server = first(["--payload", "server"])
    assert default["channel"] == "client" and "userAgent" in default["context"]  # type: ignore[operator]
    assert "channel" not in lean and lean["anonymousId"] == default["anonymousId"]
    assert str(server["messageId"]).startswith("node-next-") and "receivedAt" in server
    assert server["anonymousId"] == default["anonymousId"]
    with pytest.raises(SystemExit):
        options(["--payload", "mobile"])


def _alert(event_at_ms: int, produced_ms: int) -> Any:
    at = datetime.fromtimestamp(event_at_ms / 1000, UTC).isoformat()
    return SimpleNamespace(value=orjson.dumps({"event_at": at}), timestamp=produced_ms)


def test_the_latency_counts_only_alerts_of_events_sent_in_the_timed_window() -> None:
    """The warm-up's alert can reach the probe after the timed traffic began: one, ~5 s
    after its event, was counted as a run's max_ms."""
    probe = LatencyProbe(since_ms=1_700_000_010_000)
    probe(_alert(1_700_000_005_000, 1_700_000_010_020))  # the warm-up's, late
    probe(_alert(1_700_000_010_000, 1_700_000_010_040))
    probe(_alert(1_700_000_011_000, 1_700_000_011_060))
    summary = probe.summary()
    assert summary["alerts"] == 2
    assert summary["max_ms"] == 60


def test_writes_that_cannot_be_counted_are_an_error_in_the_report_not_a_lost_run(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    async def unreachable(bootstrap: str, prefixes: object) -> list[str]:
        raise TimeoutError("not read to their end within 120 s: lt1l.leads.scored")

    monkeypatch.setattr(harness, "run_topics", unreachable)
    writes = asyncio.run(harness._writes("127.0.0.1:1", "lt1", 1000, 1.0, since_ms=0, until_ms=1))
    assert writes == {
        "error": "TimeoutError('not read to their end within 120 s: lt1l.leads.scored')"
    }
    assert "could not be counted" in capsys.readouterr().err
