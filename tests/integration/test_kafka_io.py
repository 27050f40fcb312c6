"""streams.kafka_io's readers against the real broker."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest
from aiokafka import TopicPartition

from streams.kafka_io import create_topics, open_partition, produce
from tests.integration.conftest import Broker

pytestmark = pytest.mark.integration

#: Far longer than answering an end offset takes: a reader that waits out a fetch shows.
_LONG_FETCH_WAIT_MS = 2000


@pytest.mark.parametrize("records", [0, 3], ids=["empty", "three-records"])
def test_open_partition_answers_the_end_at_once_and_reads_up_to_it(
    broker: Broker, records: int
) -> None:
    # Every worker start-up opens `lead.model` and `crm.accounts` this way. Asked for the
    # end once assigned, the consumer's first fetch was already in flight, and the broker
    # answers a connection's requests in turn: the end came after the fetch wait.
    topic = f"io-{uuid.uuid4().hex[:8]}"

    async def run() -> tuple[float, int, list[bytes]]:
        await create_topics(broker.bootstrap, [topic], 1)
        await produce(broker.bootstrap, topic, [(b"k", b"v%d" % n) for n in range(records)])
        started = time.monotonic()
        consumer, end = await open_partition(
            broker.bootstrap, topic, fetch_wait_ms=_LONG_FETCH_WAIT_MS
        )
        took = time.monotonic() - started
        tp = TopicPartition(topic, 0)
        read: list[bytes] = []
        try:
            while await consumer.position(tp) < end:
                fetched = await consumer.getmany(tp, timeout_ms=1000)
                read += [r.value for r in fetched.get(tp, []) if r.value is not None]
        finally:
            await consumer.stop()
        return took, end, read

    took, end, read = asyncio.run(run())
    assert took < _LONG_FETCH_WAIT_MS / 1000 / 2, f"open_partition took {took:.2f} s"
    assert (end > 0) == (records > 0)
    assert read == [b"v%d" % n for n in range(records)]
