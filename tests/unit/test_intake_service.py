"""The intake service's loop, on a fake consumer: what it counts, and when."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import orjson
from prometheus_client import CollectorRegistry

from schemas.internal import PersonEventBatch
from streams.intake import RawRecord
from streams.intake_service import Handover, IntakeService
from streams.kafka_connection import KafkaConnection
from streams.metrics import Metrics
from streams.producer import Record
from streams.settings import Settings

NOW = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)


def _raw(offset: int) -> RawRecord:
    doc = {
        "type": "page",
        "messageId": f"m-{offset}",
        "anonymousId": f"anon-{offset}",
        "timestamp": "2026-11-27T08:59:00Z",
        "properties": {"path": "/pricing"},
    }
    return RawRecord(orjson.dumps(doc), f"anon-{offset}".encode(), "engagement.raw", 0, offset)


class _Consumer:
    """Hands out `fetches` one per getmany, then nothing."""

    def __init__(self, fetches: list[list[RawRecord]]) -> None:
        self.fetches = fetches

    async def getmany(self, *, timeout_ms: int, max_records: int) -> dict[str, list[Any]]:
        if self.fetches:
            return {"engagement.raw-0": self.fetches.pop(0)}
        await asyncio.sleep(timeout_ms / 1000)
        return {}

    def assignment(self) -> set[object]:
        return set()


class _Producer:
    async def send_placed(self, records: list[Record]) -> list[int]:
        return list(range(len(records)))


def _service(
    fetches: list[list[RawRecord]],
    metrics: Metrics,
    handover: Handover,
    report: Callable[[], Awaitable[None]] | None = None,
) -> IntakeService:
    """An intake on a fake consumer handing out `fetches`, and a producer that acks all."""
    service = IntakeService(
        settings=Settings(),
        kafka=KafkaConnection(bootstrap="unused:9092"),
        producer=_Producer(),  # type: ignore[arg-type]
        metrics=metrics,
        clock=lambda: NOW,
        handover=handover,
        report=report,
    )
    service._consumer = _Consumer(fetches)
    return service


async def test_records_count_as_received_when_read_not_once_forwarded() -> None:
    """`leadstream_events_received_total` counts a fetch as it is read: the load test times a
    backlog from the first read it sees there. Counted after the forward instead, the
    start falls a forward's work (~0.2 s for 5,000 events) after the first read."""
    registry = CollectorRegistry()
    metrics = Metrics.create(registry)
    forwarding = asyncio.Event()
    release = asyncio.Event()
    handed: list[list[tuple[int, int, bytes, PersonEventBatch]]] = []

    async def handover(records: list[tuple[int, int, bytes, PersonEventBatch]]) -> None:
        handed.append(records)
        forwarding.set()
        await release.wait()

    service = _service([[_raw(0), _raw(1), _raw(2)]], metrics, handover)
    loop = asyncio.ensure_future(service._consume(0.0))
    try:
        await asyncio.wait_for(forwarding.wait(), timeout=5)
        # The fetch is being forwarded (the handover holds it): read, so received already;
        # and counted valid before any of its effects can show.
        assert registry.get_sample_value("leadstream_events_received_total") == 3
        assert registry.get_sample_value("leadstream_events_valid_total") == 3
        release.set()
        await asyncio.sleep(0.05)
        assert registry.get_sample_value("leadstream_events_valid_total") == 3  # once
        assert registry.get_sample_value("leadstream_events_received_total") == 3  # once
        assert sum(len(batch.events) for *_, batch in handed[0]) == 3
    finally:
        loop.cancel()
        await asyncio.gather(loop, return_exceptions=True)


async def test_an_intake_process_reports_its_counts_when_read_and_before_the_forward() -> None:
    """`report` (the intake process's link to the worker's /metrics) runs once a fetch is
    read, and again once it is counted, before it is forwarded: the worker's counts never
    trail the scores and alerts of the events they count."""
    registry = CollectorRegistry()
    metrics = Metrics.create(registry)
    seen: list[tuple[float | None, float | None, int]] = []
    handed: list[object] = []
    forwarded = asyncio.Event()

    async def report() -> None:
        seen.append(
            (
                registry.get_sample_value("leadstream_events_received_total"),
                registry.get_sample_value("leadstream_events_valid_total"),
                len(handed),
            )
        )

    async def handover(records: list[tuple[int, int, bytes, PersonEventBatch]]) -> None:
        handed.append(records)
        forwarded.set()

    service = _service([[_raw(0), _raw(1)]], metrics, handover, report=report)
    loop = asyncio.ensure_future(service._consume(0.0))
    try:
        await asyncio.wait_for(forwarded.wait(), timeout=5)
        assert seen[:2] == [(2, 0, 0), (2, 2, 0)]
    finally:
        loop.cancel()
        await asyncio.gather(loop, return_exceptions=True)
