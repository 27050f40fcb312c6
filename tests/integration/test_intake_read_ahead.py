"""The intake's read-ahead bound on the broker: before each fetch it waits on the ends it
wrote to person-events; when a wait gives up, it waits only on what it writes from then on
(an end the leads stage cannot reach, of a topic recreated meanwhile, would otherwise hold
every fetch for good)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Mapping
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
    forwarded: list[int] = []

    async def caught_up(ends: Mapping[int, int]) -> bool:
        """A stage that never catches up: gives up at once whenever there is a wait."""
        asked.append(dict(ends))
        await asyncio.sleep(0.01)
        return not ends

    async def handover(records: list[tuple[int, int, bytes, PersonEventBatch]]) -> None:
        forwarded.extend(partition for partition, *_ in records)

    async def until(done: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + 30
        while not done():
            assert time.monotonic() < deadline, f"timed out waiting for {what}: {asked}"
            await asyncio.sleep(0.05)

    async def run() -> list[dict[int, int]]:
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
            # One event at a time, each forwarded before the next is sent: the intake waits
            # before each forward on the ends it wrote (and did not give up on) before.
            for n, person in enumerate((first, second, first), start=1):
                message = page(f"ra-{n}", "/pricing", anon=person)
                await produce(
                    broker.bootstrap, topics.raw, [(person.encode(), orjson.dumps(message))]
                )
                await until(lambda n=n: len(forwarded) >= n, f"event {n} forwarded")
        finally:
            await intake.stop()
            await producer.stop()
        return [ends for ends in asked if ends]

    p1, p2 = person_partition(first, PARTITIONS), person_partition(second, PARTITIONS)
    # Before the 2nd forward it waits on the 1st's partition, gives up, and forgets it: before
    # the 3rd it waits on the 2nd's only.
    assert [set(ends) for ends in asyncio.run(run())] == [{p1}, {p2}]
