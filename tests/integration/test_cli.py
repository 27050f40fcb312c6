"""The `leadstream` command as a user runs it: send, worker start-up checks, and the demo."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import orjson
import pytest

import streams
from loadtest.harness import process_tree
from streams.broker import free_port, port_is_free, wait_for_port
from streams.kafka_io import create_topics, read_until
from streams.topics import Topics
from tests.integration.conftest import Broker
from tests.integration.segment import page, track

pytestmark = pytest.mark.integration


def _leadstream(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "streams", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        cwd=cwd,
        timeout=timeout,
    )


def test_send_reports_bad_lines_by_number_and_sends_the_rest(
    broker: Broker, tmp_path: Path
) -> None:
    prefix = f"send{time.monotonic_ns()}."
    raw = Topics(prefix).raw
    asyncio.run(create_topics(broker.bootstrap, [raw], 2))
    lines = [
        orjson.dumps(page("s-1", "/pricing", anon="a-1")),
        b'{"type": "page", oops',
        b"",
        orjson.dumps(track("s-2", "Demo Requested", user="u-2")),
        orjson.dumps(
            {"type": "track", "messageId": "s-3", "event": "x", "timestamp": "2026-01-01T00:00:00Z"}
        ),
        orjson.dumps(page("s-4", "/", anon="a-4")),
    ]
    events = tmp_path / "events.jsonl"
    events.write_bytes(b"\n".join(lines) + b"\n")

    done = _leadstream(
        "send", str(events), "--broker", broker.url, env={"LEADSTREAM_TOPIC_PREFIX": prefix}
    )

    assert done.returncode == 1, done.stderr
    assert f"{events}:line 2: invalid_json" in done.stderr
    assert f"{events}:line 5: missing_identity" in done.stderr
    assert f"sent 3, rejected 2, blank 1 -> {raw}" in done.stdout
    records = asyncio.run(read_until(broker.bootstrap, raw, lambda r: len(r) >= 3, timeout_s=20))
    assert sorted(orjson.loads(r.value)["messageId"] for r in records) == ["s-1", "s-2", "s-4"]
    assert {r.key for r in records} == {b"a-1", b"u-2", b"a-4"}  # keyed by person


def test_send_to_an_unreachable_broker_fails_with_a_clear_message(tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    events.write_bytes(orjson.dumps(page("x-1", "/", anon="a")) + b"\n")
    done = _leadstream("send", str(events), "--broker", f"kafka://127.0.0.1:{free_port()}")
    assert done.returncode == 1
    assert "cannot send to kafka://127.0.0.1:" in done.stderr
    assert "Traceback" not in done.stderr


def test_worker_refuses_to_start_on_an_invalid_model(tmp_path: Path) -> None:
    bad = tmp_path / "model.yaml"
    bad.write_text(
        "version: '1'\nmql_threshold: 100\nreps:\n  - id: a\n    name: A\n"
        "    email: a@x\n    territory: {countries: US}\nfallback_rep: nobody\n"
    )
    done = _leadstream("worker", "--model", str(bad), "--broker", "kafka://127.0.0.1:1")
    assert done.returncode == 2
    assert "the lead model is invalid" in done.stderr
    assert f"{bad}:7: reps.0.territory.countries:" in done.stderr


def test_model_check_prints_a_summary_for_the_bundled_model() -> None:
    done = _leadstream("model", "check", "streams/demo/lead_model.yaml")
    assert done.returncode == 0
    assert done.stdout.startswith("ok: default v")
    assert "3 hot triggers" in done.stdout


@pytest.mark.parametrize(
    "stop",
    ["ctrl-c", "sigterm"],
)
def test_run_shows_real_alerts_and_ctrl_c_or_sigterm_leaves_no_process_behind(
    tmp_path: Path, stop: str
) -> None:
    port, web_port = free_port(), free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "streams", "run", "--port", str(port), "--web-port", str(web_port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=tmp_path,
        start_new_session=True,
    )
    assert proc.stdout is not None
    output: list[str] = []
    alerts: list[str] = []
    handoffs: list[str] = []
    deadline = time.monotonic() + 90
    try:
        while (len(alerts) < 3 or len(handoffs) < 3) and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            output.append(line)
            if " ALERT to " in line:
                alerts.append(line)
            if line.startswith("[hand-off]"):
                handoffs.append(line)
        # The inbox link printed opens Carla's inbox (the rep of Jane Doe's alert).
        inbox = re.search(r"^inbox +(http://\S+) \(rep Carla Gomez\)$", "".join(output), re.M)
        assert inbox, "".join(output)
        with urllib.request.urlopen(inbox.group(1), timeout=10) as response:
            assert '<h1>Inbox of <span id="rep-name">Carla Gomez</span></h1>' in (
                response.read().decode()
            )
        worker_pid = int(re.search(r"worker\s+pid (\d+)", "".join(output)).group(1))  # type: ignore[union-attr]
        # The worker's intake process (`LEADSTREAM_INTAKE_PROCESS=auto`) and the broker.
        children = process_tree(worker_pid)[1:]
        broker_pids = [p for p in process_tree(proc.pid)[1:] if p != worker_pid]
    finally:
        if stop == "ctrl-c":
            os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C sends to the foreground group
        else:
            proc.send_signal(signal.SIGTERM)  # `kill PID`, `timeout`, a supervisor
    rest, _ = proc.communicate(timeout=60)
    text = "".join(output) + rest

    assert proc.returncode == 0, text
    assert len(alerts) == 3, text
    assert any("Jane Doe downloaded a whitepaper" in a for a in alerts), text
    assert any("Kenji Sato viewed pricing 3 times within 7 days" in a for a in alerts), text
    assert any("Max Weber requested a demo" in a for a in alerts), text
    assert f"http://127.0.0.1:{web_port}/metrics" in text
    assert f"\ncore     {streams.CORE}\n" in text  # the scoring core the worker runs
    assert re.search(rf"ingest +http://127.0.0.1:{web_port}/v1/batch .*write key \w+", text)
    assert "timeline within_3_months ('this quarter'), budget approved ('approved')" in text
    assert "stopped the worker and the broker." in text
    for pid in [worker_pid, *children, *broker_pids]:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert port_is_free(port) and port_is_free(web_port)


def test_broker_command_serves_kafka_clients_until_stopped(tmp_path: Path) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "streams", "broker", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        assert proc.stdout is not None
        assert f"on 127.0.0.1:{port}" in proc.stdout.readline().decode()
        assert wait_for_port(port, timeout_s=15)
        bootstrap = f"127.0.0.1:{port}"
        asyncio.run(create_topics(bootstrap, ["probe"], 1))
        from streams.kafka_io import produce

        asyncio.run(produce(bootstrap, "probe", [(b"k", b"hello")]))
        records = asyncio.run(read_until(bootstrap, "probe", lambda r: len(r) >= 1, timeout_s=20))
        assert [r.value for r in records] == [b"hello"]
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)
    assert port_is_free(port)
