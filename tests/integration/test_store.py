"""LEADSTREAM_STORE=rocksdb on a real broker: state kept on disk survives SIGKILLs, and
two workers on one host keep apart."""

from __future__ import annotations

import asyncio
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

from loadtest.faults import FaultOptions, run_faults
from tests.integration.conftest import Broker, Worker, wait_for

pytestmark = pytest.mark.integration


@pytest.mark.timeout(90)
def test_rocksdb_worker_killed_twice_and_restarted_on_its_data_dir_ends_like_a_clean_run(
    broker: Broker, tmp_path: Path
) -> None:
    """The clean run uses memory; the killed worker RocksDB, restarted on the same data dir
    and web port each time: the same alerts, hand-offs and final scores on the topics."""
    result = asyncio.run(
        run_faults(
            FaultOptions(
                events=2_000,
                kills=2,
                seed=3,
                leads=300,
                bootstrap=broker.bootstrap,
                flavor=broker.flavor,
                settle_timeout_s=10,
                store="rocksdb",
            ),
            bootstrap=broker.bootstrap,
            workdir=tmp_path,
        )
    )
    assert result["kills"] == 2
    assert result["expected_alerts"] > 0 and result["expected_handoffs"] > 0
    assert result["missing_alerts"] == 0, result["examples"]
    assert result["missing_handoffs"] == 0, result["examples"]
    assert result["score_mismatches"] == 0, result["examples"]
    assert result["result"] == "ok"
    # The killed worker's state is on disk, one RocksDB per partition of the leads table.
    assert list(tmp_path.glob("ft*f-0/v1/tables-*/*leads-*.db")), sorted(tmp_path.rglob("*"))


def _ready(worker: Worker) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{worker.web_port}/readyz", timeout=2):
            return True
    except (urllib.error.URLError, OSError):
        return False


def _processed(worker: Worker) -> float:
    try:
        text = worker.metrics()
    except OSError:
        return 0.0
    for line in text.splitlines():
        if line.startswith("leadstream_events_processed_total "):
            return float(line.split()[1])
    return 0.0


@pytest.mark.timeout(90)
def test_two_rocksdb_workers_on_one_data_dir_split_the_work_without_lock_conflicts(
    make_worker: Callable[..., Worker],
) -> None:
    # make_worker gives both the same LEADSTREAM_DATA_DIR and different web ports.
    first = make_worker(LEADSTREAM_STORE="rocksdb")
    second = make_worker(LEADSTREAM_STORE="rocksdb")
    wait_for(lambda: _ready(first) and _ready(second), timeout_s=45, what="both workers ready")
    people = 40
    first.send(
        *(
            {
                "type": "track",
                "event": "Whitepaper Downloaded",
                "anonymousId": f"anon-{n}",
                "messageId": f"m-{n}",
                "timestamp": "2026-11-26T09:00:00Z",
                "properties": {},
            }
            for n in range(people)
        )
    )
    scored = first.read(
        first.topics.scored, lambda recs: len({r["lead_id"] for r in recs}) >= people
    )
    assert len({r["lead_id"] for r in scored}) == people
    wait_for(
        lambda: _processed(first) + _processed(second) >= people,
        timeout_s=20,
        what="both workers' counts",
    )
    for worker in (first, second):
        assert worker.proc is not None and worker.proc.poll() is None, worker.log()[-3000:]
        assert "is locked" not in worker.log(), worker.log()[-3000:]
        assert _processed(worker) > 0, "each worker holds partitions and scores some people"
