"""The intake process's metrics reach the worker's, and the load test counts the worker's
processes with it."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest

from loadtest.harness import Worker, process_tree
from streams.intake_process import apply_counters, intake_counters
from streams.metrics import Metrics


def _samples(registry: CollectorRegistry) -> set[str]:
    return {
        line
        for line in generate_latest(registry).decode().splitlines()
        if line.startswith(
            (
                "leadstream_events_received_total",
                "leadstream_events_valid_total",
                "leadstream_events_dead_lettered_total",
                "leadstream_intake_lag_records",
            )
        )
    }


def test_the_worker_shows_what_its_intake_process_counted() -> None:
    child_registry, worker_registry = CollectorRegistry(), CollectorRegistry()
    child, worker = Metrics.create(child_registry), Metrics.create(worker_registry)
    sent: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}

    def report() -> None:
        """What the child sends: counters as increments since the last report."""
        now = intake_counters(child)
        apply_counters(
            worker,
            {
                k: v if k[0] == "intake_lag" else v - sent.get(k, 0.0)
                for k, v in now.items()
                if v != sent.get(k)
            },
        )
        sent.update(now)

    child.events_received.inc(5)
    child.events_valid.inc(3)
    child.events_dead_lettered.labels(reason="invalid_json").inc(2)
    child.intake_lag.labels(topic="engagement.raw").set(40)
    report()
    child.events_received.inc(4)
    child.events_valid.inc(4)
    child.intake_lag.labels(topic="engagement.raw").set(0)
    report()
    report()  # nothing new: nothing counted twice

    assert _samples(worker_registry) == _samples(child_registry)
    assert "leadstream_events_received_total 9.0" in _samples(worker_registry)
    assert 'leadstream_intake_lag_records{topic="engagement.raw"} 0.0' in _samples(worker_registry)


def test_the_load_test_counts_a_workers_child_processes(tmp_path: Path) -> None:
    # A sleeping process whose child spends ~0.6 s of CPU, then sleeps: the worker's CPU
    # and memory figures include the child's.
    busy = "import time\nend = time.process_time() + 0.6\nwhile time.process_time() < end: pass\ntime.sleep(30)\n"
    parent = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import subprocess, sys, time\n"
            f"c = subprocess.Popen([sys.executable, '-c', {busy!r}])\n"
            "print(c.pid, flush=True)\n"
            "time.sleep(30)\n",
        ],
        stdout=subprocess.PIPE,
    )
    try:
        assert parent.stdout is not None
        child = int(parent.stdout.readline())
        worker = Worker(proc=parent, web_port=0, log_path=tmp_path / "w.log")
        deadline = time.monotonic() + 20
        while worker.cpu_s() < 0.5 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert process_tree(parent.pid) == [parent.pid, child]
        assert worker.cpu_s() >= 0.5
        assert worker.rss_mib() > 2 * _rss_mib(parent.pid) * 0.9
    finally:
        subprocess.run(["pkill", "-P", str(parent.pid)], check=False)
        parent.kill()
        parent.wait()


def _rss_mib(pid: int) -> float:
    pages = int(Path(f"/proc/{pid}/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
