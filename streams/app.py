"""The Faust app: a factory that wires settings, the lead model and metrics to two agents.

Agents are adapters (decode, call the core, write the table, send). Topology, one
repartition hop between an event and its alert:

    engagement.raw --intake--> leadstream.person-events --leads--> leads.scored
          |                     (micro-batches, by person)    |---> leads.routed
          +--> engagement.dlq                                 +---> rep.alerts
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import faust
from faust.web import Request, Response, View
from prometheus_client import CollectorRegistry
from pydantic import TypeAdapter

from schemas.decisions import HandOff, LeadScored, RepAlert
from schemas.internal import PersonEventBatch
from streams.broker import faust_broker_settings
from streams.codec import Rejection, dead_letter, decode_batch, decode_event, encode
from streams.faust_transport import transport_class
from streams.intake import group_by_partition, normalize
from streams.lead_model import LeadModel
from streams.leads import Decision, Limits, apply_batch
from streams.metrics import CONTENT_TYPE_LATEST, Metrics, render
from streams.settings import Settings
from streams.state import LeadState, Rotation
from streams.topics import LEADS_TABLE, Topics

__all__ = ["Clock", "create_app", "utc_now"]

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]

_STATE = TypeAdapter(LeadState)
_ROTATION = TypeAdapter(Rotation)


def utc_now() -> datetime:
    return datetime.now(UTC)


class _App(faust.App):
    """faust.App with a transport whose consumer fetch wait is configurable."""

    def __init__(self, *args: Any, fetch_wait_ms: int, **kwargs: Any) -> None:
        self._fetch_wait_ms = fetch_wait_ms
        super().__init__(*args, **kwargs)

    def _new_transport(self) -> Any:
        transport = transport_class(self._fetch_wait_ms)
        return transport(self.conf.broker_consumer, self)


def create_app(
    *,
    settings: Settings,
    model: LeadModel,
    registry: CollectorRegistry,
    clock: Clock = utc_now,
) -> faust.App:
    """Build a fresh Faust app; nothing is created at import time."""
    topics = Topics(settings.topic_prefix)
    metrics = Metrics.create(registry)
    limits = Limits(dedupe_window=settings.dedupe_window, activity_kept=settings.activity_kept)
    app = _App(
        settings.app_id,
        fetch_wait_ms=settings.fetch_wait_ms,
        broker=settings.broker,
        store="memory://",
        datadir=str(settings.data_dir),
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication_factor,
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        web_enabled=True,
        web_bind=settings.web_host,
        web_port=settings.web_port,
        web_in_thread=False,
        autodiscover=False,
        **faust_broker_settings(settings),
    )

    def topic(name: str) -> faust.TopicT:
        return app.topic(
            name,
            key_serializer="raw",
            value_serializer="raw",
            partitions=settings.partitions,
            internal=True,  # created at start-up when missing
        )

    raw, dlq, person_events = topic(topics.raw), topic(topics.dlq), topic(topics.person_events)
    outputs: dict[type, faust.TopicT] = {
        LeadScored: topic(topics.scored),
        HandOff: topic(topics.routed),
        RepAlert: topic(topics.alerts),
    }
    table = app.Table(
        LEADS_TABLE,
        default=None,
        # bytes types make Faust use the raw codec both ways, including in recovery;
        # keys are UTF-8 person keys, values our own encoding of LeadState.
        key_type=bytes,
        value_type=bytes,
        partitions=settings.partitions,
    )

    @app.agent(raw, name="intake")
    async def intake(stream: faust.StreamT) -> None:
        """Validate raw events; dead-letter the bad; forward micro-batches by person."""
        linger_s = settings.intake_linger_ms / 1000
        async for events in stream.take_events(  # type: ignore[attr-defined]
            settings.intake_batch_max, within=linger_s
        ):
            good = []
            metrics.events_received.inc(len(events))
            for event in events:
                message = event.message
                decoded = decode_event(message.value)
                if isinstance(decoded, Rejection):
                    record = dead_letter(
                        decoded,
                        value=message.value,
                        key=message.key,
                        topic=message.topic,
                        partition=message.partition,
                        offset=message.offset,
                        now=clock(),
                    )
                    await dlq.send(key=message.key, value=encode(record))
                    metrics.events_dead_lettered.labels(reason=decoded.reason).inc()
                else:
                    good.append(normalize(decoded))
            metrics.events_valid.inc(len(good))
            for partition, batch in group_by_partition(good, settings.partitions).items():
                await person_events.send(
                    key=f"p{partition}".encode(),
                    value=encode(PersonEventBatch(events=tuple(batch))),
                    partition=partition,
                )

    @app.agent(person_events, name="leads")
    async def leads(stream: faust.StreamT) -> None:
        """Score one micro-batch; send its decisions, then write each changed lead once."""
        async for event in stream.events():
            batch = decode_batch(event.value)
            rotation_key = f"__rotation__/{event.message.partition}".encode()
            stored = table.get(rotation_key)
            rotation = _ROTATION.validate_json(stored).next if stored else {}
            current = {pk: table.get(pk.encode()) for pk in {e.pk for e in batch.events}}
            result = apply_batch(
                {pk: _STATE.validate_json(v) for pk, v in current.items() if v is not None},
                batch.events,
                model=model,
                rotation=rotation,
                limits=limits,
                now=clock(),
            )
            # Outputs are acknowledged before state is written: a crash in between
            # replays the batch from the old state and re-sends the same records (same
            # deterministic ids), so nothing is lost and duplicates are recognisable.
            await asyncio.gather(*[await _send(outputs, d) for d in result.decisions])
            for pk, lead in result.leads.items():
                table[pk.encode()] = encode(lead)
            if result.rotation != rotation:
                table[rotation_key] = encode(Rotation(next=result.rotation))
            _count(metrics, result.decisions, result.duplicates, clock())

    @app.page("/metrics")
    class MetricsView(View):
        async def get(self, request: Request) -> Response:
            # aiohttp refuses a charset inside content_type; pass the full header instead.
            return self.bytes(render(registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

    return app


async def _send(outputs: dict[type, faust.TopicT], decision: Decision) -> Any:
    key = decision.rep_id if isinstance(decision, RepAlert) else decision.lead_id
    return await outputs[type(decision)].send(key=key.encode(), value=encode(decision))


def _count(metrics: Metrics, decisions: list[Decision], duplicates: int, now: datetime) -> None:
    metrics.events_deduplicated.inc(duplicates)
    for decision in decisions:
        if isinstance(decision, RepAlert):
            metrics.alerts.inc()
            metrics.alert_latency.observe(max(0.0, (now - decision.event_at).total_seconds()))
        elif isinstance(decision, HandOff):
            metrics.handoffs.labels(reason=decision.reason).inc()
        else:
            metrics.scored.inc()
