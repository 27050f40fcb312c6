"""What the pipeline writes to Kafka per event: records and bytes by topic, for sizing.

The latency phase reads back every topic of its run (the pipeline's own and Faust's
changelogs) and counts what was written while its traffic was paced: the records whose
timestamp falls in the window, their key and value bytes. `engagement.raw` is the input,
counted for comparison; everything else is what Leadstream adds to the broker's load.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, NamedTuple

from aiokafka.admin import AIOKafkaAdminClient

from streams.kafka_connection import KafkaConnection, as_connection
from streams.kafka_io import read_to_end

__all__ = ["WrittenRecord", "read_window", "run_topics", "summarize"]

#: The input topic's name after the run's prefix: counted, not added to what we write.
INPUT = "engagement.raw"


class WrittenRecord(NamedTuple):
    """One record as counted: its topic (without the run's prefix) and its bytes."""

    topic: str
    key_bytes: int
    value_bytes: int


def summarize(written: Iterable[WrittenRecord], *, events: int, seconds: float) -> dict[str, Any]:
    """Per topic, records per 1,000 input events, key and value bytes per input event and
    KiB a second over the `seconds` the `events` were sent in; and the totals of what the
    pipeline wrote (every topic but the input), with its ratio to the input's bytes."""
    records: dict[str, int] = {}
    sizes: dict[str, int] = {}
    for w in written:
        records[w.topic] = records.get(w.topic, 0) + 1
        sizes[w.topic] = sizes.get(w.topic, 0) + w.key_bytes + w.value_bytes
    per = max(events, 1)
    topics = {
        topic: {
            "records_per_1k_events": round(records[topic] * 1000 / per, 1),
            "bytes_per_event": round(sizes[topic] / per),
            "kib_per_s": round(sizes[topic] / 1024 / max(seconds, 1e-9), 1),
        }
        for topic in sorted(sizes, key=lambda t: (-sizes[t], t))
    }
    ours = sum(size for topic, size in sizes.items() if topic != INPUT)
    into = sizes.get(INPUT, 0)
    return {
        "events": events,
        "seconds": round(seconds, 1),
        "topics": topics,
        "written_bytes_per_event": round(ours / per),
        "written_records_per_1k_events": round(
            sum(n for topic, n in records.items() if topic != INPUT) * 1000 / per, 1
        ),
        "written_to_input_bytes": round(ours / into, 2) if into else None,
    }


async def run_topics(kafka: KafkaConnection | str, prefixes: Iterable[str]) -> list[str]:
    """The broker's topics whose names start with one of `prefixes` (a run's own)."""
    admin = AIOKafkaAdminClient(**as_connection(kafka).client_kwargs())
    await admin.start()
    try:
        names = await admin.list_topics()
    finally:
        await admin.close()
    starts = tuple(prefixes)
    return sorted(n for n in names if n.startswith(starts))


async def read_window(
    kafka: KafkaConnection | str,
    topics: dict[str, str],
    *,
    since_ms: int,
    until_ms: int,
    timeout_s: float = 120,
) -> list[WrittenRecord]:
    """Every record of `topics` (name -> the name to count it under) with a timestamp in
    [since_ms, until_ms), read from the beginning to each partition's end as of now
    (`read_to_end`: raises TimeoutError if a partition is not read to its end)."""
    records = await read_to_end(kafka, list(topics), since_ms=since_ms, timeout_s=timeout_s)
    return [
        WrittenRecord(topics[r.topic], len(r.key or b""), len(r.value or b""))
        for r in records
        if r.timestamp < until_ms
    ]
