"""`LEADSTREAM_INTAKE_PROCESS=true`: the intake runs in a child process of the worker; events
are scored, alerted and handed over as in-process, a clean stop commits, and a dead intake
process stops the worker without losing an event. The default, `auto`, runs it in a child
where the worker may use 2 CPUs, and in the worker's process on one."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from loadtest.harness import process_tree
from streams.cpus import available_cpus
from tests.integration.conftest import wait_for
from tests.integration.segment import identify, page, track
from tests.metrics_text import metric

pytestmark = pytest.mark.integration


def _intake_pids(worker: Any) -> list[int]:
    """The worker's processes running `streams.intake_process`."""
    assert worker.proc is not None
    found = []
    for pid in process_tree(worker.proc.pid)[1:]:
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if b"streams.intake_process" in cmdline:
            found.append(pid)
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_a_worker_with_an_intake_process_scores_alerts_and_commits_as_in_process(
    make_worker: Any,
) -> None:
    worker = make_worker(LEADSTREAM_INTAKE_PROCESS="true")
    wait_for(lambda: bool(_intake_pids(worker)), timeout_s=30, what="the intake process")
    (child,) = _intake_pids(worker)
    worker.send(identify("ip-1", anon="anon-ip", email="ivy@proc.example", country="US"))
    worker.read(worker.topics.scored, lambda r: len(r) >= 1)
    for n, path in enumerate(["/pricing", "/pricing/teams"], start=2):
        worker.send(page(f"ip-{n}", path, anon="anon-ip"))
        worker.read(worker.topics.scored, lambda r, n=n: len(r) >= n)
    worker.send(track("ip-4", "Whitepaper Downloaded", anon="anon-ip"))
    worker.send(b"{not json")

    scored = worker.read(worker.topics.scored, lambda r: any(s["score"] >= 50 for s in r))
    assert [s["score"] for s in scored] == [0, 10, 20, 50]
    alerts = worker.read(worker.topics.alerts, lambda r: len(r) >= 1, timeout_s=10)
    assert [a["trigger"] for a in alerts] == ["whitepaper-download"]
    dead = worker.read(worker.topics.dlq, lambda r: len(r) >= 1, timeout_s=10)
    assert [d["reason"] for d in dead] == ["invalid_json"]
    # The child's counts reach the worker's /metrics; its records are handed over.
    wait_for(
        lambda: (
            metric(worker.metrics(), "leadstream_events_received_total") == 5
            and metric(worker.metrics(), "leadstream_events_valid_total") == 4
        ),
        timeout_s=10,
        what="the intake process's counts on the worker's /metrics",
    )
    assert metric(worker.metrics(), "leadstream_handed_over_records_total") >= 1
    assert metric(worker.metrics(), "leadstream_events_processed_total") == 4
    readyz = worker.get_json("/readyz")
    assert readyz is not None and readyz[1]["checks"]["intake_group"] == "ok"

    # A clean stop: the child commits and exits with the worker; a new worker scores on
    # from the state written and reads nothing applied before again.
    assert worker.kill(signal.SIGTERM, timeout_s=60) == 0, worker.log()[-3000:]
    assert not _alive(child)
    restarted = make_worker(LEADSTREAM_INTAKE_PROCESS="true")
    restarted.send(page("ip-5", "/pricing", anon="anon-ip"))
    scored = restarted.read(restarted.topics.scored, lambda r: len(r) >= 5)
    assert [s["score"] for s in scored] == [0, 10, 20, 50, 60]
    wait_for(
        lambda: "leadstream_events_processed_total 1.0" in restarted.metrics(),
        timeout_s=10,
        what="only the new event processed",
    )


def test_the_worker_stops_when_its_intake_process_dies_and_no_event_is_lost(
    make_worker: Any,
) -> None:
    worker = make_worker(LEADSTREAM_INTAKE_PROCESS="true")
    worker.send(page("d-1", "/pricing", anon="anon-d"))
    worker.read(worker.topics.scored, lambda r: len(r) >= 1)
    (child,) = _intake_pids(worker)

    os.kill(child, signal.SIGKILL)
    # Without its intake the worker would read nothing more: it stops, for its
    # supervisor to start it again.
    assert worker.proc is not None
    deadline = time.monotonic() + 40
    while worker.proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    code = worker.proc.poll()
    assert code not in (None, 0), worker.log()[-3000:]
    assert "intake: its process failed" in worker.log()
    worker.kill(signal.SIGTERM)

    # Sent while no worker runs: the next one reads it.
    worker.send(page("d-2", "/pricing", anon="anon-d"))
    restarted = make_worker(LEADSTREAM_INTAKE_PROCESS="true")
    scored = restarted.read(restarted.topics.scored, lambda r: len(r) >= 2)
    assert [(s["message_id"], s["score"]) for s in scored] == [("d-1", 10), ("d-2", 20)]


def test_by_default_the_intake_runs_in_a_child_from_two_cpus(make_worker: Any) -> None:
    cpus = available_cpus()
    worker = make_worker()  # LEADSTREAM_INTAKE_PROCESS left at its default, auto
    worker.send(page("a-1", "/pricing", anon="anon-a"))
    worker.read(worker.topics.scored, lambda r: len(r) >= 1)
    if cpus >= 2:
        assert len(_intake_pids(worker)) == 1
        assert (
            f"intake: in a process of its own (LEADSTREAM_INTAKE_PROCESS=auto: {cpus:g} CPUs "
            "available, a child from 2)" in worker.log()
        )
    else:
        assert _intake_pids(worker) == []


def test_on_one_cpu_or_when_turned_off_the_intake_runs_in_the_worker(make_worker: Any) -> None:
    # A worker started on one core (the affinity its process inherits), as in a container
    # limited to one CPU, runs its intake in its own process, not a child; so does one told
    # not to.
    everything = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(everything)})
    try:
        one_cpu = make_worker()
    finally:
        os.sched_setaffinity(0, everything)
    one_cpu.send(page("o-1", "/pricing", anon="anon-o"))
    assert [s["score"] for s in one_cpu.read(one_cpu.topics.scored, lambda r: len(r) >= 1)] == [10]
    assert _intake_pids(one_cpu) == []
    assert (
        "intake: in the worker's process (LEADSTREAM_INTAKE_PROCESS=auto: 1 CPU available, "
        "a child from 2)" in one_cpu.log()
    )
    assert one_cpu.kill(signal.SIGTERM, timeout_s=60) == 0

    turned_off = make_worker(LEADSTREAM_INTAKE_PROCESS="false")
    turned_off.send(page("o-2", "/pricing", anon="anon-o"))
    scored = turned_off.read(turned_off.topics.scored, lambda r: len(r) >= 2)
    assert [s["score"] for s in scored] == [10, 20]
    assert _intake_pids(turned_off) == []
    assert "intake: in the worker's process (LEADSTREAM_INTAKE_PROCESS=false)" in (turned_off.log())
