"""Small aiokafka helpers for the CLI and tests: producing, creating and reading topics.

Each takes the `KafkaConnection` the entry point built (SASL, TLS); a bare 'host:port' string
is PLAINTEXT, for tests and the embedded broker.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import OffsetOutOfRangeError, TopicAlreadyExistsError

from streams.kafka_connection import KafkaConnection, as_connection, bootstrap_servers
from streams.producer import BatchProducer, Record

__all__ = [
    "HOLDS_WAIT_MS",
    "TopicProbe",
    "bootstrap_servers",
    "create_topics",
    "open_partition",
    "produce",
    "read_to_end",
    "read_topic",
    "read_until",
    "tail",
]

#: How long `TopicProbe.holds` waits for a partition's record before it says "not held".
HOLDS_WAIT_MS = 2000


async def create_topics(
    kafka: KafkaConnection | str,
    names: Iterable[str],
    partitions: int,
    replication: int = 1,
    *,
    configs: Mapping[str, str] | None = None,
) -> list[str]:
    """Create the topics that do not exist yet, with `configs`; return the names created.

    The configs of topics that already exist are left alone (on Kafka, `kafka-configs.sh`
    changes them; some brokers, Tansu among them, accept configs but do not apply them).
    """
    admin = AIOKafkaAdminClient(**as_connection(kafka).client_kwargs())
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        new = [
            NewTopic(n, partitions, replication, topic_configs=dict(configs or {}))
            for n in names
            if n not in existing
        ]
        if new:
            # Another process may create them between the listing and this call.
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(new)
        return [t.name for t in new]
    finally:
        await admin.close()


async def produce(
    kafka: KafkaConnection | str, topic: str, records: Iterable[tuple[bytes | None, bytes | None]]
) -> int:
    """Send (key, value) records and wait until every one is acknowledged."""
    producer = BatchProducer(kafka=kafka)
    try:
        return await producer.send(Record(topic, key, value) for key, value in records)
    finally:
        await producer.stop()


async def _consumer(
    kafka: KafkaConnection | str, topic: str | Sequence[str], fetch_wait_ms: int
) -> tuple[AIOKafkaConsumer, dict[TopicPartition, int]]:
    """A consumer with no group on every partition of `topic` (or of each of several) from
    its beginning, and each partition's end offset now."""
    consumer = AIOKafkaConsumer(
        **as_connection(kafka).client_kwargs(),
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=fetch_wait_ms,
    )
    await consumer.start()
    deadline = time.monotonic() + 30
    tps: list[TopicPartition] = []
    for name in [topic] if isinstance(topic, str) else topic:
        while not (partitions := consumer.partitions_for_topic(name)):
            if time.monotonic() > deadline:
                await consumer.stop()
                raise TimeoutError(f"topic {name} did not appear")
            await consumer._client.force_metadata_update()
            await asyncio.sleep(0.1)
        tps += (TopicPartition(name, p) for p in sorted(partitions))
    try:
        ends = await consumer.end_offsets(tps)  # before a fetch is in flight (`open_partition`)
    except BaseException:
        await consumer.stop()
        raise
    consumer.assign(tps)
    await consumer.seek_to_beginning(*tps)
    return consumer, ends


async def read_until(
    kafka: KafkaConnection | str,
    topic: str,
    done: Callable[[list[ConsumerRecord]], bool],
    *,
    timeout_s: float,
    fetch_wait_ms: int = 100,
) -> list[ConsumerRecord]:
    """Read a topic from the beginning until `done(records)` or the deadline; return all read."""
    consumer, _ = await _consumer(kafka, topic, fetch_wait_ms)
    records: list[ConsumerRecord] = []
    try:
        deadline = time.monotonic() + timeout_s
        while not done(records) and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=200)
            for recs in batch.values():
                records.extend(recs)
        return records
    finally:
        await consumer.stop()


async def tail(
    kafka: KafkaConnection | str,
    topic: str,
    on_record: Callable[[ConsumerRecord], None],
    *,
    fetch_wait_ms: int = 100,
) -> None:
    """Call `on_record` for every record of `topic`, from the beginning, until cancelled."""
    consumer, _ = await _consumer(kafka, topic, fetch_wait_ms)
    try:
        while True:
            batch = await consumer.getmany(timeout_ms=500)
            for recs in batch.values():
                for record in recs:
                    on_record(record)
    finally:
        await consumer.stop()


async def read_to_end(
    kafka: KafkaConnection | str,
    topic: str | Sequence[str],
    *,
    since_ms: int = 0,
    timeout_s: float = 120,
    progress: Callable[[int], None] | None = None,
) -> list[ConsumerRecord]:
    """Every record of `topic` (or of each of several) from the beginning to its end as of
    now, with a record timestamp at or after `since_ms`; `progress(records read)` is called
    as it goes."""
    consumer, end = await _consumer(kafka, topic, fetch_wait_ms=100)
    try:
        left = {tp for tp, offset in end.items() if offset > 0}
        records: list[ConsumerRecord] = []
        read = 0
        deadline = time.monotonic() + timeout_s
        while left and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=200, max_records=10_000)
            for recs in batch.values():
                read += len(recs)
                records.extend(r for r in recs if r.timestamp >= since_ms)
            for tp in list(left):
                if await consumer.position(tp) >= end[tp]:
                    left.discard(tp)
            if progress is not None:
                progress(read)
        if left:
            names = ", ".join(sorted({tp.topic for tp in left}))
            raise TimeoutError(f"{names}: not read to its end within {timeout_s:g} s")
        return records
    finally:
        await consumer.stop()


def read_topic(
    kafka: KafkaConnection | str,
    topic: str,
    *,
    since_ms: int = 0,
    until_ms: int | None = None,
    progress: bool = False,
) -> list[ConsumerRecord]:
    """`read_to_end` for the report commands: records with a value and a timestamp in
    [since_ms, until_ms), with a progress line on stderr when `progress`."""
    started = time.monotonic()

    def tick(n: int) -> None:
        if progress:
            rate = n / max(time.monotonic() - started, 1e-6)
            sys.stderr.write(f"\r  reading {topic}: {n:,} records ({rate:,.0f}/s)")
            sys.stderr.flush()

    records = asyncio.run(read_to_end(kafka, topic, since_ms=since_ms, progress=tick))
    if progress:
        sys.stderr.write("\n")
    return [r for r in records if r.value and (until_ms is None or r.timestamp < until_ms)]


async def open_partition(
    kafka: KafkaConnection | str, topic: str, *, partition: int = 0, fetch_wait_ms: int
) -> tuple[AIOKafkaConsumer, int]:
    """A consumer with no group, on one partition of `topic` from its beginning, and the
    partition's end offset now (what a reader must reach to have caught up). Waits for a
    topic created moments ago to show in the metadata."""
    tp = TopicPartition(topic, partition)
    consumer = AIOKafkaConsumer(
        **as_connection(kafka).client_kwargs(),
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=fetch_wait_ms,
    )
    try:
        await consumer.start()
        while consumer.partitions_for_topic(topic) is None:
            await consumer._client.force_metadata_update()
            await asyncio.sleep(0.1)
        # The end first: once assigned, the consumer's first fetch is on its way, and the
        # broker answers one request of a connection at a time, so the end offset would
        # wait out that fetch's wait (`fetch_wait_ms` of every worker's start-up, twice).
        end = (await consumer.end_offsets([tp]))[tp]
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
    except BaseException:
        await consumer.stop()
        raise
    return consumer, end


class TopicProbe:
    """Asks the broker, outside any consumer group, which topics it has, where one ends
    (the worker's broker check, streams/broker_watch.py) and where a group starts reading
    a partition (streams/offset_guard.py)."""

    def __init__(self, kafka: KafkaConnection | str) -> None:
        self._kafka = kafka
        self._consumer: AIOKafkaConsumer | None = None
        self._reader: AIOKafkaConsumer | None = None  # `holds`: assigns and seeks
        self._admin: AIOKafkaAdminClient | None = None
        self._lock = asyncio.Lock()

    async def ends(self, topic: str) -> tuple[set[str], dict[int, int]]:
        """(the broker's topic names, partition -> end offset of `topic`)."""
        consumer = await self._connected()
        names = set(await consumer.topics())
        if topic not in names:
            return names, {}
        partitions = consumer.partitions_for_topic(topic) or set()
        ends = await consumer.end_offsets([TopicPartition(topic, p) for p in partitions])
        return names, {tp.partition: offset for tp, offset in ends.items()}

    async def start_offset(self, group: str, topic: str, partition: int) -> int:
        """Where `group` goes on reading a partition: its committed offset, or the first
        offset the partition still has when nothing is committed."""
        tp = TopicPartition(topic, partition)
        async with self._lock:  # the agents and the broker check share one of each client
            if self._admin is None:
                admin = AIOKafkaAdminClient(**as_connection(self._kafka).client_kwargs())
                try:
                    await admin.start()
                except BaseException:
                    await admin.close()
                    raise
                self._admin = admin
        committed = await self._admin.list_consumer_group_offsets(group, partitions=[tp])
        found = committed.get(tp)
        if found is not None and found.offset >= 0:
            return int(found.offset)
        consumer = await self._connected()
        return int((await consumer.beginning_offsets([tp]))[tp])

    async def holds(self, topic: str, offsets: Mapping[int, int]) -> dict[int, bool]:
        """Whether the broker still serves the record at each partition's offset.

        Asks by fetching it, not by the partition's end: Tansu reports a partition's end as
        the first offset of its last batch + 1 when that batch holds several records. A
        partition whose fetch brings nothing within HOLDS_WAIT_MS does not hold it, so the
        call may take that long for each partition asked: a caller's timeout must allow it.
        """
        reader = await self._reader_connected()
        held: dict[int, bool] = {}
        async with self._lock:
            for partition, offset in offsets.items():
                tp = TopicPartition(topic, partition)
                reader.assign([tp])
                reader.seek(tp, offset)
                try:
                    fetched = await reader.getmany(tp, timeout_ms=HOLDS_WAIT_MS, max_records=1)
                except OffsetOutOfRangeError:
                    held[partition] = False
                    continue
                held[partition] = any(r.offset == offset for r in fetched.get(tp, []))
        return held

    async def _reader_connected(self) -> AIOKafkaConsumer:
        async with self._lock:
            if self._reader is None:
                self._reader = await self._started(
                    auto_offset_reset="none",  # an offset the broker lacks is an error
                    fetch_max_wait_ms=500,
                )
            return self._reader

    async def _connected(self) -> AIOKafkaConsumer:
        async with self._lock:
            if self._consumer is None:
                self._consumer = await self._started()
            return self._consumer

    async def _started(self, **options: Any) -> AIOKafkaConsumer:
        consumer = AIOKafkaConsumer(
            **as_connection(self._kafka).client_kwargs(), enable_auto_commit=False, **options
        )
        try:
            await consumer.start()
        except BaseException:
            await consumer.stop()
            raise
        return consumer

    async def close(self) -> None:
        for consumer in (self._consumer, self._reader):
            if consumer is not None:
                with contextlib.suppress(Exception):
                    await consumer.stop()
        self._consumer = self._reader = None
        admin, self._admin = self._admin, None
        if admin is not None:
            with contextlib.suppress(Exception):
                await admin.close()
