"""Broker outages: a worker exits with a clear error, never runs on with missing state.

Each test runs its own embedded broker (Tansu, memory storage) so that it can stop it. With
Apache Kafka (KAFKA_BOOTSTRAP_SERVERS) the broker cannot be stopped from here: skipped there,
never on the embedded broker that CI uses.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from streams.app import CRASH_GRACE_S
from streams.broker import EmbeddedBroker, free_port
from streams.kafka_io import create_topics
from streams.topics import Topics
from tests.integration.conftest import PARTITIONS, Broker, Worker, wait_for, worker_for
from tests.integration.segment import page

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        bool(os.environ.get("KAFKA_BOOTSTRAP_SERVERS")),
        reason="stops the broker: needs the embedded one",
    ),
]


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[EmbeddedBroker]:
    with EmbeddedBroker(free_port(), log=tmp_path / "tansu.log") as tansu:
        yield tansu


def _worker(
    tansu: EmbeddedBroker,
    tmp_path: Path,
    *,
    lost_timeout_s: float,
    start: bool = True,
    **env: str,
) -> Worker:
    unique = f"o{uuid.uuid4().hex[:8]}"
    topics = Topics(prefix=f"{unique}.")
    asyncio.run(create_topics(tansu.bootstrap, topics.all(), PARTITIONS))
    worker = worker_for(
        Broker(tansu.bootstrap, "tansu"),
        topics,
        app_id=f"leadstream-{unique}",
        log_path=tmp_path / "worker.log",
        data_dir=tmp_path / "data",
        env={
            "LEADSTREAM_BROKER_CHECK_S": "0.5",
            "LEADSTREAM_BROKER_LOST_TIMEOUT_S": f"{lost_timeout_s:g}",
            **env,
        },
    )
    return worker.start() if start else worker


def _scoring(worker: Worker) -> None:
    worker.send(*(page(f"m-{i}", anon=f"anon-{i % 5}", path="/pricing") for i in range(20)))
    worker.read(worker.topics.scored, lambda docs: len(docs) >= 5, timeout_s=60)


def _exit_code(worker: Worker, *, timeout_s: float) -> int:
    assert worker.proc is not None
    deadline = time.monotonic() + timeout_s
    while worker.proc.poll() is None:
        if time.monotonic() > deadline:
            raise AssertionError(f"the worker still runs {timeout_s} s on:\n{worker.log()[-3000:]}")
        time.sleep(0.1)
    return worker.proc.returncode


@pytest.mark.timeout(90)
def test_a_broker_gone_for_longer_than_the_timeout_makes_the_worker_exit_with_the_reason(
    own_broker: EmbeddedBroker, tmp_path: Path
) -> None:
    worker = _worker(own_broker, tmp_path, lost_timeout_s=4)
    try:
        _scoring(worker)
        own_broker.stop()
        stopped = time.monotonic()
        code = _exit_code(worker, timeout_s=45)
        took_s = time.monotonic() - stopped
    finally:
        worker.kill()
    log = worker.log()
    assert code != 0, log[-3000:]
    assert "the broker has been unreachable for" in log
    assert "LEADSTREAM_BROKER_LOST_TIMEOUT_S=4" in log
    assert took_s >= 4, "exited before its timeout"
    # Then at once: a clean stop's writes cannot reach the broker, so the supervisor's
    # restart does not wait for the crash grace of other failures (app.CRASH_GRACE_S, 15 s).
    assert took_s < 4 + CRASH_GRACE_S - 3, f"exited {took_s:.1f} s after the broker stopped"


@pytest.mark.timeout(90)
def test_a_broker_back_without_the_records_the_worker_read_makes_it_exit_at_once(
    own_broker: EmbeddedBroker, tmp_path: Path
) -> None:
    # A memory-only broker restarted: it answers again, but every topic is gone. Running on
    # would mean state and positions that no longer match the topics.
    worker = _worker(own_broker, tmp_path, lost_timeout_s=600)
    try:
        _scoring(worker)
        own_broker.stop()
        own_broker.start()
        restarted = time.monotonic()
        code = _exit_code(worker, timeout_s=45)
        took_s = time.monotonic() - restarted
    finally:
        worker.kill()
    log = worker.log()
    assert code != 0, log[-3000:]
    assert took_s < CRASH_GRACE_S - 3, f"exited {took_s:.1f} s after the broker restarted"
    assert "the broker no longer has topic" in log or "the broker lost records of" in log, log[
        -3000:
    ]
    assert "unreachable for" not in log  # it did not wait out the 600 s


@pytest.mark.timeout(90)
def test_a_short_outage_is_ridden_out_and_the_worker_goes_on_scoring(
    own_broker: EmbeddedBroker, tmp_path: Path
) -> None:
    # Shorter than the timeout, and the broker did not lose anything (it was not restarted:
    # its port was only unreachable): the worker resumes. Simulated by pausing the broker.
    import signal

    worker = _worker(own_broker, tmp_path, lost_timeout_s=30)
    try:
        _scoring(worker)
        assert own_broker.pid is not None
        os.kill(own_broker.pid, signal.SIGSTOP)
        try:
            wait_for(
                lambda: "the broker does not answer" in worker.log(),
                timeout_s=30,
                what="the broker check to notice the outage",
            )
        finally:
            os.kill(own_broker.pid, signal.SIGCONT)
        worker.send(page("after-outage", anon="anon-after", path="/pricing"))
        worker.read(
            worker.topics.scored,
            lambda docs: any(d["message_id"] == "after-outage" for d in docs),
            timeout_s=60,
        )
        assert worker.proc is not None and worker.proc.poll() is None
    finally:
        worker.kill()


@pytest.mark.timeout(120)
def test_a_forward_of_several_records_in_one_batch_is_not_taken_for_lost_records(
    own_broker: EmbeddedBroker, tmp_path: Path
) -> None:
    """400 events of one person, read in one fetch, are forwarded as 3 micro-batch records
    of ~30 KB in one producer batch (512 KiB batches; at 16 KiB each is a batch of its own).
    Tansu then reports that partition's end as its first offset + 1; the broker check reads
    the last record back instead of believing it."""
    worker = _worker(
        own_broker,
        tmp_path,
        lost_timeout_s=600,
        start=False,
        LEADSTREAM_PRODUCER_BATCH_BYTES="524288",
    )
    worker.send(*(page(f"f-{i}", anon="anon-f", path=f"/blog/{i}") for i in range(400)))
    worker.start()
    try:
        wait_for(
            lambda: "leadstream_events_processed_total 400.0" in _metrics_or_empty(worker),
            timeout_s=60,
            what="the 400 events applied",
        )
        time.sleep(3)  # six broker checks (LEADSTREAM_BROKER_CHECK_S=0.5) must pass quietly
        assert worker.proc is not None and worker.proc.poll() is None, worker.log()[-3000:]
        assert "the broker lost records" not in worker.log()
    finally:
        worker.kill()


def _metrics_or_empty(worker: Worker) -> str:
    try:
        return worker.metrics()
    except OSError:
        return ""  # not serving yet
