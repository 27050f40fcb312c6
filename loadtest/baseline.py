"""The raw aiokafka loops every report is compared with (`python -m loadtest.baseline`).

The same work as the pipeline's minimum, hand-written: parse each event with orjson, update
a dict per key, produce an alert for 1% of events, commit. No validation, no scoring.

Two styles of the same loop:

- `tuned` (the ratio the README and the issue count): whole fetches of up to 5,000 records
  (4 MiB per partition), alerts produced in batches, a commit per fetch.
- `plain`: the loop as issue 3 describes it and as one writes it first: `async for` one
  record at a time, aiokafka's default fetch sizes and auto-commit, a `send()` per alert.
  Reported beside the tuned one so the two ratios come from the same run.

Either prints `ready` once its consumer owns partitions (the latency phase starts its
traffic then), and its rate as JSON when it ends.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import zlib
from datetime import datetime
from typing import Literal

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord

from streams.kafka_connection import as_connection
from streams.producer import BatchProducer, Record

__all__ = ["Style", "run_baseline"]

Style = Literal["tuned", "plain"]


def _alert(record: ConsumerRecord[bytes, bytes], state: dict[bytes, list[int]]) -> bytes | None:
    """The loop's work on one record: parse, count per key; an alert for 1% of events."""
    try:
        doc = orjson.loads(record.value)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(doc, dict):
        return None
    entry = state.setdefault(record.key or b"", [0, 0])
    entry[0] += 1
    message_id = str(doc.get("messageId", "")).encode()
    if zlib.crc32(message_id) % 100 != 0:
        return None
    at = datetime.fromisoformat(str(doc["timestamp"]))
    return orjson.dumps({"key": (record.key or b"").decode(), "event_at": at.isoformat()})


async def run_baseline(
    *,
    bootstrap: str,
    topic: str,
    alerts: str,
    events: int,
    fetch_wait_ms: int,
    timeout_s: float,
    style: Style = "tuned",
) -> dict[str, float]:
    """Read `events` records of `topic` (or until `timeout_s`): the rate from the first one
    to the last one's alerts acknowledged (the clients' start and stop not counted)."""
    if style == "plain":
        return await _run_plain(
            bootstrap=bootstrap,
            topic=topic,
            alerts=alerts,
            events=events,
            fetch_wait_ms=fetch_wait_ms,
            timeout_s=timeout_s,
        )
    consumer = AIOKafkaConsumer(
        topic,
        **as_connection(bootstrap).client_kwargs(),
        group_id=f"baseline-{topic}",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=fetch_wait_ms,
        max_partition_fetch_bytes=4 * 1024 * 1024,
        session_timeout_ms=6000,
        heartbeat_interval_ms=1000,
    )
    producer = BatchProducer(kafka=bootstrap)
    await consumer.start()
    await producer.start()
    state: dict[bytes, list[int]] = {}
    seen = 0
    first: float | None = None
    last = time.monotonic()
    deadline = time.monotonic() + timeout_s
    ready = False
    try:
        while seen < events and time.monotonic() < deadline:
            fetched = await consumer.getmany(timeout_ms=200, max_records=5000)
            if not ready and consumer.assignment():
                ready = True
                _say_ready()
            out = []
            for records in fetched.values():
                for record in records:
                    if first is None:
                        first = time.monotonic()
                    seen += 1
                    if (alert := _alert(record, state)) is not None:
                        out.append(Record(alerts, record.key, alert))
            if out:
                await producer.send(out)
            if fetched:
                await consumer.commit()
                last = time.monotonic()
    finally:
        await consumer.stop()
        await producer.stop()
    return _rate(seen, first, last)


async def _run_plain(
    *, bootstrap: str, topic: str, alerts: str, events: int, fetch_wait_ms: int, timeout_s: float
) -> dict[str, float]:
    consumer = AIOKafkaConsumer(
        topic,
        **as_connection(bootstrap).client_kwargs(),
        group_id=f"baseline-plain-{topic}",
        auto_offset_reset="earliest",
        fetch_max_wait_ms=fetch_wait_ms,
    )
    producer = AIOKafkaProducer(**as_connection(bootstrap).client_kwargs())
    await consumer.start()
    await producer.start()
    state: dict[bytes, list[int]] = {}
    seen = 0
    first: float | None = None
    # `async for` joins the group inside its first iteration: say `ready` from beside it.
    announcer = asyncio.create_task(_ready_when_assigned(consumer))
    try:
        async with asyncio.timeout(timeout_s):
            async for record in consumer:
                if first is None:
                    first = time.monotonic()
                seen += 1
                if (alert := _alert(record, state)) is not None:
                    await producer.send(alerts, alert, key=record.key)
                if seen >= events:
                    break
        await producer.flush()
    except TimeoutError:
        pass  # reported as far as it got
    finally:
        last = time.monotonic()
        announcer.cancel()
        await consumer.stop()
        await producer.stop()
    return _rate(seen, first, last)


async def _ready_when_assigned(consumer: AIOKafkaConsumer) -> None:
    while not consumer.assignment():
        await asyncio.sleep(0.05)
    _say_ready()


def _say_ready() -> None:
    sys.stdout.write("ready\n")
    sys.stdout.flush()


def _rate(seen: int, first: float | None, last: float) -> dict[str, float]:
    elapsed = last - first if first is not None else 0.0
    return {"events": seen, "seconds": elapsed, "rate": seen / elapsed if elapsed else 0.0}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--alerts", required=True)
    parser.add_argument("--events", type=int, required=True)
    parser.add_argument("--fetch-wait-ms", type=int, default=100)
    parser.add_argument("--timeout", type=float, default=600)
    parser.add_argument("--style", choices=("tuned", "plain"), default="tuned")
    args = parser.parse_args()
    result = asyncio.run(
        run_baseline(
            bootstrap=args.bootstrap,
            topic=args.topic,
            alerts=args.alerts,
            events=args.events,
            fetch_wait_ms=args.fetch_wait_ms,
            timeout_s=args.timeout,
            style=args.style,
        )
    )
    sys.stdout.write(orjson.dumps(result).decode() + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
