"""The latency phase counts what a run wrote to the broker: its own topics only, the
records of its timed window only, their key and value bytes (`loadtest/writes.py`)."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from aiokafka import AIOKafkaProducer

from loadtest.writes import read_window, run_topics, summarize
from streams.kafka_io import create_topics
from tests.integration.conftest import Broker

pytestmark = pytest.mark.integration


async def _write(
    bootstrap: str, records: list[tuple[str, bytes | None, bytes | None, int]]
) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for topic, key, value, at_ms in records:
            await producer.send_and_wait(topic, value, key=key, timestamp_ms=at_ms)
    finally:
        await producer.stop()


def test_a_run_s_topics_are_counted_within_its_window(broker: Broker) -> None:
    run = f"lw{uuid.uuid4().hex[:6]}"
    scored, changelog, other = (
        f"{run}l.leads.scored",
        f"{run}-leads-changelog",
        f"x{run}l.leads.scored",
    )
    since, until = 1_700_000_010_000, 1_700_000_020_000

    async def go() -> tuple[list[str], dict[str, object]]:
        await create_topics(broker.bootstrap, [scored, changelog, other], 3)
        await _write(
            broker.bootstrap,
            [
                (scored, b"lead-1", b"x" * 100, since - 1),  # before the window
                (scored, b"lead-1", b"x" * 100, since),
                (scored, b"lead-2", b"y" * 300, until - 1),
                (scored, b"lead-3", b"z" * 100, until),  # after it
                (changelog, b"k" * 10, b"s" * 90, since + 5),
                (changelog, b"k" * 10, None, since + 6),  # a tombstone: its key only
                (other, b"lead-1", b"x" * 1000, since + 5),  # another run's topic
            ],
        )
        names = await run_topics(broker.bootstrap, [f"{run}l.", f"{run}-"])
        counted = {n: n.removeprefix(f"{run}l.").removeprefix(f"{run}-") for n in names}
        written = await read_window(broker.bootstrap, counted, since_ms=since, until_ms=until)
        return names, summarize(written, events=4, seconds=10)

    names, summary = asyncio.run(go())
    assert names == sorted([scored, changelog])
    assert summary["topics"] == {
        "leads.scored": {"records_per_1k_events": 500.0, "bytes_per_event": 103, "kib_per_s": 0.0},
        "leads-changelog": {
            "records_per_1k_events": 500.0,
            "bytes_per_event": 28,
            "kib_per_s": 0.0,
        },
    }
    assert summary["written_bytes_per_event"] == 130  # (6+100 + 6+300 + 10+90 + 10) / 4
