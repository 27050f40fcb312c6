"""The lean first stage: an aiokafka consumer inside the worker that reads raw events in bulk.

Faust costs ~220 µs of Python per consumed record; this loop costs a few µs. It validates a
whole fetch at once, sends dead letters and one micro-batch record per person partition in
batched produces, waits for the broker's acknowledgement, and only then commits the input
offsets (at-least-once; the leads stage deduplicates by messageId).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import datetime

import mode
from aiokafka import AIOKafkaConsumer
from aiokafka.errors import CommitFailedError, IllegalStateError

from schemas.internal import PersonEvent, PersonEventBatch
from streams.codec import encode, encode_batch
from streams.intake import IntakeResult, intake_batch
from streams.kafka_connection import KafkaConnection
from streams.metrics import Metrics
from streams.producer import BatchProducer, Record
from streams.settings import Settings
from streams.topics import Topics

__all__ = ["CaughtUp", "Handover", "IntakeService", "forward_batches"]

#: Takes person-events records this worker just wrote, (partition, offset, value, the batch
#: the value encodes) in offset order per partition, to apply them in-process
#: (streams/app.py, `handover`): the batch as built, so it need not be decoded again.
Handover = Callable[[list[tuple[int, int, bytes, PersonEventBatch]]], Awaitable[None]]

#: Waits, before the intake forwards a fetch, while this worker's leads stage is far behind on
#: what was handed over to it (streams/app.py, `caught_up`). Bounds the read-ahead, so that
#: the handover keeps applying.
CaughtUp = Callable[[], Awaitable[None]]

log = logging.getLogger(__name__)

#: The most bytes of events in one forwarded record, before it is split in halves: the
#: events a fetch brings for one partition usually fit (5,000 events over 8 partitions are
#: ~125 KB), since each record has a cost of its own in the leads stage whatever it holds
#: (Faust's delivery, the apply, the identity messages it sends). Far under Kafka's 1 MB
#: message limit; one event is ~6 KiB at most once normalized (64 KiB is the input limit).
_RECORD_BYTES = 256 * 1024


def forward_batches(
    result: IntakeResult, topics: Topics
) -> list[tuple[Record, PersonEventBatch | None]]:
    """The records one intake batch produces: dead letters, then micro-batches by partition,
    each with the person-events batch it encodes (None: a dead letter)."""
    out: list[tuple[Record, PersonEventBatch | None]] = [
        (Record(topics.dlq, key, encode(dead)), None) for key, dead in result.dead
    ]
    batches = [
        (partition, PersonEventBatch(events=(), feedback=tuple(feedback)))
        for partition, feedback in result.feedback.items()
    ]
    batches += (
        (partition, PersonEventBatch(events=(), forgets=tuple(forgets)))
        for partition, forgets in result.forgets.items()
    )
    for partition, batch in batches:
        out.append((_person_record(topics, partition, encode_batch(batch)), batch))
    for partition, events in result.forward.items():
        out += _event_records(topics, partition, events)
    return out


def _event_records(
    topics: Topics, partition: int, events: list[PersonEvent]
) -> list[tuple[Record, PersonEventBatch | None]]:
    """The events of one partition as one record, or, past _RECORD_BYTES, as the records
    of each half in turn (in order)."""
    batch = PersonEventBatch(events=tuple(events))
    value = encode_batch(batch)
    if len(value) > _RECORD_BYTES and len(events) > 1:
        half = len(events) // 2
        return _event_records(topics, partition, events[:half]) + _event_records(
            topics, partition, events[half:]
        )
    return [(_person_record(topics, partition, value), batch)]


def _person_record(topics: Topics, partition: int, value: bytes) -> Record:
    return Record(topics.person_events, f"p{partition}".encode(), value, partition=partition)


class IntakeService(mode.Service):
    """Reads `engagement.raw`, `sfa.feedback` and `leadstream.erasure` in its own consumer
    group, `<app id>-intake`."""

    def __init__(
        self,
        *,
        settings: Settings,
        kafka: KafkaConnection,
        producer: BatchProducer,
        metrics: Metrics,
        clock: Callable[[], datetime],
        handover: Handover | None = None,
        caught_up: CaughtUp | None = None,
        report: Callable[[], Awaitable[None]] | None = None,
        **kwargs: object,
    ) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        # In an intake process: sends the metrics to the worker's, as they change.
        self._report = report
        self._handover = handover
        self._caught_up = caught_up
        self._settings = settings
        self._topics = Topics(settings.topic_prefix)
        self._kafka = kafka
        self._producer = producer
        self._metrics = metrics
        self._clock = clock
        self._email_rules = settings.core_limits().email_rules
        self._consumer: AIOKafkaConsumer | None = None
        self._loop_exited = asyncio.Event()

    @property
    def assigned(self) -> bool:
        """Joined its consumer group and holds partitions (what /readyz asks)."""
        consumer = self._consumer
        return consumer is not None and bool(consumer.assignment())

    async def _connect(self) -> None:
        # Here, not in on_start: joining the group takes seconds on some brokers, and the
        # worker's start-up (Faust's own join and table recovery) need not wait for it.
        s = self._settings
        self._consumer = AIOKafkaConsumer(
            self._topics.raw,
            self._topics.feedback,
            self._topics.erasure,
            **self._kafka.client_kwargs(),
            group_id=f"{s.app_id}-intake",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=s.intake_fetch_wait_ms,
            max_partition_fetch_bytes=4 * 1024 * 1024,
            session_timeout_ms=int(s.session_timeout_s * 1000),
            heartbeat_interval_ms=int(s.heartbeat_interval_s * 1000),
            rebalance_timeout_ms=int(max(10.0, s.session_timeout_s * 2) * 1000),
        )
        await self._consumer.start()

    async def on_stop(self) -> None:
        if self._consumer is None:
            return  # the loop never started
        # Let the loop finish the batch in hand (its forwards acknowledged), then commit:
        # positions never pass a record that was not forwarded.
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._loop_exited.wait(), timeout=30)
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            if self._loop_exited.is_set():
                with contextlib.suppress(Exception):
                    await self._commit(consumer)
            await consumer.stop()

    @mode.Service.task
    async def _run(self) -> None:
        # Commits are a broker round trip: made at most every intake_commit_ms, always after
        # the forwards they cover are acknowledged, and once more on a clean stop.
        committed_at = 0.0
        try:
            await self._connect()
            await self._consume(committed_at)
        finally:
            self._loop_exited.set()

    async def _consume(self, committed_at: float) -> None:
        consumer = self._consumer
        assert consumer is not None
        commit_every_s = self._settings.intake_commit_ms / 1000
        uncommitted = False
        while not self.should_stop:
            fetched = await consumer.getmany(
                timeout_ms=200, max_records=self._settings.intake_batch_max
            )
            await self._note_lag(consumer)
            # aiokafka's records as they are: intake_batch reads their value, key, topic,
            # partition and offset (streams.intake.RawLike).
            raw = list(itertools.chain.from_iterable(fetched.values()))
            # Read: counted now, not once forwarded (the load test times a backlog's drain
            # from the first read it sees here).
            self._metrics.events_received.inc(len(raw))
            if self._report is not None:
                await self._report()
            if not raw:
                # Idle: commit what the last batches forwarded, so that a rebalance or a
                # stop does not make the next owner read them again.
                if uncommitted and time.monotonic() - committed_at >= commit_every_s:
                    committed_at, uncommitted = time.monotonic(), False
                    await self._commit(consumer)
                continue
            result = intake_batch(
                raw,
                partitions=self._settings.partitions,
                now=self._clock(),
                feedback_topic=self._topics.feedback,
                erasure_topic=self._topics.erasure,
                email_rules=self._email_rules,
            )
            batches = forward_batches(result, self._topics)
            # Read and validated meanwhile: the stage's acknowledgements and hand-backs of
            # the last forward come in while this worked.
            if self._caught_up is not None:
                await self._caught_up()
            # Counted before the forward: its effects (scores, alerts) never show before the
            # counts of the fetch they came from.
            self._count(result)
            if self._report is not None:
                await self._report()
            # Wait for the acknowledgement before the offsets may be committed.
            await self._forward(batches)
            now, uncommitted = time.monotonic(), True
            if now - committed_at >= commit_every_s:
                committed_at, uncommitted = now, False
                await self._commit(consumer)

    async def _forward(self, batches: list[tuple[Record, PersonEventBatch | None]]) -> None:
        records = [record for record, _ in batches]
        if self._handover is None:
            await self._producer.send(records)
            return
        # Written first, then handed over: the records are on the broker before their
        # effects exist anywhere, and the leads stage knows their offsets.
        offsets = await self._producer.send_placed(records)
        await self._handover(
            [
                (r.partition, offset, r.value, batch)
                for (r, batch), offset in zip(batches, offsets, strict=True)
                if batch is not None and r.partition is not None and r.value is not None
            ]
        )

    async def _note_lag(self, consumer: AIOKafkaConsumer) -> None:
        """`leadstream_intake_lag_records` by topic: what the last fetch saw (positions are
        known locally, so this costs no round trip)."""
        lag = dict.fromkeys((self._topics.raw, self._topics.feedback), 0)
        for tp in consumer.assignment():
            end = consumer.highwater(tp)
            if end is None:
                continue  # nothing fetched from it yet
            try:
                lag[tp.topic] = lag.get(tp.topic, 0) + max(0, end - await consumer.position(tp))
            except IllegalStateError:
                continue  # revoked meanwhile
        for topic, records in lag.items():
            self._metrics.intake_lag.labels(topic=topic).set(records)

    async def _commit(self, consumer: AIOKafkaConsumer) -> None:
        try:
            await consumer.commit()
        except (CommitFailedError, IllegalStateError) as exc:
            # A rebalance took the partitions: the new owner re-reads from the last
            # commit; the leads stage recognises the repeats by messageId.
            log.warning("intake: offsets not committed after a rebalance: %s", exc)

    def _count(self, result: IntakeResult) -> None:
        m = self._metrics
        m.events_valid.inc(result.valid)
        for reason, count in result.rejected.items():
            m.events_dead_lettered.labels(reason=reason).inc(count)
