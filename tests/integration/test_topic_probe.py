"""TopicProbe.holds: whether the broker still serves a record, asked by fetching it."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from streams.kafka_io import TopicProbe, create_topics
from streams.producer import BatchProducer, Record
from tests.integration.conftest import Broker

pytestmark = pytest.mark.integration


def test_holds_is_true_for_a_record_inside_a_batch_and_false_past_the_end(broker: Broker) -> None:
    topic = f"probe-{uuid.uuid4().hex[:8]}"

    async def ask() -> tuple[dict[int, bool], dict[int, bool]]:
        await create_topics(broker.bootstrap, [topic], 1)
        producer = BatchProducer(kafka=broker.bootstrap)
        try:
            # One batch of three: on Tansu its reported end is then 1, not 3.
            await producer.send_placed([Record(topic, b"k", b"v", partition=0)] * 3)
        finally:
            await producer.stop()
        probe = TopicProbe(broker.bootstrap)
        try:
            return await probe.holds(topic, {0: 2}), await probe.holds(topic, {0: 7})
        finally:
            await probe.close()

    inside, past = asyncio.run(ask())
    assert inside == {0: True}
    assert past == {0: False}
