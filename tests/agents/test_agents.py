"""Agent tier: the leads agent driven by `test_context()` with a fake producer passed in."""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import AsyncIterator, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import faust
import orjson
import pytest
from faust.types import TP
from prometheus_client import CollectorRegistry, generate_latest

import streams.app
from schemas.internal import ContactUpdate, ContactUpdateBatch, PersonEvent, PersonEventBatch
from streams.app import SHUTDOWN_SETTLE_S, Worker, create_app
from streams.codec import encode
from streams.lead_model import load_model
from streams.leads import lead_id_for
from streams.producer import Record
from streams.settings import Settings
from streams.topics import Topics, person_partition
from tests.metrics_text import metric

MODEL = Path(__file__).parents[1] / "integration" / "lead_model.yaml"
NOW = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)


class FakeProducer:
    """Stands in for the BatchProducer: records what is sent, in order; all succeed at once."""

    def __init__(self) -> None:
        self.sent: list[Record] = []
        self.unacked: list[asyncio.Future[list[Any]]] = []
        # When set, enqueued records stay unacknowledged until `release`: all, or those of
        # the topics whose names end so.
        self.hold: bool | str = False

    async def send(self, records: Iterable[Record]) -> int:
        batch = list(records)
        await (await self.enqueue(batch))
        return len(batch)

    async def send_acked(self, records: Iterable[Record]) -> dict[tuple[str, int], int]:
        await self.send(records)
        return {}

    async def enqueue(self, records: Iterable[Record]) -> asyncio.Future[list[Any]]:
        batch = list(records)
        self.sent.extend(batch)
        acked: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        held = self.hold is True or (
            isinstance(self.hold, str) and any(r.topic.endswith(self.hold) for r in batch)
        )
        if held:
            self.unacked.append(acked)
        else:
            acked.set_result([])
        return acked

    def release(self) -> None:
        for acked in self.unacked:
            acked.set_result([])
        self.unacked.clear()

    async def stop(self) -> None:
        return None

    async def until(self, predicate: Any, timeout_s: float = 5.0) -> None:
        """Poll the recorded sends until `predicate(sent)` holds, or fail."""
        deadline = asyncio.get_running_loop().time() + timeout_s
        while not predicate(self.sent):
            assert asyncio.get_running_loop().time() < deadline, self.sent
            await asyncio.sleep(0.01)

    def on(self, topic: str) -> list[dict[str, Any]]:
        return [orjson.loads(s.value) for s in self.sent if s.topic == topic]


def _app(
    tmp_path: Path, *, registry: CollectorRegistry | None = None, **settings: Any
) -> tuple[faust.App, FakeProducer, Topics]:
    """A fresh app on 4 partitions with a fake producer; `settings` override the defaults."""
    configured = Settings(data_dir=tmp_path, partitions=4, topic_prefix="agent.", **settings)
    producer = FakeProducer()
    app = create_app(
        start_offset=False,  # no broker to ask where a partition reads on
        settings=configured,
        model=load_model(MODEL),
        registry=CollectorRegistry() if registry is None else registry,
        clock=lambda: NOW,
        producer=producer,  # type: ignore[arg-type]
    )
    app.finalize()
    return app, producer, Topics(configured.topic_prefix)


@pytest.fixture
async def app(tmp_path: Path) -> AsyncIterator[tuple[faust.App, FakeProducer, Topics]]:
    yield _app(tmp_path)


async def test_leads_writes_state_only_after_its_outputs_are_acknowledged(
    app: tuple[faust.App, FakeProducer, Topics],
) -> None:
    faust_app, producer, topics = app
    pk = "visitor-9"
    events = (
        PersonEvent(
            mid="a",
            pk=pk,
            kind="identify",
            name="",
            ts_ms=1,
            aid=pk,
            traits={"email": "ann@corp.example", "country": "US"},
        ),
        PersonEvent(mid="b", pk=pk, kind="track", name="Whitepaper Downloaded", ts_ms=2, aid=pk),
        PersonEvent(mid="b", pk=pk, kind="track", name="Whitepaper Downloaded", ts_ms=2, aid=pk),
    )
    producer.hold = True  # the broker has not acknowledged the outputs yet
    async with faust_app.agents["leads"].test_context() as agent:
        await agent.put(
            encode(PersonEventBatch(events=events)), key=b"p1", partition=person_partition(pk, 4)
        )
        await producer.until(lambda sent: any(s.topic == topics.alerts for s in sent))
        await asyncio.sleep(0.3)  # the flush has had every chance to run
        assert not [s for s in producer.sent if s.topic.endswith("-leads-changelog")]
        producer.release()
        await producer.until(lambda sent: any(s.topic.endswith("-leads-changelog") for s in sent))

    alerts = producer.on(topics.alerts)
    assert [(a["rep_id"], a["trigger"], a["created_at"]) for a in alerts] == [
        ("us-rep", "whitepaper-download", "2026-11-26T09:00:00Z")
    ]
    assert [h["reason"] for h in producer.on(topics.routed)] == ["hot_trigger"]
    assert [s["score"] for s in producer.on(topics.scored)] == [0, 30]
    order = [s.topic for s in producer.sent]
    changelog = [i for i, t in enumerate(order) if t.endswith("-leads-changelog")]
    outputs = [i for i, t in enumerate(order) if t in (topics.alerts, topics.routed, topics.scored)]
    assert changelog, order
    assert max(outputs) < min(changelog), order  # state only after its outputs
    state = orjson.loads(producer.sent[changelog[0]].value)
    # the duplicate was not applied: two digests of 16 characters
    assert state["score"] == 30 and len(state["seen"]) == 2 * 16


def _track(pk: str, mid: str, name: str) -> bytes:
    """A person-events record of one track event `name` of lead `pk`."""
    event = PersonEvent(mid=mid, pk=pk, kind="track", name=name, ts_ms=1, aid=pk)
    return encode(PersonEventBatch(events=(event,)))


def _task(app: faust.App, name: str) -> Any:
    """The app's task `name` as Faust runs it (`app.task`, `app.timer`: wrapped)."""
    return next(
        task
        for task in app._app_tasks  # type: ignore[attr-defined]
        if inspect.unwrap(task).__name__ == name
    )


def _states(producer: FakeProducer) -> list[int]:
    """The scores of the lead states written to the leads changelog, in order."""
    return [
        orjson.loads(s.value)["score"]
        for s in producer.sent
        if s.topic.endswith("-leads-changelog")
    ]


async def _second_batch_unacknowledged(
    agent: Any, producer: FakeProducer, topics: Topics, pk: str
) -> None:
    """Two batches of `pk`'s: the partition's first is written at once (state 30); the
    second's outputs are sent, the broker holds their acknowledgement, and its state (90)
    waits for the write-behind."""
    partition = person_partition(pk, 4)
    await agent.put(_track(pk, "a", "Whitepaper Downloaded"), key=b"p", partition=partition)
    await producer.until(lambda sent: _states(producer) == [30])
    producer.hold = True
    await agent.put(_track(pk, "b", "Demo Requested"), key=b"p", partition=partition)
    await producer.until(lambda sent: len(producer.on(topics.scored)) == 2)


@pytest.mark.parametrize("stage_end", ["clean stop", "revocation"])
async def test_a_stop_or_revocation_waits_for_the_state_write_under_way(
    tmp_path: Path, stage_end: str
) -> None:
    """The write-behind takes a partition's applied records to write their state; a
    clean stop (or a revocation) that comes meanwhile commits only once that state is
    written, else the records are acknowledged too late, never committed, and the next
    worker scores them again."""
    faust_app, producer, topics = _app(tmp_path, state_flush_ms=60_000)
    pk = "visitor-3"
    partition = person_partition(pk, 4)

    async with faust_app.agents["leads"].test_context() as agent:
        await _second_batch_unacknowledged(agent, producer, topics, pk)
        lifecycle = faust_app.lifecycle  # type: ignore[attr-defined]
        timer = asyncio.ensure_future(lifecycle.flush_pending())
        await asyncio.sleep(0.1)  # the timer's write has started: it waits for the broker

        ending = asyncio.ensure_future(
            lifecycle.final_write()
            if stage_end == "clean stop"
            else faust_app.before_revoke({TP(topics.person_events, partition)})  # type: ignore[attr-defined]
        )
        await asyncio.sleep(0.3)
        ended_before_the_write = ending.done()
        producer.hold = False
        producer.release()
        await asyncio.wait_for(ending, timeout=5)
        written = _states(producer)
        await timer

    assert not ended_before_the_write
    assert written == [30, 90]


async def test_a_state_write_slower_than_the_write_behind_interval_logs_no_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Under load a state write waits for its outputs' acknowledgements about as long as the
    write-behind interval: the design working, not a fault, so the worker's log stays quiet
    (as a Faust timer it logged "Timer ... is overlapping" at each such write). The state is
    written once the broker answers, the write's time is in /metrics, and the write-behind
    goes on."""
    registry = CollectorRegistry()
    faust_app, producer, topics = _app(tmp_path, registry=registry, state_flush_ms=100)
    pk = "visitor-3"
    partition = person_partition(pk, 4)

    async with faust_app.agents["leads"].test_context() as agent:
        await _second_batch_unacknowledged(agent, producer, topics, pk)
        caplog.set_level(logging.INFO)
        write_behind = asyncio.ensure_future(_task(faust_app, "write_behind")())
        await asyncio.sleep(0.8)  # eight intervals with the broker silent
        producer.hold = False
        producer.release()
        await producer.until(lambda sent: _states(producer) == [30, 90])
        await agent.put(_track(pk, "c", "Demo Requested"), key=b"p", partition=partition)
        await producer.until(lambda sent: _states(producer) == [30, 90, 150])
        write_behind.cancel()

    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
    text = generate_latest(registry).decode()
    writes = metric(text, "leadstream_state_write_seconds_count")
    assert writes == 3  # each of the three states' writes, timed
    # The one the broker held for eight intervals, the others at once.
    assert metric(text, "leadstream_state_write_seconds_bucket", le="0.5") == writes - 1
    assert metric(text, "leadstream_state_write_seconds_sum") >= 0.6


async def test_a_state_write_slower_than_the_bound_is_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write that waits far longer than the interval means a broker slow to acknowledge
    (and input offsets not committed meanwhile): that is said, once the write is done."""
    monkeypatch.setattr(streams.app, "SLOW_STATE_WRITE_S", 0.3)
    faust_app, producer, topics = _app(tmp_path, state_flush_ms=100)
    async with faust_app.agents["leads"].test_context() as agent:
        await _second_batch_unacknowledged(agent, producer, topics, "visitor-3")
        caplog.set_level(logging.INFO)
        write_behind = asyncio.ensure_future(_task(faust_app, "write_behind")())
        await asyncio.sleep(0.6)
        producer.hold = False
        producer.release()
        await producer.until(lambda sent: _states(producer) == [30, 90])
        await asyncio.sleep(0.05)
        write_behind.cancel()

    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1
    assert warnings[0].startswith(
        "write-behind: 1 lead-state write(s) took over 0 s (the longest 0."
    )
    partition = person_partition("visitor-3", 4)
    assert f"the last for partition {partition}): the broker is slow to acknowledge" in warnings[0]


async def test_a_record_read_once_the_stop_s_final_write_began_is_left_to_the_next_owner(
    tmp_path: Path,
) -> None:
    """Faust delivers records until it stops the agent, after the stop's final write and
    commit: one applied then would have its outputs sent and neither its state nor its
    offset written, and the next owner would apply it again (its outputs sent twice)."""
    faust_app, producer, topics = _app(tmp_path)
    pk = "visitor-3"
    partition = person_partition(pk, 4)

    async with faust_app.agents["leads"].test_context() as agent:
        await agent.put(_track(pk, "a", "Whitepaper Downloaded"), key=b"p", partition=partition)
        await producer.until(lambda sent: len(producer.on(topics.scored)) == 1)
        await faust_app.lifecycle.final_write()  # type: ignore[attr-defined]
        await agent.put(_track(pk, "b", "Demo Requested"), key=b"p", partition=partition)
        await asyncio.sleep(0.3)

    assert [s["score"] for s in producer.on(topics.scored)] == [30]


async def test_a_stop_waits_for_the_account_writes_under_way(tmp_path: Path) -> None:
    """The accounts stage acknowledges a record once the accounts it changed are in the
    table's changelog; a clean stop commits only after those writes, else it commits
    without their records and the next worker applies them again."""
    faust_app, producer, topics = _app(tmp_path)
    update = ContactUpdate(
        account="corp.example",
        lead_id="lead-1",
        score=40,
        ts_ms=1,
        rep="us-rep",
        mid="m-1",
        model="test-1",
    )
    producer.hold = "-changelog"  # the broker has not acknowledged the account's write yet
    async with faust_app.agents["accounts"].test_context() as agent:
        await agent.put(
            encode(ContactUpdateBatch(updates=(update,))), key=b"corp.example", partition=0
        )
        await producer.until(lambda sent: any(s.topic.endswith("-changelog") for s in sent))
        stopping = asyncio.ensure_future(faust_app.lifecycle.final_write())  # type: ignore[attr-defined]
        await asyncio.sleep(0.3)
        ended_before_the_write = stopping.done()
        producer.hold = False
        producer.release()
        await asyncio.wait_for(stopping, timeout=5)

    assert not ended_before_the_write
    assert [a["account"] for a in producer.on(topics.accounts_scored)] == ["corp.example"]


@pytest.mark.parametrize(("configured", "expected"), [(None, 512 * 1024), (16384, 16384)])
async def test_the_worker_producer_builds_batches_of_the_configured_size(
    tmp_path: Path, configured: int | None, expected: int
) -> None:
    """LEADSTREAM_PRODUCER_BATCH_BYTES reaches the producer the worker's stages share."""
    extra = {} if configured is None else {"producer_batch_bytes": configured}
    settings = Settings(data_dir=tmp_path, **extra)  # type: ignore[arg-type]
    app = create_app(
        start_offset=False,
        settings=settings,
        model=load_model(MODEL),
        registry=CollectorRegistry(),
    )
    assert app.lifecycle.producer.batch_bytes == expected  # type: ignore[attr-defined]


async def test_the_worker_consumer_waits_at_most_the_configured_fetch_wait(
    tmp_path: Path,
) -> None:
    """Faust hard-codes 1,500 ms; on brokers that never wake a waiting fetch that is per hop."""
    settings = Settings(data_dir=tmp_path, fetch_wait_ms=123)
    app = create_app(
        start_offset=False,  # no broker to ask where a partition reads on
        settings=settings,
        model=load_model(MODEL),
        registry=CollectorRegistry(),
        producer=FakeProducer(),  # type: ignore[arg-type]
    )
    thread = app.consumer._thread  # type: ignore[attr-defined]
    consumer = thread._create_worker_consumer(app.transport)
    assert consumer._fetch_max_wait_ms == 123


async def test_contact_updates_wait_for_the_partitions_next_flush_and_go_out_together(
    tmp_path: Path,
) -> None:
    """The leads stage holds each batch's contact updates (ContactOutbox) and sends them with
    the next state flush of the partition, one record per account partition, instead of one
    account-updates record per batch it scores."""
    faust_app, producer, topics = _app(tmp_path, state_flush_ms=2000)
    partition = person_partition("visitor-0", 4)
    pks = [
        pk for pk in (f"visitor-{i}" for i in range(100)) if person_partition(pk, 4) == partition
    ]

    def scored_at_corp(pk: str) -> bytes:  # a lead of corp.example whose score changes
        events = (
            PersonEvent(
                mid=f"{pk}-a",
                pk=pk,
                kind="identify",
                name="",
                ts_ms=1,
                aid=pk,
                traits={"email": f"{pk}@corp.example", "country": "US"},
            ),
            PersonEvent(
                mid=f"{pk}-b", pk=pk, kind="track", name="Whitepaper Downloaded", ts_ms=2, aid=pk
            ),
        )
        return encode(PersonEventBatch(events=events))

    def updates() -> list[list[str]]:
        return [[u["lead_id"] for u in r["updates"]] for r in producer.on(topics.account_updates)]

    async with faust_app.agents["leads"].test_context() as agent:
        # The partition's first batch flushes at once: its update goes out with it.
        await agent.put(scored_at_corp(pks[0]), key=b"p", partition=partition)
        await producer.until(lambda sent: len(updates()) == 1)
        # The next two batches come within the flush interval: their updates are held.
        await agent.put(scored_at_corp(pks[1]), key=b"p", partition=partition)
        await agent.put(scored_at_corp(pks[2]), key=b"p", partition=partition)
        await producer.until(lambda sent: len(producer.on(topics.scored)) == 6)
        await asyncio.sleep(0.3)
        assert len(updates()) == 1, updates()
        # A batch after the interval flushes the partition: both held updates, in one record.
        await asyncio.sleep(2.0)
        quiet = PersonEvent(mid="q", pk=pks[3], kind="page", name="Home", ts_ms=3, aid=pks[3])
        await agent.put(encode(PersonEventBatch(events=(quiet,))), key=b"p", partition=partition)
        await producer.until(lambda sent: len(updates()) == 2)

    first, second = updates()  # each lead's updates: its account, then its new score
    assert first == [lead_id_for(pks[0])] * 2
    assert sorted(second) == sorted(lead_id_for(pk) for pk in pks[1:3] for _ in range(2))


async def test_the_tables_are_registered_at_start_up_without_faust_s_one_second_wait(
    app: tuple[faust.App, FakeProducer, Topics], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Faust's table manager waits a second before it registers the changelogs (for tables
    # defined while an app runs): every worker start-up paid it. This app's tables all
    # exist before it starts, so it registers them at once.
    faust_app, _, _ = app
    manager = faust_app.tables
    started: list[bool] = []

    async def start_recovery() -> None:  # no broker here: the registration is what counts
        started.append(True)

    async def start_table() -> None:  # declaring its changelog would need a broker
        return None

    monkeypatch.setattr(manager.recovery, "start", start_recovery)
    for table in manager.values():
        monkeypatch.setattr(table, "maybe_start", start_table)
    monkeypatch.setattr(faust_app.consumer, "pause_partitions", lambda tps: None)
    monkeypatch.setattr(faust_app.consumer, "assignment", lambda: set())
    await asyncio.wait_for(manager.on_start(), timeout=0.5)
    await asyncio.wait_for(manager.wait_until_tables_registered(), timeout=0.1)
    assert started == [True]
    assert {t.name for t in manager.values()} <= {c.name for c in manager._channels}


async def test_a_stopped_worker_closes_its_loop_a_tenth_of_a_second_after_its_last_task() -> None:
    # mode's worker runs the loop a second more before it closes it: every exit (a
    # supervisor's restart, a rolling update) waited for it. Built without an app: only its
    # closing step is run.
    worker = Worker.__new__(Worker)
    started = asyncio.get_running_loop().time()
    await asyncio.wait_for(worker._sentinel_task(), timeout=0.5)
    assert asyncio.get_running_loop().time() - started >= SHUTDOWN_SETTLE_S


def test_slow_state_writes_are_one_warning_a_minute_with_how_many_and_the_longest(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [1000.0]
    slow = streams.app._SlowWrites(clock=lambda: now[0])
    caplog.set_level(logging.WARNING)
    slow.note(3, 12.0)  # the first: at once
    for partition, took, at in ((1, 15.5, 1010.0), (2, 11.0, 1050.0), (5, 13.0, 1060.0)):
        now[0] = at
        slow.note(partition, took)
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2
    assert lines[0].startswith(
        "write-behind: 1 lead-state write(s) took over 10 s (the longest 12.0 s; the last for partition 3)"
    )
    assert lines[1].startswith(
        "write-behind: 3 lead-state write(s) took over 10 s (the longest 15.5 s; the last for partition 5)"
    )
