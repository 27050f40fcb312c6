"""The raw aiokafka loop every report is compared with (`python -m loadtest.baseline`).

The same work as the pipeline's minimum, hand-written: parse each event with orjson, update
a dict per key, produce an alert for 1% of events, commit. No validation, no scoring.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import zlib
from datetime import datetime

import orjson
from aiokafka import AIOKafkaConsumer

from streams.kafka_connection import as_connection
from streams.producer import BatchProducer, Record

__all__ = ["run_baseline"]


async def run_baseline(
    *, bootstrap: str, topic: str, alerts: str, events: int, fetch_wait_ms: int, timeout_s: float
) -> dict[str, float]:
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
    deadline = time.monotonic() + timeout_s
    ready = False
    try:
        while seen < events and time.monotonic() < deadline:
            fetched = await consumer.getmany(timeout_ms=200, max_records=5000)
            if not ready and consumer.assignment():
                ready = True
                sys.stdout.write("ready\n")
                sys.stdout.flush()
            out = []
            for records in fetched.values():
                for record in records:
                    if first is None:
                        first = time.monotonic()
                    seen += 1
                    try:
                        doc = orjson.loads(record.value)
                    except orjson.JSONDecodeError:
                        continue
                    if not isinstance(doc, dict):
                        continue
                    entry = state.setdefault(record.key or b"", [0, 0])
                    entry[0] += 1
                    message_id = str(doc.get("messageId", "")).encode()
                    if zlib.crc32(message_id) % 100 == 0:
                        at = datetime.fromisoformat(str(doc["timestamp"]))
                        alert = {"key": (record.key or b"").decode(), "event_at": at.isoformat()}
                        out.append(Record(alerts, record.key, orjson.dumps(alert)))
            if out:
                await producer.send(out)
            if fetched:
                await consumer.commit()
    finally:
        await consumer.stop()
        await producer.stop()
    elapsed = time.monotonic() - (first or time.monotonic())
    return {"events": seen, "seconds": elapsed, "rate": seen / elapsed if elapsed else 0.0}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--alerts", required=True)
    parser.add_argument("--events", type=int, required=True)
    parser.add_argument("--fetch-wait-ms", type=int, default=100)
    parser.add_argument("--timeout", type=float, default=600)
    args = parser.parse_args()
    result = asyncio.run(
        run_baseline(
            bootstrap=args.bootstrap,
            topic=args.topic,
            alerts=args.alerts,
            events=args.events,
            fetch_wait_ms=args.fetch_wait_ms,
            timeout_s=args.timeout,
        )
    )
    sys.stdout.write(orjson.dumps(result).decode() + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
