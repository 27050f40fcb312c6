"""The Faust app: a factory that wires settings, the lead model and metrics to the stages.

Topology, one repartition hop between an event and its alert:

    engagement.raw --[intake service]--> leadstream.person-events --[leads agent]--> leads.scored
          |          (aiokafka, bulk)     (micro-batches by person)      |        --> leads.routed
          +--> engagement.dlq                                    leads table  --> rep.alerts

The intake is a lean aiokafka loop running inside the worker; the leads agent is Faust (its
table gives partition-local state, changelog recovery and rebalancing). Both produce in
batches through one BatchProducer.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
import zlib
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, cast

import faust
from aiohttp import web
from faust.tables import TableManager
from faust.types import TP, EventT
from faust.web import Request, Response, View
from faust.web.drivers.aiohttp import Web as AiohttpWeb
from prometheus_client import CollectorRegistry

from schemas.decisions import HandOff, LeadForgotten, LeadMerged, LeadScored, RepAlert, SlaEvent
from schemas.internal import (
    ContactUpdate,
    FeedbackIn,
    Forget,
    LeadState,
    Link,
    MergeIn,
    MergeRequest,
    PersonEvent,
    PersonEventBatch,
    Unlink,
)
from streams import CORE
from streams.account_feed import AccountFeed, AccountsHolder
from streams.account_stage import (
    ContactOutbox,
    accounts_table,
    add_account_stage,
    contact_batches,
)
from streams.broker import faust_broker_settings
from streams.broker_watch import BrokerLost, BrokerWatch, lost_records
from streams.codec import (
    Rejection,
    dead_letter,
    decode_batch,
    decode_state,
    encode,
    encode_scored,
)
from streams.cpus import available_cpus
from streams.faust_transport import (
    PASSED_OVER_CHECK_S,
    StartOffset,
    commit_offsets,
    in_order,
    learn_start,
    reread_passed_over,
    transport_class,
)
from streams.health import serve_health, worker_probes
from streams.identity import apply_person_batch, keys_of, to_batch
from streams.inbox_http import InboxFeed, serve_inbox
from streams.ingest_http import ROUTE, RUNNER_OPTIONS, IngestHandler
from streams.intake_process import IntakeProcess
from streams.intake_service import IntakeService
from streams.kafka_connection import KafkaConnection, kafka_connection
from streams.kafka_io import HOLDS_WAIT_MS, TopicProbe, create_topics
from streams.lead_model import LeadModel
from streams.lead_store import LeadStore
from streams.leads import BatchResult, Decision, rescore_lead, sla_tick, with_accounts
from streams.metrics import CONTENT_TYPE_LATEST, KpiMetrics, Metrics, render, state_gauges
from streams.model_feed import ModelFeed, ModelHolder
from streams.offset_guard import OffsetGuard
from streams.producer import BatchProducer, Coalescer, Record, placed
from streams.recovery_watch import RecoveryWatchService, recovery_check
from streams.settings import Settings
from streams.sla import SlaClocks
from streams.table_store import FaustLocalTable, faust_store_options
from streams.topics import (
    CRM_ACCOUNTS_TOPIC_CONFIG,
    CRM_ACCOUNTS_TOPIC_PARTITIONS,
    ERASURE_TOPIC_CONFIG,
    FORGOTTEN_TOPIC_CONFIG,
    LEADS_TABLE,
    MODEL_TOPIC_CONFIG,
    MODEL_TOPIC_PARTITIONS,
    Topics,
    person_partition,
)

__all__ = ["Clock", "Worker", "create_app", "utc_now"]

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class _Lifecycle:
    """What the worker does around Faust's own start and stop, in that order."""

    ensure_topics: Callable[[], Awaitable[None]]  # before Faust starts
    models: ModelFeed  # catches up on lead.model before Faust starts, then follows it
    accounts: AccountFeed  # the same for crm.accounts
    intake: IntakeService | IntakeProcess  # joins its group while Faust joins its own
    # on stop: apply nothing more and write the state of what was, so the commit covers it
    final_write: Callable[[], Awaitable[None]]
    # then: offsets past what Faust can commit (records the handover applied, written)
    handed_offsets: Callable[[], dict[TP, int]]
    # the write-behind's one write of every partition with state to write (`write_behind`)
    flush_pending: Callable[[], Awaitable[None]]
    producer: BatchProducer  # stopped last
    recovery_watch: RecoveryWatchService  # seeks a stalled table recovery back, the first too
    inbox: InboxFeed | None = None  # the rep inbox's reader of rep.alerts, when served
    probe: TopicProbe | None = None  # the broker check's connection


#: How long a crashing worker may take to stop cleanly before it exits regardless.
CRASH_GRACE_S = 15.0
#: The same when the broker is gone or lost its data: the clean stop's writes and commits
#: cannot land (or would land on topics that lost what came before), so the supervisor's
#: restart should not wait for them; what they would have written is replayed.
BROKER_LOST_GRACE_S = 3.0
#: A partition's state write longer than this is logged as a warning (at most one a
#: `SLOW_WARNING_EVERY_S`): the broker is slow to acknowledge. Under load a write takes up to
#: about the write-behind interval, 1 s by default.
SLOW_STATE_WRITE_S = 10.0
SLOW_WARNING_EVERY_S = 60.0
#: How long a stopping worker may spend writing its pending state and committing.
STOP_WRITE_TIMEOUT_S = 10.0
#: Longest the intake waits before a forward for the leads stage to catch up (`caught_up`): it
#: also writes for partitions other workers score, which must not wait on a stalled stage.
READ_AHEAD_WAIT_S = 2.0
#: How far behind the leads stage may be, in records this worker wrote, before the intake
#: waits for it (then until it has caught up completely). With several workers, a record
#: another worker's intake wrote to a partition puts the stage one record behind what this
#: intake writes next; waiting out each such record cost a fetch wait at the p99.
READ_AHEAD_SLACK_RECORDS = 32
#: Records handed over ahead of their turn kept per partition until it comes (`handover`);
#: past that they are left to the consumer.
PARKED_MAX = 64
#: How often a waiting intake looks again.
_CAUGHT_UP_POLL_S = 0.005


def _exit_now(why: str, grace_s: float) -> None:
    log.critical("the worker did not stop within %g s; exiting now (%s)", grace_s, why)
    logging.shutdown()
    os._exit(1)


#: How long a stopped worker's event loop runs on before it closes (mode's default: 1 s).
SHUTDOWN_SETTLE_S = 0.1


class Worker(faust.Worker):
    """faust.Worker whose event loop closes 0.1 s after the last task ends, not 1 s.

    mode's worker runs the loop one more second before it closes it, for callbacks of
    tasks it has just cancelled. Everything here has stopped by then (`_App.on_stop`
    waits for the intake, the writes and the producer), and the second only delayed every
    exit: a supervisor's restart, a rolling update, each test's worker.
    """

    async def _sentinel_task(self) -> None:
        await asyncio.sleep(SHUTDOWN_SETTLE_S)


class _TableManager(TableManager):
    """Faust's table manager without its one-second wait at start-up.

    Faust waits a second before it subscribes to the tables' changelogs, for tables an app
    defines once it is running. This app defines all its tables in `create_app`, before
    the worker starts (a table added later fails loudly: "Too late to add tables"), so the
    wait only delayed every start-up, and every test's worker, by a second.
    """

    async def on_start(self) -> None:
        if not self.should_stop:
            await self._update_channels()
            await self.recovery.start()


class _App(faust.App):
    """faust.App with a configurable consumer fetch wait and the stages of our own."""

    lifecycle: _Lifecycle | None = None
    #: The lead model in use; listeners registered with `models.on_switch` see every change.
    models: ModelHolder
    #: CRM accounts for lead-to-account matching (`accounts.current.match(...)`).
    accounts: AccountsHolder
    #: Called by the consumer before partitions are revoked: write what is pending on them;
    #: returns offsets to commit past Faust's (see `handed_offsets`).
    before_revoke: Callable[[set[TP]], Awaitable[dict[TP, int]]] | None = None

    def __init__(
        self, *args: Any, fetch_wait_ms: int, guarded: frozenset[str], **kwargs: Any
    ) -> None:
        self._fetch_wait_ms = fetch_wait_ms
        self._guarded = guarded
        self._crashing = False
        super().__init__(*args, **kwargs)

    def _new_transport(self) -> Any:
        transport = transport_class(self._fetch_wait_ms, guarded=self._guarded)
        return transport(self.conf.broker_consumer, self)

    async def on_start(self) -> None:
        lc = self.lifecycle
        if lc is not None:
            await lc.ensure_topics()
            # Before any agent runs: a published model beats the model file from event one.
            await lc.models.catch_up()
            await lc.accounts.catch_up()
        await super().on_start()
        if lc is not None:
            # The intake does not need the table: it joins its consumer group while Faust
            # joins its own and recovers, instead of after.
            await self.add_runtime_dependency(lc.intake)
            await self.add_runtime_dependency(lc.models)
            await self.add_runtime_dependency(lc.accounts)
            await self.add_runtime_dependency(lc.recovery_watch)
            if lc.inbox is not None:
                await self.add_runtime_dependency(lc.inbox)

    def crash_soon(
        self,
        exc: BaseException,
        *,
        why: str = "leads: writing lead state failed",
        grace_s: float = CRASH_GRACE_S,
    ) -> None:
        if self._crashing:
            return
        self._crashing = True
        log.critical("%s; stopping the worker: %r", why, exc)
        # A clean stop commits and flushes, which waits on the broker: when that is what
        # failed it could wait forever. The supervisor needs an exit, so one comes anyway.
        timer = threading.Timer(grace_s, _exit_now, args=(why, grace_s))
        timer.daemon = True
        timer.start()
        self.add_future(self.crash(exc))

    async def _write_and_commit(self, lc: _Lifecycle) -> None:
        await lc.final_write()
        await self.consumer.commit()
        extra = lc.handed_offsets()
        if extra:
            await commit_offsets(self, extra)

    async def on_stop(self) -> None:
        lc = self.lifecycle
        if lc is not None:
            # The intake first: it finishes and commits the batch in hand while the
            # producer is up. Then write what was processed and commit it, so a graceful
            # stop replays nothing. (Faust's own wait for unacknowledged messages is off:
            # records still buffered are read again by the partition's next owner.)
            if lc.inbox is not None:
                await lc.inbox.stop()  # ends the inbox pages' live streams
            await lc.intake.stop()
            await lc.models.stop()
            await lc.accounts.stop()
            await lc.recovery_watch.stop()
            try:
                # Bounded: with the broker gone (Ctrl-C on `leadstream run` stops it too)
                # the writes would wait for it forever. What is not written and committed
                # is read again by the partition's next owner.
                await asyncio.wait_for(self._write_and_commit(lc), timeout=STOP_WRITE_TIMEOUT_S)
            except Exception as exc:  # not started, timed out, or the broker is gone
                log.warning("final write and commit skipped (replayed on restart): %r", exc)
        await super().on_stop()
        if lc is not None:
            if lc.probe is not None:
                await lc.probe.close()
            try:
                await asyncio.wait_for(lc.producer.stop(), timeout=STOP_WRITE_TIMEOUT_S)
            except Exception as exc:  # the broker is gone: nothing left to send matters
                log.warning("producer stop: %r", exc)


class _SlowWrites:
    """Warns of state writes longer than `SLOW_STATE_WRITE_S`: the first at once, then at
    most one line every `SLOW_WARNING_EVERY_S` with how many came meanwhile (a slow broker
    slows every partition's writes: a line a minute, not one a partition an interval)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._warned_at: float | None = None
        self._count = 0
        self._longest = 0.0

    def note(self, partition: int, took: float) -> None:
        self._count += 1
        self._longest = max(self._longest, took)
        now = self._clock()
        if self._warned_at is not None and now - self._warned_at < SLOW_WARNING_EVERY_S:
            return
        log.warning(
            "write-behind: %d lead-state write(s) took over %.0f s (the longest %.1f s; the "
            "last for partition %d): the broker is slow to acknowledge, and input offsets "
            "are committed only after these writes",
            self._count,
            SLOW_STATE_WRITE_S,
            self._longest,
            partition,
        )
        self._warned_at, self._count, self._longest = now, 0, 0.0


def create_app(
    *,
    settings: Settings,
    model: LeadModel,
    registry: CollectorRegistry,
    clock: Clock = utc_now,
    producer: BatchProducer | None = None,
    models: ModelHolder | None = None,
    accounts: AccountsHolder | None = None,
    kafka: KafkaConnection | None = None,
    start_offset: StartOffset | Literal[False] | None = None,
    cpus: float | None = None,
) -> _App:
    """Build a fresh Faust app; nothing is created at import time.

    `producer` is where every record goes; tests pass a fake. `models` holds the lead model
    in use (`model` when not given); `app.models` is it, switched by `lead.model`.
    `accounts` holds the CRM accounts (`app.accounts`), kept up to date from `crm.accounts`.
    `kafka` is how every client connects (default: from `settings`, files read now).
    `start_offset` tells where a consumer group reads a partition on from (default: asks
    the broker); False only in tests without a broker: a partition's first record delivered
    is taken as its start. `cpus` is how many CPUs the worker may use, for
    `LEADSTREAM_INTAKE_PROCESS=auto` (default: read off the machine, `streams.cpus`).
    """
    if kafka is None:
        kafka = kafka_connection(settings)
    if models is None:
        models = ModelHolder(model)
    if accounts is None:
        accounts = AccountsHolder(min_confidence=settings.account_match_min_confidence)
    topics = Topics(settings.topic_prefix)
    metrics = Metrics.create(registry)
    metrics.core_info.labels(core=CORE.name).set(1)
    kpis = KpiMetrics.create(registry, sources=settings.kpi_sources)
    limits = settings.core_limits()
    app = _App(
        settings.app_id,
        fetch_wait_ms=settings.fetch_wait_ms,
        # The stages that check their own input order (streams/offset_guard.py).
        guarded=frozenset({topics.person_events, topics.account_updates}),
        broker=settings.broker,
        broker_credentials=kafka.faust_credentials(),
        datadir=str(settings.data_dir),
        **faust_store_options(settings.store, web_port=settings.web_port),
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication_factor,
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        stream_wait_empty=False,
        web_enabled=True,
        web_bind=settings.web_host,
        web_port=settings.web_port,
        web_in_thread=False,
        autodiscover=False,
        TableManager=_TableManager,
        **faust_broker_settings(settings),
    )

    def topic(name: str) -> faust.TopicT:
        return app.topic(
            name,
            key_serializer="raw",
            value_serializer="raw",
            partitions=settings.partitions,
            internal=True,
        )

    person_events = topic(topics.person_events)
    table = app.Table(
        LEADS_TABLE,
        default=None,
        # bytes types make Faust use the raw codec both ways, including in recovery;
        # keys are UTF-8 person keys, values our own encoding of LeadState.
        key_type=bytes,
        value_type=bytes,
        partitions=settings.partitions,
    )
    changelog = table.changelog_topic.get_topic_name()
    account_table = accounts_table(app, settings)
    changelogs = frozenset({changelog, account_table.changelog_topic.get_topic_name()})
    if producer is None:
        tansu = settings.broker_flavor == "tansu"
        producer = BatchProducer(
            kafka=kafka,
            # Tansu reports a partition's end wrong after a batch of several records: table
            # recovery would stop early. (The broker check reads back instead: `holds`.)
            single_record_tail=changelogs if tansu else frozenset(),
            max_batch_size=settings.producer_batch_bytes,
        )
    out = producer
    # The leads stage's outputs: those of the records it applies in a row go out together.
    outputs_out = Coalescer(out)
    # Contact updates for the accounts stage: held, and sent together before the state
    # flushes that made them (ContactOutbox).
    outbox = ContactOutbox(
        lambda updates: out.send(contact_batches(topics, updates, settings.partitions)),
        every_s=settings.state_flush_ms / 1000,
    )
    local = FaustLocalTable(table)
    store = LeadStore(local, cache_size=settings.lead_cache_size)
    state_gauges(registry, leads=local.count, state_bytes=local.size_bytes, clock=time.monotonic)

    async def ensure_topics() -> None:
        # Faust creates only the topics it consumes; the input, the DLQ and the outputs
        # must exist with the right partition count before anything is produced (brokers
        # that auto-create would make them with their default count).
        created = await create_topics(
            kafka, topics.all(), settings.partitions, settings.replication_factor
        )
        created += await create_topics(
            kafka,
            [topics.model],
            MODEL_TOPIC_PARTITIONS,
            settings.replication_factor,
            configs=MODEL_TOPIC_CONFIG,
        )
        created += await create_topics(
            kafka,
            [topics.crm_accounts],
            CRM_ACCOUNTS_TOPIC_PARTITIONS,
            settings.replication_factor,
            configs=CRM_ACCOUNTS_TOPIC_CONFIG,
        )
        for name, configs in (
            (topics.erasure, ERASURE_TOPIC_CONFIG),
            (topics.forgotten, FORGOTTEN_TOPIC_CONFIG),
        ):
            created += await create_topics(
                kafka,
                [name],
                settings.partitions,
                settings.replication_factor,
                configs=configs,
            )
        if created:
            log.info("created topics: %s", ", ".join(created))

    # Input records whose state is not yet in the changelog, by partition: acknowledged
    # (so committable) only after their leads are written.
    pending: dict[int, list[tuple[EventT, asyncio.Future[Any]]]] = {}
    lock = asyncio.Lock()  # guards store and pending between the agent and the flusher
    order = OffsetGuard()  # person-events offsets: no record skipped by the consumer
    # Records `handover` applied before Faust delivers them: partition -> offset -> the
    # future of their outputs and the CRC-32 of the record (offsets ascending).
    handed: dict[int, dict[int, tuple[asyncio.Future[Any], int]]] = defaultdict(dict)
    owned: set[int] = set()  # person-events partitions this worker scores now
    taken: set[int] = set()  # and those revoked from it since (until assigned again)
    # A batch failed (see `halt`), or the worker's final write has begun (`final_write`):
    # apply nothing more; what is read from now on is left unacknowledged to the next owner.
    halted = asyncio.Event()
    probe = TopicProbe(kafka)  # start offsets for the guard, and the broker check
    if start_offset is None:
        start_offset = probe.start_offset
    starts = start_offset or None
    rewinds = metrics.input_rewinds.labels(stage="leads")
    flushing: dict[int, asyncio.Lock] = defaultdict(asyncio.Lock)  # one flush per partition
    slow_writes = _SlowWrites()
    # Per partition, an offset below which every record is applied and its state written:
    # what a stop may commit of records the handover applied and Faust has not delivered.
    written_to: dict[int, int] = {}
    flushed_at: dict[int, float] = {}
    background: set[asyncio.Future[None]] = set()
    # What the intake's read-ahead bound waits for (`caught_up`): the end of the records
    # this worker wrote to the partitions it scores, as offered to `handover`, by partition;
    # and the stage's own identity messages being handed back.
    written: dict[int, int] = {}
    handing_back: set[asyncio.Future[None]] = set()
    # Records handed over ahead of the one their partition expects (an identity message
    # this stage wrote there on its way back, another worker's record the consumer has not
    # delivered yet): applied as soon as the records before them are, instead of left to
    # the consumer. Partition -> offset -> (record, batch); at most PARKED_MAX a partition.
    parked: dict[int, dict[int, tuple[bytes, PersonEventBatch]]] = defaultdict(dict)

    def _done(task: asyncio.Future[None]) -> None:
        background.discard(task)
        exc = None if task.cancelled() else task.exception()
        if exc is not None:
            # Lead state could not be written: stop rather than run on without it.
            app.crash_soon(exc)

    async def flush(partition: int) -> None:
        async with flushing[partition]:
            started = time.monotonic()
            async with lock:
                entries = store.take_dirty(partition)
                done = pending.pop(partition, [])
                frontier = order.expected(partition) if order.knows(partition) else None
            # State reaches the changelog only after the outputs it caused are acknowledged:
            # a crash in between replays those records from the old state and re-sends the
            # same outputs (same deterministic ids). Produces run outside `lock`, so the
            # agent keeps scoring meanwhile.
            await asyncio.gather(outbox.sent(partition), *(outputs for _, outputs in done))
            offsets = await out.send_acked(
                Record(changelog, k, v, partition=partition) for k, v in entries
            )
            # Into the local table only now that the changelog has it (LeadStore: why).
            store.written(partition, entries, offset=offsets.get((changelog, partition)))
            for event, _ in done:
                event.ack()
            if frontier is not None:
                written_to[partition] = frontier
            if entries or done:  # not a flush that found the partition written already
                took = time.monotonic() - started
                metrics.state_writes.observe(took)
                if took > SLOW_STATE_WRITE_S:
                    slow_writes.note(partition, took)

    def handed_offsets(partitions: set[int] | None = None) -> dict[TP, int]:
        """Where to commit partitions holding records the handover applied and Faust has
        not delivered yet (so not acknowledged), once their state is written: else a
        graceful stop or a revocation leaves them to be read and applied again."""
        return {
            TP(topics.person_events, p): written_to[p]
            for p in (handed.keys() if partitions is None else partitions)
            if handed.get(p) and p in written_to
        }

    @app.agent(person_events, name="leads")
    async def leads(stream: faust.StreamT) -> None:
        """Score a micro-batch; send its decisions; leave its state to the flusher."""
        try:
            await score(stream)
        except Exception as exc:
            # Never let Faust restart the agent and go on: the batch in hand would be
            # passed over, and acknowledging the next ones would commit past it. The worker
            # stops; its restart reads on from the last commit.
            halt(exc, why="leads: processing a batch failed")
            raise

    def halt(exc: BaseException, *, why: str) -> None:
        """Apply nothing more, by either path, and stop the worker. A batch failed part-way:
        applying later records first would move the leads' raw-offset marks past its
        events, and its replay after the restart would take them for re-reads."""
        halted.set()
        app.crash_soon(exc, why=why)

    async def score(stream: faust.StreamT) -> None:
        async for event in stream.noack().events():  # type: ignore[attr-defined]
            message = event.message
            partition = message.partition
            # A broker round trip for a partition new here: not under the lock, which would
            # hold up the flusher (`handover` leaves a partition alone until it is known).
            if not await learn_start(app, order, message, starts, still_mine=_not_taken):
                continue  # not acknowledged: read again after the seek, or by its new owner
            # Under the lock from the order check to the state update: `handover` applies
            # the next record of a partition in between otherwise, out of order.
            async with lock:
                if halted.is_set() or partition in taken:
                    continue  # stopping, or revoked meanwhile: not acknowledged
                outputs = _take_handed(partition, message.offset, event.value)
                if outputs is not None:
                    # Applied when this worker's intake wrote it: acknowledged once the
                    # state it made is written, like any other.
                    pending.setdefault(partition, []).append((event, outputs))
                    continue
                if not await in_order(app, order, message, rewinds):
                    continue  # not acknowledged: read again after the seek
                batch = decode_batch(event.value)
                result, _ = await apply_locked(partition, batch, event)
                counted(partition, batch, result)
                await _apply_parked(partition)  # the records handed over behind this one

    async def handover(records: list[tuple[int, int, bytes, PersonEventBatch]]) -> None:
        """Apply person-events records this worker has just written (the intake's
        micro-batches, the leads stage's identity messages: `send`), in-process, instead of
        after a consumer round trip (on Tansu a fetch wait, on Kafka a fetch).

        Only the record a partition expects next, of a partition this worker scores now,
        with the table settled. One ahead of it (an identity message of this stage's, or
        another worker's record, not applied yet before it) is parked and applied right
        after the records before it, however they come (at most PARKED_MAX a partition);
        any other is left to the consumer. Faust still delivers every record; `score` then
        only acknowledges the ones applied here, once their state is written, so offsets
        commit exactly as before and a crash replays the same way.

        The records of one call are applied under one hold of `lock`: released between
        them, another call (a hand-back of identity messages written after them) could
        apply its record for a partition first, and the one written before it would no
        longer be the record that partition expects (~800 records of a 300k backlog went
        to the consumer that way).
        """
        try:
            async with lock:
                for partition, offset, value, batch in records:
                    written[partition] = max(written.get(partition, 0), offset + 1)
                    if not _may_hand_over(partition):
                        continue
                    expected = order.expected(partition)
                    if offset > expected:
                        waiting = parked[partition]
                        if len(waiting) < PARKED_MAX:
                            waiting[offset] = (value, batch)
                        continue
                    if offset == expected:
                        await _apply_handed(partition, offset, value, batch)
                        await _apply_parked(partition)
        except Exception as exc:
            halt(exc, why="leads: processing a handed-over batch failed")

    def _may_hand_over(partition: int) -> bool:
        return not halted.is_set() and partition in owned and _settled() and order.knows(partition)

    async def _apply_handed(
        partition: int, offset: int, value: bytes, batch: PersonEventBatch
    ) -> None:
        """Apply a handed-over record, the one its partition expects (the caller holds
        `lock`). The batch is as its writer built it: `value` is its encoding, which the
        consumer path decodes to an equal batch."""
        source = _Handed(topics.person_events, partition, offset)
        result, outputs = await apply_locked(partition, batch, source)
        order.check(partition, offset)  # applied: the next one is expected
        handed[partition][offset] = (outputs, zlib.crc32(value))
        metrics.handed_over.inc()
        counted(partition, batch, result)

    async def _apply_parked(partition: int) -> None:
        """Apply the parked records of `partition` that are next in line now (the caller
        holds `lock`); forget those the consumer has applied meanwhile."""
        waiting = parked.get(partition)
        while waiting and _may_hand_over(partition):
            offset = order.expected(partition)
            entry = waiting.pop(offset, None)
            if entry is None:
                break
            await _apply_handed(partition, offset, *entry)
        if waiting and order.knows(partition):
            for offset in [o for o in waiting if o < order.expected(partition)]:
                del waiting[offset]

    async def caught_up() -> None:
        """The intake's read-ahead bound: before it forwards its next fetch, if this stage is
        more than READ_AHEAD_SLACK_RECORDS behind on what this worker wrote to the
        partitions it scores (the intake's records, and the stage's own identity messages),
        wait (at most READ_AHEAD_WAIT_S) until it has applied all of it, those being handed
        back included; and, at start-up, until the table is recovered. The intake's next
        record is then the one its partition expects next, or parked behind records on
        their way back, and is handed over.

        Without it the intake reads on while the stage is not ready, or while the consumer
        catches up after a record the handover could not take; every record after that one
        then goes through the consumer too (decoded again, buffered by Faust),
        and the handover never resumes while the intake stays ahead.
        """
        # Within the slack it need not wait for the stage's identity messages on their way
        # back: a record of its that lands behind one is parked until that one is applied.
        # (Waiting for them held the intake in 29% of its forwards at 1,000 events/s, a
        # median 11 ms each.)
        if _caught_up_with(None, READ_AHEAD_SLACK_RECORDS):
            return
        # The hand-backs under way now (not those started meanwhile: a stage applying
        # records from elsewhere on may start them without end).
        earlier = list(handing_back)
        started = time.monotonic()
        deadline = started + READ_AHEAD_WAIT_S
        while time.monotonic() < deadline and not _caught_up_with(earlier, 0):
            await asyncio.sleep(_CAUGHT_UP_POLL_S)
        metrics.intake_held.inc(time.monotonic() - started)

    def _caught_up_with(hand_backs: list[asyncio.Future[None]] | None, slack: int) -> bool:
        if halted.is_set():
            return True  # stopping: the intake's own stop decides
        if not _settled():
            return False
        if hand_backs is not None and not all(task.done() for task in hand_backs):
            return False
        behind = 0
        for p, end in written.items():
            if p in owned and p not in taken:
                if not order.knows(p):
                    return False
                behind += max(0, end - order.expected(p))
        return behind <= slack

    def _take_handed(partition: int, offset: int, value: bytes) -> asyncio.Future[Any] | None:
        """The outputs of the record at `offset` if `handover` applied it, else None."""
        entries = handed.get(partition)
        if not entries:
            return None
        entry = entries.pop(offset, None)
        if entry is None:
            return None
        outputs, crc = entry
        if zlib.crc32(value) != crc:
            # The offsets `send_placed` computed were wrong: what was applied is not what
            # the partition holds there. Nothing to do but stop before committing it.
            raise RuntimeError(
                f"{topics.person_events}[{partition}] offset {offset} holds another record "
                "than the one handed over there; set LEADSTREAM_HANDOVER=false"
            )
        while entries and next(iter(entries)) < offset:
            # Passed over by the consumer: applied here, and covered by this ack.
            del entries[next(iter(entries))]
        order.passed(partition, offset)
        return outputs

    def _not_taken(partition: int) -> bool:
        return partition not in taken

    async def apply_locked(
        partition: int, batch: PersonEventBatch, source: Any
    ) -> tuple[BatchResult, asyncio.Future[Any]]:
        """Score a batch into the store (the caller holds `lock`); queue its outputs.
        `source`: the Faust event, or `_Handed`; its `message` says where the batch is."""
        result = apply_person_batch(
            store.leads(partition, keys_of(batch)),
            batch,
            model=models.current,
            rotation=store.rotation(partition),
            limits=with_accounts(limits, accounts.current),
            now=clock(),
        )
        # Queued, not awaited: `flush` waits for these acknowledgements before it writes
        # this batch's state, so the agent need not wait a round trip here.
        records = outputs_of(partition, result.decisions)
        if result.failed:
            records += _failures(topics, result.failed, source.message, clock())
            metrics.events_dead_lettered.labels(reason="processing_error").inc(len(result.failed))
        if result.rejected:
            records += _feedback_rejected(topics, result.rejected, clock())
            for _, reason, _ in result.rejected:
                metrics.events_dead_lettered.labels(reason=reason).inc()
        outputs = await send(records)
        store.update(partition, result.leads, result.rotation, deleted=result.deleted)
        clocks.note(partition, result.leads, models.current)
        clocks.drop(partition, result.deleted)
        pending.setdefault(partition, []).append((source, outputs))
        return result, outputs

    def outputs_of(partition: int, decisions: Iterable[Decision]) -> list[Record]:
        """The records of `decisions` made on lead `partition`; its contact updates are
        held for the accounts stage instead (`outbox`)."""
        contacts: list[ContactUpdate] = []
        records = _records(topics, decisions, settings.partitions, held=contacts)
        outbox.hold(partition, contacts)
        return records

    async def send(records: list[Record]) -> asyncio.Future[Any]:
        """Queue output records (`outputs_out`, with the other records applied in this
        turn of the event loop). The identity messages among them for
        partitions this worker scores are handed over once written, like the intake's
        records: else each one would stop its partition's handover (the records after it
        are not the next one there) until the consumer delivers it."""
        outputs = await outputs_out.enqueue(records)
        if settings.handover and any(
            r.topic == topics.person_events and r.partition in owned for r in records
        ):
            background.add(task := asyncio.ensure_future(_hand_back(records, outputs)))
            task.add_done_callback(_done)
            handing_back.add(task)
            task.add_done_callback(handing_back.discard)
        return outputs

    async def _hand_back(records: list[Record], outputs: asyncio.Future[Any]) -> None:
        try:
            offsets = placed(await asyncio.shield(outputs), len(records))
        except Exception:
            return  # not written: the flush waiting for these outputs stops the worker
        await handover(
            [
                (r.partition, offset, r.value, decode_batch(r.value))
                for r, offset in zip(records, offsets, strict=True)
                if r.topic == topics.person_events
                and r.partition in owned  # the others `handover` would not take: no decode
                and r.partition is not None
                and offset >= 0
                and r.value is not None
            ]
        )

    def counted(partition: int, batch: PersonEventBatch, result: BatchResult) -> None:
        metrics.events_processed.inc(len(batch.events))
        _count(metrics, result.decisions, result.duplicates, clock())
        kpis.count(result.decisions, leads=result.leads, feedback=result.feedback)
        now = time.monotonic()
        if now - flushed_at.get(partition, 0.0) >= settings.state_flush_ms / 1000:
            flushed_at[partition] = now
            background.add(task := asyncio.ensure_future(flush(partition)))
            task.add_done_callback(_done)

    @app.timer(PASSED_OVER_CHECK_S)
    async def passed_over_check() -> None:
        """Records the consumer moved past without delivering them (OffsetGuard)."""
        if _settled():
            await reread_passed_over(
                app,
                order,
                topics.person_events,
                owned - taken,
                rewinds,
                start_offset=starts,
                still_mine=_not_taken,
            )

    # Hand-off SLA clocks: the leads whose clock runs, by partition, with the time their next
    # step is due. Kept as leads change; rebuilt from the table for a partition this worker
    # has just been given (the clocks live in the leads, so they survive restarts).
    clocks = SlaClocks()

    @app.timer(settings.sla_tick_ms / 1000)
    async def sla_timer() -> None:
        """Take every SLA step that is due: reminders, escalations, reassignments."""
        if models.current.sla is None or not _settled():
            # Never while the table recovers: a lead read now would be cached as it stood
            # part-way through recovery, and events re-delivered after a crash would then
            # be applied to that stale copy (counted twice, found by loadtest.faults).
            return
        mine = {
            tp.partition
            for tp in app.assignor.assigned_actives()
            if tp.topic == topics.person_events
        }
        now = clock()
        for partition in mine:
            if not clocks.knows(partition):
                async with lock:
                    clocks.rebuild(partition, _sla_leads(local, partition), models.current)
            due = clocks.due(partition, int(now.timestamp() * 1000))
            if not due:
                continue
            async with lock:
                if halted.is_set():
                    return  # stopping: the next owner takes these steps
                leads = store.leads(partition, due)
                rotation = store.rotation(partition)
                changed = {}
                decisions: list[Decision] = []
                for pk, lead in leads.items():
                    ticked = sla_tick(
                        lead,
                        model=models.current,
                        rotation=rotation,
                        limits=limits,
                        now=now,
                    )
                    if ticked is not None:
                        changed[pk] = ticked.lead
                        decisions.extend(ticked.decisions)
                outputs = await send(outputs_of(partition, decisions))
                store.update(partition, changed, rotation)
                clocks.note(partition, changed, models.current)
                pending.setdefault(partition, []).append((_NO_INPUT, outputs))
                _count(metrics, decisions, 0, now)
                kpis.count(decisions, leads=changed)

    def _sla_leads(data: FaustLocalTable, partition: int) -> dict[str, LeadState]:
        """The leads of a partition whose SLA clock runs (a cheap byte test first)."""
        found = {}
        for key, raw in data.items():
            if b'"sla":[' not in raw or key.startswith(b"__"):
                continue
            pk = key.decode()
            if person_partition(pk, settings.partitions) == partition:
                found[pk] = decode_state(raw)
        return found

    async def flush_pending() -> None:
        await asyncio.gather(*(flush(partition) for partition in list(pending)))

    def to_write(partitions: Iterable[int]) -> list[int]:
        """Of `partitions`, those with state to write: records applied since their last
        flush, or a flush under way (the timer's, a revocation's). A flush takes what it
        writes out of `pending` when it starts: a stop or a revocation that waited only for
        `pending` would commit without what that flush has not written yet, and cancel it
        (found at a 1 s write-behind: a restarted worker scored again records applied and
        acknowledged before a clean stop)."""
        return [p for p in partitions if p in pending or (p in flushing and flushing[p].locked())]

    @app.task
    async def write_behind() -> None:
        """Write-behind for partitions that went quiet (no record arrives to trigger it):
        `flush_pending` an interval after the last one ended, until the worker stops.

        Not `app.timer`: a flush waits for its outputs' acknowledgements and for the
        contact updates' send (up to an interval), so under load it often runs as long as
        the interval, and mode's timer logged a warning each time ("Timer ... is
        overlapping"; 1,105 of them in the load tests' worker logs), for the design
        working as meant. Each write is timed instead (`flush`: the metric
        `leadstream_state_write_seconds`, and a warning past `SLOW_STATE_WRITE_S`)."""
        interval_s = settings.state_flush_ms / 1000
        while not app.should_stop:
            await app.sleep(interval_s)
            if not app.should_stop:
                await flush_pending()

    watch = BrokerWatch(timeout_s=settings.broker_lost_timeout_s)

    @app.timer(settings.broker_check_s)
    async def broker_check() -> None:
        """Exit rather than run on when the broker is gone for good or lost our records."""
        read_up_to = order.positions()  # before asking: what is read was on the broker
        try:
            names, ends = await asyncio.wait_for(
                probe.ends(topics.person_events), timeout=max(settings.broker_check_s, 5.0)
            )
        except Exception as exc:  # connection refused, timeouts, metadata errors
            if not watch.down:
                log.warning("broker check: the broker does not answer: %r", exc)
            problem = watch.unreachable(time.monotonic(), repr(exc))
            if problem is not None:
                app.crash_soon(BrokerLost(problem), why=problem, grace_s=BROKER_LOST_GRACE_S)
            return
        if watch.down:
            log.warning("broker check: the broker answers again")
        watch.reached()
        if topics.person_events in names:
            ends = await _confirmed_ends(read_up_to, ends)
        problem = lost_records(topics.person_events, read_up_to=read_up_to, ends=ends, topics=names)
        if problem is not None:
            app.crash_soon(BrokerLost(problem), why=problem, grace_s=BROKER_LOST_GRACE_S)

    async def _confirmed_ends(read_up_to: dict[int, int], ends: dict[int, int]) -> dict[int, int]:
        """`ends`, raised to what was read where the broker still serves the last record
        read: Tansu reports a partition's end as the first offset of its last batch + 1
        when that batch holds several records (a forward of several micro-batches)."""
        behind = {p: n - 1 for p, n in read_up_to.items() if n > 0 and ends.get(p, 0) < n}
        if not behind:
            return ends
        try:
            # Room for `holds` to wait out every partition asked: with a fixed 5 s and 3
            # partitions behind, a read-back in which each fetch brought nothing timed out
            # every time, and a broker back without our topics never stopped the worker.
            held = await asyncio.wait_for(
                probe.holds(topics.person_events, behind),
                timeout=max(settings.broker_check_s, 5.0) + len(behind) * HOLDS_WAIT_MS / 1000,
            )
        except Exception as exc:
            # Cannot tell this time: the next check asks again (a false "lost" would stop
            # a healthy worker).
            log.warning("broker check: could not read the last records read back: %r", exc)
            return {**ends, **{p: read_up_to[p] for p in behind}}
        return {**ends, **{p: read_up_to[p] for p, ok in held.items() if ok}}

    async def final_write() -> None:
        # The stop: from here on nothing is applied (the consumer delivers records until
        # Faust stops the agent): a record applied after the final write would have its
        # outputs sent and its state and offset not written, so the next owner would apply
        # it again and send them twice.
        halted.set()
        await asyncio.gather(*background, return_exceptions=True)
        # Not `write_behind`'s loop, which ends at once when the app stops, writing nothing
        # (found by tests/integration/test_two_workers when it was a Faust timer).
        await asyncio.gather(*(flush(p) for p in to_write({*pending, *flushing})))
        # Then the accounts stage's writes under way (some from the contact updates just
        # sent): the records that made them are acknowledged only once they are written.
        await accounts_written()

    accounts_written = add_account_stage(
        app,
        table=account_table,
        on_error=lambda exc: app.crash_soon(exc, why="accounts: writing account state failed"),
        start_offset=starts,
        settings=settings,
        topics=topics,
        model=lambda: models.current,
        producer=out,
        metrics=metrics,
        clock=clock,
    )

    def _settled() -> bool:
        """Table recovery finished and no rebalance under way: lead state can be read."""
        recovery = app.tables.recovery  # type: ignore[attr-defined]
        return bool(recovery.completed.is_set() and not app.in_recovery and not app.rebalancing)

    async def rescore(new: LeadModel) -> None:
        """`publish --rescore`: replay each local lead's history through `new`, in chunks.

        Only partitions this worker owns as active are rescored (standby copies belong to
        another worker); writes go through the same write-behind as the agent's, so the
        outputs are acknowledged before the state is.
        """
        while not _settled():  # a switch read at start-up: wait for the table to recover
            await asyncio.sleep(0.5)
        mine = {
            tp.partition
            for tp in app.assignor.assigned_actives()
            if tp.topic == topics.person_events
        }
        keys = [
            k
            for k in local.all_keys()
            if not k.startswith(b"__") and person_partition(k.decode(), settings.partitions) in mine
        ]
        log.info("rescoring %d leads with model %s", len(keys), new.version)
        changed = 0
        for start in range(0, len(keys), _RESCORE_CHUNK):
            if models.current is not new:
                log.warning("rescore with model %s stopped: a newer model arrived", new.version)
                return
            async with lock:
                if halted.is_set():  # stopping: not resumed after a restart
                    log.warning(
                        "rescore with model %s stopped at %d/%d leads by the worker's stop; "
                        "publish the model again with --rescore to finish",
                        new.version,
                        start,
                        len(keys),
                    )
                    return
                for raw_key in keys[start : start + _RESCORE_CHUNK]:
                    pk = raw_key.decode()
                    partition = person_partition(pk, settings.partitions)
                    lead = store.leads(partition, (pk,)).get(pk)
                    if lead is None or lead.alias_of is not None:
                        continue  # revoked meanwhile, or an identifier's alias
                    applied = rescore_lead(
                        lead,
                        model=new,
                        rotation=store.rotation(partition),
                        now=clock(),
                        limits=with_accounts(limits, accounts.current),
                    )
                    records = outputs_of(partition, applied.decisions)
                    changed += bool(applied.decisions)
                    outputs = await send(records)
                    store.update(partition, {pk: applied.lead}, applied.rotation)
                    pending.setdefault(partition, []).append((_NO_INPUT, outputs))
                    metrics.rescored.inc()
            done = min(start + _RESCORE_CHUNK, len(keys))
            if done == len(keys) or done % (_RESCORE_CHUNK * 20) == 0:
                log.info("rescoring: %d/%d leads, %d changed", done, len(keys), changed)
            await asyncio.sleep(0)  # let the agent score live events between chunks

    def on_switch(old: LeadModel, new: LeadModel, rescore_requested: bool) -> None:
        log.info(
            "lead model: now %s v%s (was v%s)%s",
            new.name,
            new.version,
            old.version,
            "; rescoring stored leads" if rescore_requested else "",
        )
        if rescore_requested:
            app.add_future(rescore(new))

    models.on_switch(on_switch)
    app.models = models
    app.accounts = accounts
    app.lifecycle = _Lifecycle(
        ensure_topics=ensure_topics,
        probe=probe,
        models=ModelFeed(
            topic=topics.model,
            kafka=kafka,
            holder=models,
            metrics=metrics,
            fetch_wait_ms=settings.model_fetch_wait_ms,
        ),
        accounts=AccountFeed(
            topic=topics.crm_accounts,
            kafka=kafka,
            holder=accounts,
            metrics=metrics,
            fetch_wait_ms=settings.accounts_fetch_wait_ms,
            catch_up_timeout_s=settings.accounts_catch_up_timeout_s,
        ),
        intake=IntakeProcess(
            settings=settings,
            metrics=metrics,
            handover=handover if settings.handover else None,
            caught_up=caught_up if settings.handover else None,
            crash=lambda exc: app.crash_soon(exc, why="intake: its process failed"),
        )
        if settings.intake_in_own_process(available_cpus() if cpus is None else cpus)
        else IntakeService(
            settings=settings,
            kafka=kafka,
            producer=out,
            metrics=metrics,
            clock=clock,
            handover=handover if settings.handover else None,
            caught_up=caught_up if settings.handover else None,
        ),
        final_write=final_write,
        handed_offsets=handed_offsets,
        flush_pending=flush_pending,
        producer=out,
        recovery_watch=RecoveryWatchService(
            recovery_check(app, stall_s=settings.recovery_stall_s, rewinds=metrics.recovery_rewinds)
        ),
        # Without a secret the inbox is not served at all (never open).
        inbox=serve_inbox(
            app,
            settings=settings,
            kafka=kafka,
            model=lambda: models.current,
            producer=out,
            clock=clock,
        )
        if settings.inbox_secret is not None
        else None,
    )

    async def before_revoke(revoked: set[TP]) -> dict[TP, int]:
        """Write the state of what was processed on partitions about to go, so that their
        input is acknowledged and the consumer commits it before giving them up."""
        mine = {tp.partition for tp in revoked if tp.topic == topics.person_events}
        await asyncio.gather(*background, return_exceptions=True)
        await asyncio.gather(*(flush(partition) for partition in to_write(mine)))
        return handed_offsets(mine)

    app.before_revoke = before_revoke

    @app.on_partitions_revoked.connect  # type: ignore[arg-type]
    async def on_revoked(app: faust.App, revoked: set[TP], **_: Any) -> None:
        gone = {tp.partition for tp in revoked if tp.topic == topics.person_events}
        owned.difference_update(gone)
        taken.update(gone)
        await _forget(gone)

    @app.on_partitions_assigned.connect  # type: ignore[arg-type]
    async def on_assigned(app: faust.App, assigned: set[TP], **_: Any) -> None:
        mine = {tp.partition for tp in assigned if tp.topic == topics.person_events}
        # Anything still held of a partition not assigned now (belt and braces: revoked
        # ones were forgotten on revocation) is forgotten too.
        stale = (set(pending) | set(handed) | set(order.positions())) - mine
        await _forget(mine | stale)
        order.keep_only(mine)
        for partition in mine:
            if not order.knows(partition):
                # New here: what this worker wrote there before may all be read and
                # committed by the previous owner, so no record of it may come to make the
                # partition known, and `caught_up` would hold the intake on it each time.
                written.pop(partition, None)
        owned.clear()
        owned.update(mine)
        taken.difference_update(mine)

    async def _forget(partitions: set[int]) -> None:
        clocks.forget(partitions)
        for partition in partitions:
            async with flushing[partition], lock:
                dropped = pending.pop(partition, [])
                handed.pop(partition, None)  # the consumer processes what comes, again
                parked.pop(partition, None)
                written_to.pop(partition, None)  # of a past ownership: never committed
            # Processed, but their state is dropped unwritten: they must be read again.
            offsets = [event.message.offset for event, _ in dropped if event is not _NO_INPUT]
            if offsets:
                order.rewind(partition, min(offsets))
        async with lock:
            store.forget(partitions)

    serve_health(
        app,
        probes=lambda: worker_probes(
            app,
            intake=app.lifecycle.intake if app.lifecycle is not None else None,
            model=lambda: models.current,
        ),
    )

    @app.page("/metrics")
    class MetricsView(View):
        async def get(self, request: Request) -> Response:
            # aiohttp refuses a charset inside content_type; pass the full header instead.
            return self.bytes(render(registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

    if settings.write_keys:  # without keys the ingest is not served at all (never open)
        ingest = IngestHandler.from_settings(settings, producer=out, registry=registry, clock=clock)

        @app.page(ROUTE)
        class IngestView(View):
            """The Segment Tracking API (streams.ingest_http), on the /metrics port."""

            async def post(self, request: Request, **_: Any) -> Response:
                return cast(Response, await ingest(cast(web.Request, request)))

            async def options(self, request: Request, **_: Any) -> Response:
                return cast(Response, await ingest(cast(web.Request, request)))

        # Faust builds its runner with aiohttp's defaults; the same one with the ingest's
        # options (bodies reach the handler as sent). Replaced before the server starts.
        server = cast(AiohttpWeb, app.web)
        server._runner = web.AppRunner(server.web_app, **RUNNER_OPTIONS)

    return app


_RESCORE_CHUNK = 500


@dataclass(frozen=True, slots=True)
class _Message:
    """Where a handed-over record is (what a dead letter and a rewind need of it)."""

    topic: str
    partition: int
    offset: int


class _Handed:
    """Stands for a person-events record `handover` applied: nothing to ack here, the ack
    comes with the same record when Faust delivers it."""

    __slots__ = ("message",)

    def __init__(self, topic: str, partition: int, offset: int) -> None:
        self.message = _Message(topic, partition, offset)

    def ack(self) -> None:
        return None


class _NoInput:
    """Stands for the input record of a batch that has none (a rescore): nothing to ack."""

    def ack(self) -> None:
        return None


_NO_INPUT: Any = _NoInput()


def _records(
    topics: Topics,
    decisions: Iterable[Decision],
    partitions: int,
    *,
    held: list[ContactUpdate] | None = None,
) -> list[Record]:
    """The records of `decisions`. Contact updates go to `held` when it is given (the
    leads stage's outbox sends them), else into account-updates records here."""
    out = []
    contacts = [] if held is None else held
    internal: dict[int, list[Decision]] = {}
    for d in decisions:
        if isinstance(d, RepAlert):
            out.append(Record(topics.alerts, d.rep_id.encode(), encode(d)))
        elif isinstance(d, HandOff):
            out.append(Record(topics.routed, d.lead_id.encode(), encode(d)))
        elif isinstance(d, LeadScored):
            out.append(Record(topics.scored, d.lead_id.encode(), encode_scored(d)))
        elif isinstance(d, LeadMerged):
            out.append(Record(topics.merged, d.lead_id.encode(), encode(d)))
        elif isinstance(d, SlaEvent):
            out.append(Record(topics.sla, d.lead_id.encode(), encode(d)))
        elif isinstance(d, LeadForgotten):
            key = d.lead_id if d.lead_id is not None else d.request_id
            out.append(Record(topics.forgotten, key.encode(), encode(d)))
        elif isinstance(d, ContactUpdate):
            contacts.append(d)
        else:  # the identity graph's messages to entries in other partitions
            partition = person_partition(_addressee(d), partitions)
            internal.setdefault(partition, []).append(d)
    if contacts and held is None:
        out += contact_batches(topics, contacts, partitions)
    for partition, messages in sorted(internal.items()):
        out.append(
            Record(
                topics.person_events,
                str(partition).encode(),
                encode(to_batch(messages)),
                partition=partition,
            )
        )
    return out


def _addressee(
    message: PersonEvent | Link | MergeRequest | MergeIn | FeedbackIn | Forget | Unlink,
) -> str:
    if isinstance(message, PersonEvent):
        return message.pk
    if isinstance(message, FeedbackIn | Forget):
        return message.to
    if isinstance(message, Unlink):
        return message.key
    if isinstance(message, Link):
        return message.key
    if isinstance(message, MergeRequest):
        return message.at
    return message.into


def _failures(
    topics: Topics, failed: list[tuple[PersonEvent, str]], message: Any, now: datetime
) -> list[Record]:
    """Dead letters for events the core failed on, so they are seen, not lost or retried
    forever (the error names the bug; the value is the normalized event)."""
    # The error's type only: its text may quote a trait value (a name); the DLQ has it.
    kinds = sorted({error.split(":", 1)[0] for _, error in failed})
    log.error("leads: %d event(s) failed and went to the DLQ (%s)", len(failed), ", ".join(kinds))
    return [
        Record(
            topics.dlq,
            event.pk.encode(),
            encode(
                dead_letter(
                    Rejection("processing_error", error),
                    value=encode(event),
                    key=event.pk.encode(),
                    topic=message.topic,
                    partition=message.partition,
                    offset=message.offset,
                    now=now,
                )
            ),
        )
        for event, error in failed
    ]


def _feedback_rejected(
    topics: Topics, rejected: list[tuple[FeedbackIn, str, str]], now: datetime
) -> list[Record]:
    """Dead letters for sales feedback that cannot be used (unknown lead, out of order)."""
    return [
        Record(
            topics.dlq,
            item.feedback.lead_id.encode(),
            encode(
                dead_letter(
                    Rejection(reason, message),  # type: ignore[arg-type]
                    value=encode(item.feedback),
                    key=item.feedback.lead_id.encode(),
                    topic=topics.feedback,
                    partition=item.partition,
                    offset=item.offset,
                    now=now,
                )
            ),
        )
        for item, reason, message in rejected
    ]


def _count(metrics: Metrics, decisions: list[Decision], duplicates: int, now: datetime) -> None:
    metrics.events_deduplicated.inc(duplicates)
    scored = 0
    for decision in decisions:
        if isinstance(decision, RepAlert):
            metrics.alerts.inc()
            metrics.alert_latency.observe(max(0.0, (now - decision.event_at).total_seconds()))
        elif isinstance(decision, HandOff):
            metrics.handoffs.labels(reason=decision.reason).inc()
        elif isinstance(decision, LeadScored):
            scored += 1
        elif isinstance(decision, SlaEvent):
            metrics.sla_steps.labels(step=decision.step).inc()
        elif isinstance(decision, LeadForgotten):
            metrics.forgotten.labels(found="true" if decision.found else "false").inc()
    metrics.scored.inc(scored)
