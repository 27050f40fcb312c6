"""The intake's read-ahead bound on the broker: before each fetch it waits on the ends it
wrote to person-events; when a wait gives up, it waits only on what it writes from then on
(an end the leads stage cannot reach, of a topic recreated meanwhile, would otherwise hold
every fetch for good)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest
from prometheus_client import CollectorRegistry

from schemas.internal import PersonEventBatch
from streams.intake_service import IntakeService
from streams.kafka_connection import kafka_connection
from streams.kafka_io import create_topics, produce
from streams.metrics import Metrics
from streams.producer import BatchProducer
from streams.settings import Settings
from streams.topics import Topics, person_partition
from tests.integration.conftest import PARTITIONS, Broker
from tests.integration.segment import page

pytestmark = pytest.mark.integration


def test_after_a_wait_that_gave_up_the_intake_waits_only_on_what_it_writes_next(
    broker: Broker, tmp_path: Path
) -> None:
    first, second = (
        "anon-ra0",
        next(
            a
            for a in (f"anon-ra{n}" for n in range(1, 100))
            if person_partition(a, PARTITIONS) != person_partition("anon-ra0", PARTITIONS)
        ),
    )
    topics = Topics(prefix=f"ra{uuid.uuid4().hex[:8]}.")
    settings = Settings(
        broker=broker.url,
        broker_flavor=broker.flavor,  # type: ignore[arg-type]
        app_id=f"ra-{uuid.uuid4().hex[:8]}",
        topic_prefix=topics.prefix,
        partitions=PARTITIONS,
        data_dir=tmp_path,
        intake_fetch_wait_ms=100,
    )
    asked: list[dict[int, int]] = []

    async def caught_up(ends: Mapping[int, int]) -> bool:
        """A stage that never catches up: gives up at once whenever there is a wait."""
        asked.append(dict(ends))
        await asyncio.sleep(0.01)
        return not ends

    async def handover(records: list[tuple[int, int, bytes, PersonEventBatch]]) -> None:
        return None

    async def until(done: object, what: str) -> None:
        deadline = time.monotonic() + 30
        while not done():  # type: ignore[operator]
            assert time.monotonic() < deadline, f"timed out waiting for {what}: {asked[-5:]}"
            await asyncio.sleep(0.05)

    async def run() -> None:
        await create_topics(broker.bootstrap, topics.all(), PARTITIONS)
        producer = BatchProducer(kafka=broker.bootstrap)
        intake = IntakeService(
            settings=settings,
            kafka=kafka_connection(settings),
            producer=producer,
            metrics=Metrics.create(CollectorRegistry()),
            clock=lambda: datetime.now(UTC),
            handover=handover,
            caught_up=caught_up,
        )
        await intake.start()
        try:
            p1 = person_partition(first, PARTITIONS)
            p2 = person_partition(second, PARTITIONS)
            message = page("ra-1", "/pricing", anon=first)
            await produce(broker.bootstrap, topics.raw, [(first.encode(), orjson.dumps(message))])
            await until(lambda: any(p1 in ends for ends in asked), "a wait on the first write")
            message = page("ra-2", "/pricing", anon=second)
            await produce(broker.bootstrap, topics.raw, [(second.encode(), orjson.dumps(message))])
            await until(lambda: any(p2 in ends for ends in asked), "a wait on the second write")
        finally:
            await intake.stop()
            await producer.stop()
        waits = [ends for ends in asked if ends]
        assert [set(ends) for ends in waits] == [{p1}, {p2}], asked

    asyncio.run(run())
