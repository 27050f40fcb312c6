"""BatchProducer and Coalescer: how records become batches, with a fake aiokafka producer
passed in."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest

from streams.producer import BatchProducer, Coalescer, Record, partition_for_key, placed, resume_at


class FakeBatch:
    def __init__(self, max_records: int) -> None:
        self.records: list[tuple[bytes | None, bytes]] = []
        self._max = max_records

    def append(self, *, key: bytes | None, value: bytes, timestamp: Any) -> object | None:
        if len(self.records) >= self._max:
            return None  # full, as aiokafka's BatchBuilder says
        self.records.append((key, value))
        return object()

    def record_count(self) -> int:
        return len(self.records)


class FakeAiokafka:
    def __init__(self, *, partitions: int = 4, max_records: int = 1000) -> None:
        self.sent: list[tuple[str, int, list[tuple[bytes | None, bytes]]]] = []
        self._partitions = partitions
        self._max = max_records

    def create_batch(self) -> FakeBatch:
        return FakeBatch(self._max)

    async def send_batch(self, batch: FakeBatch, topic: str, *, partition: int) -> Any:
        self.sent.append((topic, partition, batch.records))
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done

    async def partitions_for(self, topic: str) -> set[int]:
        return set(range(self._partitions))


async def test_keyed_records_go_to_the_kafka_default_partition_and_explicit_ones_stay() -> None:
    fake = FakeAiokafka(partitions=4)
    producer = BatchProducer(kafka="unused", client=fake)
    sent = await producer.send(
        [Record("out", b"lead-1", b"a"), Record("out", b"lead-2", b"b"), Record("x", b"k", b"c", 3)]
    )
    assert sent == 3
    where = {(t, v): p for t, p, recs in fake.sent for _, v in recs}
    assert where[("out", b"a")] == partition_for_key(b"lead-1", 4)
    assert where[("out", b"b")] == partition_for_key(b"lead-2", 4)
    assert where[("x", b"c")] == 3


async def test_records_of_one_partition_share_batches_in_order_and_split_when_full() -> None:
    fake = FakeAiokafka(max_records=2)
    producer = BatchProducer(kafka="unused", client=fake)
    await producer.send(Record("t", None, bytes([i]), partition=0) for i in range(5))
    assert [[v for _, v in recs] for _, _, recs in fake.sent] == [
        [b"\x00", b"\x01"],
        [b"\x02", b"\x03"],
        [b"\x04"],
    ]


async def test_tail_topics_never_end_a_partition_in_a_multi_record_batch() -> None:
    """The Tansu ListOffsets gap: recovery reads a partition's end wrong after such a batch."""
    fake = FakeAiokafka()
    producer = BatchProducer(kafka="unused", client=fake, single_record_tail=frozenset({"cl"}))
    await producer.send(Record("cl", b"k%d" % i, b"v", partition=1) for i in range(4))
    await producer.send(Record("out", b"k%d" % i, b"v", partition=1) for i in range(4))
    sizes = [(topic, len(recs)) for topic, _, recs in fake.sent]
    assert sizes == [("cl", 3), ("cl", 1), ("out", 4)]


async def test_unkeyed_records_are_spread_over_partitions_not_piled_on_one() -> None:
    fake = FakeAiokafka(partitions=4)
    producer = BatchProducer(kafka="unused", client=fake)
    await producer.send(Record("t", None, b"v") for _ in range(8))
    assert sorted(p for _, p, _ in fake.sent) == [0, 1, 2, 3]


class FlakyAiokafka(FakeAiokafka):
    """The broker answers the first `failures` batches with an error."""

    def __init__(self, error: Exception, failures: int) -> None:
        super().__init__()
        self._error, self._failures = error, failures

    async def send_batch(self, batch: FakeBatch, topic: str, *, partition: int) -> Any:
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self._failures > 0:
            self._failures -= 1
            done.set_exception(self._error)
        else:
            self.sent.append((topic, partition, batch.records))
            done.set_result(None)
        return done


async def test_a_retriable_broker_error_sends_the_records_again() -> None:
    from aiokafka.errors import NotLeaderForPartitionError

    fake = FlakyAiokafka(NotLeaderForPartitionError(), failures=2)
    producer = BatchProducer(kafka="unused", client=fake)
    assert await producer.send([Record("out", None, b"a", 0)]) == 1
    assert fake.sent == [("out", 0, [(None, b"a")])]


async def test_only_the_batches_that_failed_are_sent_again() -> None:
    from aiokafka.errors import NotLeaderForPartitionError

    fake = FlakyAiokafka(NotLeaderForPartitionError(), failures=1)  # the first batch
    producer = BatchProducer(kafka="unused", client=fake)
    sent = await producer.send(
        [Record("out", None, b"a", 0), Record("out", None, b"b", 1), Record("out", None, b"c", 0)]
    )
    assert sent == 3
    # Partition 1's batch was written the first time: not sent twice.
    assert sorted(fake.sent) == [
        ("out", 0, [(None, b"a"), (None, b"c")]),
        ("out", 1, [(None, b"b")]),
    ]


async def test_the_retry_warning_names_the_partitions_the_broker_refused(caplog: Any) -> None:
    from aiokafka.errors import NotLeaderForPartitionError

    fake = FlakyAiokafka(NotLeaderForPartitionError(), failures=1)
    producer = BatchProducer(kafka="unused", client=fake)
    with caplog.at_level("WARNING", logger="streams.producer"):
        await producer.send([Record("out", None, b"a", 3)])
    assert "produce to out[3]: NotLeaderForPartitionError" in caplog.text


class TrackingClient:
    """aiokafka's client, as far as which topics its metadata refreshes ask for."""

    def __init__(self) -> None:
        self.topics: list[str] = []

    async def add_topic(self, topic: str) -> bool:
        self.topics.append(topic)
        return True


async def test_every_topic_written_is_kept_in_the_client_s_metadata_refreshes() -> None:
    """Else a topic aiokafka knew from its first metadata drops out of a later refresh, and
    its batches wait 40 s for a leader."""
    fake = FakeAiokafka(partitions=4)
    fake.client = TrackingClient()  # type: ignore[attr-defined]
    producer = BatchProducer(kafka="unused", client=fake)
    await producer.send([Record("a", b"k", b"v"), Record("b", None, b"v", partition=2)])
    await producer.send([Record("a", b"k2", b"v"), Record("c", b"k", b"v")])
    assert fake.client.topics == ["a", "b", "c"]  # type: ignore[attr-defined]


async def test_a_non_retriable_error_is_raised_at_once() -> None:
    import pytest
    from aiokafka.errors import RecordTooLargeError

    fake = FlakyAiokafka(RecordTooLargeError(), failures=1)
    producer = BatchProducer(kafka="unused", client=fake)
    with pytest.raises(RecordTooLargeError):
        await producer.send([Record("out", None, b"a", 0)])
    assert fake.sent == []


class FakeLog(FakeAiokafka):
    """Keeps each partition's end offset, so a batch's metadata carries its base offset."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.ends: dict[tuple[str, int], int] = {}

    async def send_batch(self, batch: FakeBatch, topic: str, *, partition: int) -> Any:
        self.sent.append((topic, partition, batch.records))
        base = self.ends.get((topic, partition), 0)
        self.ends[(topic, partition)] = base + batch.record_count()
        done: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        done.set_result(SimpleNamespace(topic=topic, partition=partition, offset=base))
        return done


async def test_send_placed_tells_where_each_record_was_written_across_batches() -> None:
    fake = FakeLog(partitions=2, max_records=2)
    fake.ends[("pe", 1)] = 40  # another writer was there first
    producer = BatchProducer(kafka="unused", client=fake)
    records = [
        Record("pe", b"p1", b"a", 1),
        Record("dlq", None, b"x"),  # unkeyed: spread, and still placed
        Record("pe", b"p0", b"b", 0),
        Record("pe", b"p1", b"c", 1),
        Record("pe", b"p1", b"d", 1),  # a third record: a second batch (2 per batch)
    ]
    offsets = await producer.send_placed(records)
    assert offsets[0] == 40 and offsets[3] == 41 and offsets[4] == 42
    assert offsets[2] == 0
    assert offsets[1] == 0
    # What the fake log holds at each offset is the record placed there.
    log: dict[tuple[str, int], list[bytes]] = {("pe", 1): [b"?"] * 40}
    for topic, partition, recs in fake.sent:
        log.setdefault((topic, partition), []).extend(value for _, value in recs)
    for record, offset in zip(records, offsets, strict=True):
        partition = next(p for t, p, recs in fake.sent for _, v in recs if v == record.value)
        assert log[(record.topic, partition)][offset] == record.value


async def test_records_enqueued_in_one_turn_go_out_in_one_batch_per_partition() -> None:
    """The leads stage applies several records in a row: their outputs share batches."""
    fake = FakeLog(partitions=2)
    fake.ends[("scored", 0)] = 10
    coalescer = Coalescer(BatchProducer(kafka="unused", client=fake))
    first = [Record("scored", b"a", b"a1", 0), Record("alerts", b"r", b"r1", 1)]
    second = [Record("scored", b"b", b"b1", 0), Record("scored", b"c", b"c1", 1)]
    third = [Record("scored", b"d", b"d1", 0)]
    futures = [await coalescer.enqueue(records) for records in (first, second, third)]
    acked = [await future for future in futures]
    # One batch per partition for all three callers, in the order they were enqueued.
    assert sorted((t, p, [v for _, v in recs]) for t, p, recs in fake.sent) == [
        ("alerts", 1, [b"r1"]),
        ("scored", 0, [b"a1", b"b1", b"d1"]),
        ("scored", 1, [b"c1"]),
    ]
    # Each caller learns where its own records were written, and only its own.
    assert placed(acked[0], 2) == [10, 0]
    assert placed(acked[1], 2) == [11, 0]
    assert placed(acked[2], 1) == [12]
    assert resume_at(acked[1]) == {("scored", 0): 11, ("scored", 1): 0}
    assert resume_at(acked[2]) == {("scored", 0): 12}


async def test_records_enqueued_in_later_turns_are_sent_on_their_own_in_order() -> None:
    fake = FakeLog(partitions=1)
    coalescer = Coalescer(BatchProducer(kafka="unused", client=fake))
    first = await coalescer.enqueue([Record("t", None, b"1", 0)])
    await first
    second = await coalescer.enqueue([Record("t", None, b"2", 0)])
    assert placed(await second, 1) == [1]
    assert [[v for _, v in recs] for _, _, recs in fake.sent] == [[b"1"], [b"2"]]


class Blocking:
    """A BatchProducer stand-in whose `enqueue` waits for `release`, as aiokafka's does
    when its buffer is full; the acknowledgements follow at once."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.calls: list[list[bytes | None]] = []

    async def enqueue(self, records: list[Record]) -> asyncio.Future[Any]:
        self.calls.append([r.value for r in records])
        await self.release.wait()
        done: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        done.set_result(
            [(SimpleNamespace(topic="t", partition=0, offset=0), list(range(len(records))))]
        )
        return done


async def test_a_caller_waits_while_the_send_before_is_held_up_and_order_is_kept() -> None:
    producer = Blocking()
    coalescer = Coalescer(producer)
    first = await coalescer.enqueue([Record("t", None, b"1", 0)])
    await asyncio.sleep(0)  # the send starts, and waits for room in the producer's buffer
    later = asyncio.ensure_future(coalescer.enqueue([Record("t", None, b"2", 0)]))
    await asyncio.sleep(0.01)
    assert not later.done()  # back-pressure: it waits as BatchProducer.enqueue would
    assert producer.calls == [[b"1"]]
    producer.release.set()
    second = await later
    assert placed(await first, 1) == [0] and placed(await second, 1) == [0]
    assert producer.calls == [[b"1"], [b"2"]]


class Failing:
    def __init__(self, *, when: str) -> None:
        self.when = when

    async def enqueue(self, records: list[Record]) -> asyncio.Future[Any]:
        if self.when == "queueing":
            raise RuntimeError("broker refused")
        failed: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        failed.set_exception(RuntimeError("not acknowledged"))
        return failed


@pytest.mark.parametrize("when", ["queueing", "acknowledging"])
async def test_every_caller_of_a_send_that_fails_gets_its_error(when: str) -> None:
    coalescer = Coalescer(Failing(when=when))
    futures = [await coalescer.enqueue([Record("t", None, b"x", 0)]) for _ in range(3)]
    for future in futures:
        with pytest.raises(RuntimeError):
            await future
