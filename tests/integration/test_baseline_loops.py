"""The load test's raw loops (`loadtest/baseline.py`) do the work their ratio assumes: each
reads every record once and alerts on the same 1% of them, whichever style."""

from __future__ import annotations

import asyncio
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
