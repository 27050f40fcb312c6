"""The load test's raw loops (`loadtest/baseline.py`) do the work their ratio assumes: each
reads every record once and alerts on the same 1% of them, whichever style."""

from __future__ import annotations

import asyncio
import sys
import uuid
import zlib
from itertools import islice

import orjson
import pytest

from loadtest.baseline import Style, run_baseline
from loadtest.generator import Generator
from loadtest.harness import preload
from streams.kafka_io import create_topics, read_until
from tests.integration.conftest import Broker

pytestmark = pytest.mark.integration

EVENTS = 3_000


@pytest.mark.parametrize("style", ["tuned", "plain"])
def test_a_baseline_loop_reads_every_event_and_alerts_on_one_percent(
    broker: Broker, style: Style
) -> None:
    run = uuid.uuid4().hex[:8]
    raw, alerts = f"bl{run}.engagement.raw", f"bl{run}.alerts"
    asyncio.run(create_topics(broker.bootstrap, [raw, alerts], 4))
    messages = list(islice(Generator(leads=200, seed=7).messages(now_ms=1_700_000_000_000), EVENTS))
    asyncio.run(preload(broker.bootstrap, raw, messages))
    expected = sorted(
        orjson.loads(m.value)["timestamp"]
        for m in messages
        if zlib.crc32(str(orjson.loads(m.value).get("messageId", "")).encode()) % 100 == 0
    )
    assert expected, "the seeded traffic has events to alert on"

    result = asyncio.run(
        run_baseline(
            bootstrap=broker.bootstrap,
            topic=raw,
            alerts=alerts,
            events=EVENTS,
            fetch_wait_ms=100,
            timeout_s=60,
            style=style,
        )
    )

    assert result["events"] == EVENTS
    assert result["rate"] > 0
    records = asyncio.run(
        read_until(broker.bootstrap, alerts, lambda got: len(got) >= len(expected), timeout_s=30)
    )
    got = sorted(orjson.loads(r.value)["event_at"] for r in records)
    assert len(got) == len(expected)
    assert [t[:19] for t in got] == [t[:19] for t in expected]


@pytest.mark.parametrize("style", ["tuned", "plain"])
def test_a_baseline_loop_says_ready_once_it_owns_partitions_then_alerts_on_what_comes(
    broker: Broker, style: Style
) -> None:
    """The latency phase's contract: the loop, started on an empty topic, prints `ready`
    once it owns partitions; the events sent after that get their alerts."""
    run = uuid.uuid4().hex[:8]
    raw, alerts = f"bl{run}.engagement.raw", f"bl{run}.alerts"
    asyncio.run(create_topics(broker.bootstrap, [raw, alerts], 4))
    messages = list(islice(Generator(leads=200, seed=9).messages(now_ms=1_700_000_000_000), 1_000))
    expected = [
        m for m in messages if zlib.crc32(orjson.loads(m.value)["messageId"].encode()) % 100 == 0
    ]
    assert expected, "the seeded traffic has events to alert on"

    async def scenario() -> list[bytes]:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "loadtest.baseline", "--bootstrap", broker.bootstrap,
            "--topic", raw, "--alerts", alerts, "--events", str(10**12),
            "--timeout", "60", "--style", style, stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        try:
            assert proc.stdout is not None
            said = await asyncio.wait_for(proc.stdout.readline(), 45)
            assert said == b"ready\n"
            await preload(broker.bootstrap, raw, messages)
            records = await read_until(
                broker.bootstrap, alerts, lambda got: len(got) >= len(expected), timeout_s=30
            )
            return [r.key or b"" for r in records]
        finally:
            proc.terminate()
            await proc.wait()

    keys = asyncio.run(scenario())
    assert sorted(keys) == sorted(m.key or b"" for m in expected)
