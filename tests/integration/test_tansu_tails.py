"""The worker's producer against the broker's view of where a partition ends."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from streams.app import create_app
from streams.kafka_io import TopicProbe, create_topics
from streams.lead_model import load_model
from streams.producer import Record
from streams.settings import Settings
from streams.topics import Topics
from tests.integration.conftest import MODEL, PARTITIONS, Broker

pytestmark = pytest.mark.integration


def test_a_forward_of_many_records_leaves_person_events_end_where_it_is(
    broker: Broker, tmp_path: Path
) -> None:
    """A forward puts several micro-batch records in one producer batch. Tansu then
    reports the partition's end as the batch's first offset + 1, and the worker's broker
    check takes the records it read past that for records the broker lost, and exits."""
    topics = Topics(prefix=f"e{uuid.uuid4().hex[:8]}.")
    settings = Settings(
        broker=broker.url,
        broker_flavor=broker.flavor,  # type: ignore[arg-type]
        topic_prefix=topics.prefix,
        partitions=PARTITIONS,
        data_dir=tmp_path,
    )
    app = create_app(
        start_offset=False,
        settings=settings,
        model=load_model(MODEL),
        registry=CollectorRegistry(),
    )
    producer = app.lifecycle.producer  # type: ignore[attr-defined]

    async def forward_then_ask() -> dict[int, int]:
        await create_topics(broker.bootstrap, [topics.person_events], PARTITIONS)
        await producer.start()
        try:
            value = b"x" * 30_000  # a micro-batch of ~150 events
            offsets = await producer.send_placed(
                [Record(topics.person_events, b"p0", value, partition=0) for _ in range(6)]
            )
            assert offsets == [0, 1, 2, 3, 4, 5]
        finally:
            await producer.stop()
        probe = TopicProbe(broker.bootstrap)
        try:
            _, ends = await probe.ends(topics.person_events)
        finally:
            await probe.close()
        return ends

    ends = asyncio.run(forward_then_ask())
    assert ends[0] == 6
