"""Batched produce: records grouped per partition and sent as whole batches.

Faust's per-message send costs tens of microseconds of Python per record; aiokafka's
`create_batch`/`send_batch` costs a few. Every hot-path output goes through here.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, NamedTuple

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError, KafkaError, NodeNotReadyError
from aiokafka.partitioner import murmur2

from streams.kafka_connection import KafkaConnection, as_connection

__all__ = [
    "BatchProducer",
    "Coalescer",
    "Record",
    "Written",
    "partition_for_key",
    "placed",
    "resume_at",
]

log = logging.getLogger(__name__)

#: How long a batch is sent again after errors the broker calls retriable (a partition's
#: leader moving, a metadata or request timeout on a loaded broker) before they are raised:
#: Kafka's own producers give up after `delivery.timeout.ms`, 120 s by default. (30 s was
#: too short: aiokafka alone retries for its 40 s request timeout before it reports the
#: error, and a loaded Tansu once answered NotLeaderForPartition for that long.)
RETRY_FOR_S = 120.0


def _retriable(exc: BaseException) -> bool:
    """A broker busy or moving a leader, not one that cannot be reached: a refused or
    failed connection (down, wrong address, TLS or login refused) is raised at once, so a
    command says so within seconds and the worker's broker check decides about outages."""
    if isinstance(exc, KafkaConnectionError | NodeNotReadyError):
        return False
    return isinstance(exc, KafkaError) and bool(getattr(exc, "retriable", False))


@dataclass(frozen=True, slots=True)
class Record:
    topic: str
    key: bytes | None
    value: bytes | None  # None: a tombstone
    partition: int | None = None  # None: by key (murmur2, as Java clients); no key: spread


@lru_cache(maxsize=131_072)
def partition_for_key(key: bytes, partitions: int) -> int:
    """Kafka's default partitioner, so our keyed topics agree with any Java client."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


class BatchProducer:
    """One aiokafka producer; `send` returns when every record is acknowledged.

    `single_record_tail` names topics whose partitions must never end in a multi-record
    batch (a Tansu gap: ListOffsets is wrong then, and table recovery stops early); for
    those the last record of each partition group goes in a batch of its own.
    """

    def __init__(
        self,
        *,
        kafka: KafkaConnection | str,
        single_record_tail: frozenset[str] = frozenset(),
        client: Any = None,
        **producer_kwargs: Any,
    ) -> None:
        self._kafka = as_connection(kafka)
        self._tail = single_record_tail
        self._kwargs = {"acks": "all", "linger_ms": 0, **producer_kwargs}
        # `client`: an already started aiokafka producer (or a fake in tests).
        self._producer: AIOKafkaProducer | None = client
        self._partitions: dict[str, int] = {}
        self._tracked: set[str] = set()  # topics the client's metadata refreshes include
        self._spread = 0
        self._lock = asyncio.Lock()

    @property
    def batch_bytes(self) -> int:
        """The largest record batch built per partition (aiokafka's `max_batch_size`)."""
        return int(self._kwargs.get("max_batch_size", 16384))

    async def start(self) -> None:
        async with self._lock:
            if self._producer is None:
                producer = AIOKafkaProducer(**self._kafka.client_kwargs(), **self._kwargs)
                try:
                    await producer.start()
                except BaseException:
                    await producer.stop()  # a refused login leaves it half open
                    raise
                self._producer = producer

    async def stop(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            await producer.stop()

    async def send(self, records: Iterable[Record]) -> int:
        """Send and wait for acknowledgement of all; raises if any fails."""
        batch = list(records)
        await (await self.enqueue(batch))
        return len(batch)

    async def send_acked(self, records: Iterable[Record]) -> dict[tuple[str, int], int]:
        """Send and wait like `send`; per (topic, partition), an offset at or below the last
        record's (the base offset of the last batch): where a reader may resume without
        missing any of them."""
        return resume_at(await (await self.enqueue(list(records))))

    async def send_placed(self, records: Sequence[Record]) -> list[int]:
        """Send and wait like `send`; the offset each record was written at, in order."""
        return placed(await (await self.enqueue(records)), len(records))

    async def enqueue(
        self, records: Iterable[Record]
    ) -> asyncio.Future[list[tuple[Any, list[int]]]]:
        """Hand records to the producer; the returned future resolves when all are acked,
        to each batch's metadata (its topic, partition and base offset) with the indices of
        its records in `records`.

        Returns once they are queued (waiting only if the producer's buffer is full), so a
        caller can go on working while the broker acknowledges. Order is kept per partition.
        Retriable broker errors send the records of the batches that failed again, for up
        to `RETRY_FOR_S` (at least once: a record may then be written twice).
        """
        batch = list(records)
        deadline = time.monotonic() + RETRY_FOR_S
        while True:
            try:
                acked = await self._enqueue_all(batch)
                break
            except KafkaError as exc:
                if not _retriable(exc) or time.monotonic() > deadline:
                    raise
                log.warning("produce: %r; queueing %d records again", exc, len(batch))
                await asyncio.sleep(0.5)
        return asyncio.ensure_future(self._acked(batch, acked, deadline))

    async def _acked(
        self,
        batch: list[Record],
        acked: asyncio.Future[list[tuple[Any, list[int], str]]],
        deadline: float,
    ) -> list[tuple[Any, list[int]]]:
        done: list[tuple[Any, list[int]]] = []
        sending = list(range(len(batch)))  # what `acked` covers, as indices into `batch`
        while True:
            failed: list[int] = []
            errors: dict[str, BaseException] = {}
            for outcome, indices, where in await acked:
                if isinstance(outcome, BaseException):
                    failed += (sending[i] for i in indices)
                    errors.setdefault(where, outcome)
                else:
                    done.append((outcome, [sending[i] for i in indices]))
            if not errors:
                return done
            exc = next(iter(errors.values()))
            for error in errors.values():
                if not _retriable(error):
                    raise error
            if time.monotonic() > deadline:
                raise exc
            # Only the records of the batches that failed: the others are written.
            log.warning(
                "produce to %s: %r; sending %d records again",
                ", ".join(sorted(errors)),
                exc,
                len(failed),
            )
            await asyncio.sleep(0.5)
            sending = sorted(failed)
            acked = await self._enqueue_all([batch[i] for i in sending])

    async def _enqueue_all(
        self, records: list[Record]
    ) -> asyncio.Future[list[tuple[Any, list[int], str]]]:
        """Queue `records`; the future resolves, once every batch is settled, to each
        batch's outcome (its metadata, or the error), its records' indices and partition."""
        if self._producer is None:
            await self.start()
        producer = self._producer
        assert producer is not None
        groups: dict[tuple[str, int], list[tuple[int, Record]]] = {}
        for i, record in enumerate(records):
            partition = record.partition
            if partition is None:
                count = self._partitions.get(record.topic) or await self._count(record.topic)
                if record.key is None:  # spread unkeyed records, as Kafka clients do
                    self._spread = partition = (self._spread + 1) % count
                else:
                    partition = partition_for_key(record.key, count)
            groups.setdefault((record.topic, partition), []).append((i, record))
        futures: list[asyncio.Future[Any]] = []
        placed: list[list[int]] = []
        where: list[str] = []
        for (topic, partition), recs in groups.items():
            if topic not in self._tracked:
                await self._track(producer, topic)
            if topic in self._tail and len(recs) > 1:
                await self._enqueue(producer, topic, partition, recs[:-1], futures, placed)
                recs = recs[-1:]
            await self._enqueue(producer, topic, partition, recs, futures, placed)
            where += [f"{topic}[{partition}]"] * (len(futures) - len(where))
        return asyncio.ensure_future(_settled(futures, placed, where))

    async def _track(self, producer: AIOKafkaProducer, topic: str) -> None:
        """Have the client's metadata refreshes ask for `topic` from now on.

        aiokafka only does so for topics it had to look up. One it already knew from its
        first metadata (which lists every topic) drops out of the next refresh made for
        another topic; a batch for it then waits for a leader that never comes until it
        expires (40 s) with NotLeaderForPartitionError. Seen when workers start while
        topics are being created (their own, and Faust's changelogs).
        """
        client = getattr(producer, "client", None)
        if client is not None:
            await client.add_topic(topic)
        self._tracked.add(topic)

    async def _count(self, topic: str) -> int:
        assert self._producer is not None
        partitions = await self._producer.partitions_for(topic)
        self._partitions[topic] = len(partitions)
        return len(partitions)

    @staticmethod
    async def _enqueue(
        producer: AIOKafkaProducer,
        topic: str,
        partition: int,
        records: Sequence[tuple[int, Record]],
        futures: list[asyncio.Future[Any]],
        placed: list[list[int]],
    ) -> None:
        """Queue `records` (index, record) in batches: one future, and the indices of the
        records it holds, per batch."""
        batch = producer.create_batch()
        indices: list[int] = []
        for i, record in records:
            if batch.append(key=record.key, value=record.value, timestamp=None) is None:
                futures.append(await producer.send_batch(batch, topic, partition=partition))
                placed.append(indices)
                batch, indices = producer.create_batch(), []
                if batch.append(key=record.key, value=record.value, timestamp=None) is None:
                    raise ValueError(f"a record for {topic} is larger than a whole batch")
            indices.append(i)
        if indices:
            futures.append(await producer.send_batch(batch, topic, partition=partition))
            placed.append(indices)


#: What `BatchProducer.enqueue`'s future resolves to: each batch's metadata, with the
#: indices of its records in what was enqueued.
Acked = list[tuple[Any, list[int]]]


class Written(NamedTuple):
    """Where one record was written (the metadata `Coalescer` gives each of its callers)."""

    topic: str
    partition: int
    offset: int


class Coalescer:
    """Records several callers enqueue in one turn of the event loop, sent as one
    `BatchProducer.enqueue`: one batch per partition for all of them, not one each.

    The leads stage applies the intake's records for several partitions in a row, and each
    one's outputs spread over every partition of `leads.scored`, `leads.routed` and
    `rep.alerts`: a handful of records per batch otherwise, and aiokafka's cost is mostly
    per batch (building it, its produce request, its acknowledgement). Nothing waits for
    more records to come: what is queued by the time the event loop runs the send goes.

    Each caller's future resolves to what `BatchProducer.enqueue`'s would, one record at a
    time: where each of its records was written, with its index (`placed` and `resume_at`
    read that). Order is kept per partition: a send queues its records only
    after the one before it has queued all of its own, and a caller waits for that when it
    has not (the producer's buffer full: the back-pressure `enqueue` gives).
    """

    def __init__(self, producer: Any) -> None:
        self._producer = producer  # a BatchProducer, or anything with its `enqueue`
        self._records: list[Record] = []
        self._waiters: list[tuple[int, int, asyncio.Future[Acked]]] = []
        self._queuing: asyncio.Future[None] | None = None  # the last send, until queued

    async def enqueue(self, records: Sequence[Record]) -> asyncio.Future[Acked]:
        """Queue `records` with the others of this turn; the future resolves once all of
        them are acknowledged (or raises what their send raised)."""
        previous = self._queuing
        if previous is not None and not previous.done() and not self._records:
            await asyncio.wait({previous})  # the producer's buffer is full: wait, as it would
        future: asyncio.Future[Acked] = asyncio.get_running_loop().create_future()
        if not self._records:
            self._queuing = asyncio.ensure_future(self._send(self._queuing))
        self._waiters.append((len(self._records), len(records), future))
        self._records.extend(records)
        return future

    async def _send(self, previous: asyncio.Future[None] | None) -> None:
        if previous is not None and not previous.done():
            await asyncio.wait({previous})
        records, waiters = self._records, self._waiters
        self._records, self._waiters = [], []
        try:
            acked = await self._producer.enqueue(records)
        except BaseException as exc:
            _settle(waiters, None, exc)
            if not isinstance(exc, Exception):
                raise
            return
        acked.add_done_callback(lambda done: _settle(waiters, done, None))


def _settle(
    waiters: list[tuple[int, int, asyncio.Future[Acked]]],
    acked: asyncio.Future[Acked] | None,
    error: BaseException | None,
) -> None:
    if acked is not None and error is None:
        error = asyncio.CancelledError() if acked.cancelled() else acked.exception()
    if error is not None:
        for _, _, future in waiters:
            if not future.done():
                future.set_exception(error)
        return
    assert acked is not None
    owner = [w for w, (_, count, _) in enumerate(waiters) for _ in range(count)]
    theirs: list[Acked] = [[] for _ in waiters]
    for meta, indices in acked.result():
        # A batch holds records at consecutive offsets from its base offset.
        for n, i in enumerate(indices):
            w = owner[i]
            theirs[w].append(
                (Written(meta.topic, meta.partition, meta.offset + n), [i - waiters[w][0]])
            )
    for (_, _, future), mine in zip(waiters, theirs, strict=True):
        if not future.done():
            future.set_result(mine)


async def _settled(
    futures: list[asyncio.Future[Any]], placed: list[list[int]], where: list[str]
) -> list[tuple[Any, list[int], str]]:
    outcomes = await asyncio.gather(*futures, return_exceptions=True)
    return list(zip(outcomes, placed, where, strict=True))


def resume_at(acked: list[tuple[Any, list[int]]]) -> dict[tuple[str, int], int]:
    """From what `enqueue`'s future resolves to: per (topic, partition), an offset at or
    below the last record's (the base offset of the last batch), where a reader may
    resume without missing any of them."""
    offsets: dict[tuple[str, int], int] = {}
    for meta, _ in acked:
        key = (meta.topic, meta.partition)
        offsets[key] = max(offsets.get(key, -1), meta.offset)
    return offsets


def placed(acked: list[tuple[Any, list[int]]], count: int) -> list[int]:
    """The offset each of `count` records was written at, from what `enqueue`'s future
    resolves to (-1 for a record it does not cover)."""
    offsets = [-1] * count
    for meta, indices in acked:
        # A batch holds records at consecutive offsets from its base offset.
        for n, i in enumerate(indices):
            offsets[i] = meta.offset + n
    return offsets
