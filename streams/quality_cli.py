"""`leadstream report quality`: read the topics, filter the time range, print the report."""

from __future__ import annotations

import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from schemas.decisions import DeadLetter, HandOff, LeadMerged
from streams.codec import decode_output
from streams.kafka_connection import KafkaConnection
from streams.kafka_io import read_topic
from streams.matching import free_mail_domains
from streams.quality import quality_report, render_quality
from streams.topics import Topics

__all__ = ["parse_when", "run_quality"]


def parse_when(text: str, *, now: datetime) -> datetime:
    """'2026-11-01', '2026-11-01T09:00:00Z', or a span back from now: '7d', '12h'."""
    text = text.strip()
    if text[-1:] in ("d", "h") and text[:-1].isdigit():
        unit = timedelta(days=1) if text[-1] == "d" else timedelta(hours=1)
        return now - int(text[:-1]) * unit
    at = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


def run_quality(
    *,
    broker: str,
    kafka: KafkaConnection,
    topics: Topics,
    since: datetime,
    until: datetime,
    progress: bool,
    out: Callable[[str], object] = sys.stdout.write,
) -> int:
    since_ms, until_ms = int(since.timestamp() * 1000), int(until.timestamp() * 1000)

    def read(topic: str) -> list[bytes]:
        records = read_topic(kafka, topic, since_ms=since_ms, until_ms=until_ms, progress=progress)
        return [r.value for r in records]

    try:
        merges = [m for v in read(topics.merged) if (m := decode_output(LeadMerged, v))]
        handoffs = [h for v in read(topics.routed) if (h := decode_output(HandOff, v))]
        dead = [d for v in read(topics.dlq) if (d := decode_output(DeadLetter, v))]
    except Exception as exc:  # unreachable broker, missing topic, timeout
        sys.stderr.write(
            f"leadstream: cannot read the topics from {broker}: {kafka.failure(exc)}\n"
        )
        return 1
    report = quality_report(
        since=since,
        until=until,
        merges=merges,
        handoffs=handoffs,
        dead_letters=dead,
        free_mail=free_mail_domains(),
    )
    out(render_quality(report))
    return 0
