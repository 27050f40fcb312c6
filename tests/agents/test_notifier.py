"""The notifier adapter with fakes passed in (transport, producer, clocks): what a batch of
alerts leads to on the DLQ, the delivered log and the metrics, without a broker or a network.

Real servers and a real broker: tests/integration/test_notifier.py.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import aiosmtplib
import pytest
from aiokafka import ConsumerRecord
from prometheus_client import CollectorRegistry

from schemas.decisions import RepAlert
from schemas.notify import Delivered, UndeliveredAlert
from streams.codec import encode
from streams.kafka_connection import KafkaConnection
from streams.metrics import NotifierMetrics
from streams.notifier import Notifier, smtp_failure
from streams.notify import ChannelsConfig, Email, Failure, HttpPost, http_failure
from streams.producer import Record
from streams.settings import Settings
from streams.topics import Topics

NOW = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)
TOPICS = Topics()
CONFIG = ChannelsConfig.model_validate(
    {"reps": {"carla": [{"type": "slack", "webhook_url": "https://hooks.example/T/B/x"}]}}
)


class FakeProducer:
    def __init__(self) -> None:
        self.records: list[Record] = []

    async def send(self, records: Iterable[Record]) -> int:
        batch = list(records)
        self.records += batch
        return len(batch)

    def on(self, topic: str) -> list[bytes]:
        return [r.value for r in self.records if r.topic == topic and r.value is not None]


class ScriptedTransport:
    """Answers each attempt with the next failure of `script` (None: accepted)."""

    def __init__(self, *script: Failure | None, on_send: Any = None) -> None:
        self.script = list(script)
        self.sent: list[HttpPost | Email] = []
        self.on_send = on_send

    async def send(self, payload: HttpPost | Email) -> Failure | None:
        self.sent.append(payload)
        if self.on_send is not None:
            self.on_send()
        return self.script.pop(0) if self.script else None


class Clock:
    def __init__(self) -> None:
        self.s = 1000.0

    def __call__(self) -> float:
        return self.s


def alert(alert_id: str) -> RepAlert:
    return RepAlert(
        alert_id=alert_id,
        rep_id="carla",
        rep_name="Carla Gomez",
        rep_email="carla@sales.example.com",
        lead_id="ld_1",
        email="jane.doe@acme-robotics.com",
        company="Acme Robotics",
        trigger="demo-request",
        message="Jane Doe requested a demo",
        score=90,
        model_version="1",
        event_at=NOW - timedelta(seconds=2),
        created_at=NOW,
    )


def records(*alerts: RepAlert) -> list[ConsumerRecord[bytes, bytes]]:
    return [
        ConsumerRecord(TOPICS.alerts, 0, i, 0, 0, b"carla", encode(a), None, 5, 0, [])
        for i, a in enumerate(alerts)
    ]


def notifier(
    transport: ScriptedTransport,
    producer: FakeProducer,
    *,
    stop: asyncio.Event | None = None,
    monotonic: Clock | None = None,
    **settings: Any,
) -> tuple[Notifier, CollectorRegistry]:
    registry = CollectorRegistry()
    defaults: dict[str, Any] = {
        "notifier_max_attempts": 3,
        "notifier_backoff_base_s": 0.0,
        "notifier_circuit_failures": 5,
        "notifier_circuit_cooldown_s": 30.0,
    }
    n = Notifier(
        settings=Settings(**{**defaults, **settings}),
        config=CONFIG,
        kafka=KafkaConnection(bootstrap="unused:9092"),
        transport=transport,
        producer=producer,
        metrics=NotifierMetrics.create(registry),
        clock=lambda: NOW,
        stop=stop or asyncio.Event(),
        monotonic=monotonic or Clock(),
        rng=random.Random(1),
    )
    return n, registry


def value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    got = registry.get_sample_value(name, labels)
    return 0.0 if got is None else got


async def test_a_refused_request_is_dead_lettered_at_once_without_retries() -> None:
    transport = ScriptedTransport(http_failure(404, "no_service"))
    producer = FakeProducer()
    n, registry = notifier(transport, producer)

    assert await n.handle(records(alert("al_1")))

    (dead,) = [UndeliveredAlert.model_validate_json(v) for v in producer.on(TOPICS.alerts_dlq)]
    assert (dead.cause, dead.attempts, dead.last_error) == (
        "permanent_error",
        1,
        "HTTP 404: no_service",
    )
    assert dead.alert == alert("al_1") and dead.failed_at == NOW
    assert producer.on(TOPICS.alerts_delivered) == []
    assert len(transport.sent) == 1
    assert value(registry, "leadstream_notifier_retries_total", channel="slack") == 0


async def test_a_delivery_is_recorded_with_its_attempts() -> None:
    transport = ScriptedTransport(http_failure(503, "busy"), None)
    producer = FakeProducer()
    n, registry = notifier(transport, producer)

    assert await n.handle(records(alert("al_1"), alert("al_1")))  # read twice in one batch

    (record,) = [r for r in producer.records if r.topic == TOPICS.alerts_delivered]
    assert record.key is not None and record.key.decode().startswith("al_1|slack:")
    assert record.value is not None
    done = Delivered.model_validate_json(record.value)
    assert (done.attempts, done.alert_created_at, done.channel) == (2, NOW, "slack")
    assert len(transport.sent) == 2
    assert value(registry, "leadstream_notifier_retries_total", channel="slack") == 1
    # Read again later (a restart, a rebalance): not sent again.
    assert await n.handle(records(alert("al_1")))
    assert len(transport.sent) == 2
    assert (
        value(
            registry,
            "leadstream_notifier_deliveries_total",
            channel="slack",
            outcome="already_delivered",
        )
        == 1
    )


async def test_a_stop_during_a_backoff_leaves_the_batch_unsettled() -> None:
    stop = asyncio.Event()
    transport = ScriptedTransport(http_failure(503, "busy"), on_send=stop.set)
    producer = FakeProducer()
    # A 10-minute backoff: the test finishing at all shows the stop cut it short.
    n, _ = notifier(
        transport, producer, stop=stop, notifier_backoff_base_s=600, notifier_backoff_max_s=600
    )

    settled = await asyncio.wait_for(n.handle(records(alert("al_1"))), timeout=5)

    assert settled is False  # so the batch is not committed and is read again
    assert producer.records == []  # neither dead-lettered nor recorded as delivered
    assert len(transport.sent) == 1


async def test_an_open_circuit_lets_one_trial_through_after_the_cooldown() -> None:
    clock = Clock()
    down = http_failure(500, "down")
    transport = ScriptedTransport(down, down)
    producer = FakeProducer()
    n, registry = notifier(
        transport, producer, monotonic=clock, notifier_max_attempts=2, notifier_circuit_failures=2
    )

    def circuits(state: str) -> float:
        return value(registry, "leadstream_notifier_circuits", channel="slack", state=state)

    assert circuits("closed") == 1
    await n.handle(records(alert("al_1")))
    assert circuits("open") == 1

    clock.s += 29
    await n.handle(records(alert("al_2")))  # still cooling down: not tried
    assert len(transport.sent) == 2

    clock.s += 1
    await n.handle(records(alert("al_3")))  # the trial, and it gets through
    assert len(transport.sent) == 3
    assert circuits("closed") == 1 and circuits("open") == 0

    dead = [UndeliveredAlert.model_validate_json(v) for v in producer.on(TOPICS.alerts_dlq)]
    assert [(d.alert.alert_id, d.cause, d.attempts) for d in dead] == [
        ("al_1", "retries_exhausted", 2),
        ("al_2", "circuit_open", 0),
    ]
    assert dead[1].last_error == "circuit open after 2 consecutive failures; last: HTTP 500: down"
    delivered = [Delivered.model_validate_json(v) for v in producer.on(TOPICS.alerts_delivered)]
    assert len(delivered) == 1


async def test_alerts_for_reps_without_channels_and_unreadable_records_are_counted() -> None:
    transport = ScriptedTransport()
    producer = FakeProducer()
    n, registry = notifier(transport, producer)
    other = alert("al_9").model_copy(update={"rep_id": "nobody"})
    batch = records(other)
    batch.append(ConsumerRecord(TOPICS.alerts, 0, 9, 0, 0, None, b"{not json", None, 0, 9, []))

    assert await n.handle(batch)

    assert transport.sent == [] and producer.records == []
    assert value(registry, "leadstream_notifier_alerts_total", result="no_channels") == 1
    assert value(registry, "leadstream_notifier_alerts_total", result="unreadable") == 1


@pytest.mark.parametrize(
    ("error", "message", "retryable"),
    [
        (aiosmtplib.SMTPResponseException(451, "mailbox busy"), "SMTP 451: mailbox busy", True),
        (aiosmtplib.SMTPResponseException(550, "no such user"), "SMTP 550: no such user", False),
        (
            aiosmtplib.SMTPAuthenticationError(535, "bad credentials"),
            "SMTP 535: bad credentials",
            False,
        ),
        (
            aiosmtplib.SMTPRecipientsRefused(
                [aiosmtplib.SMTPRecipientRefused(450, "greylisted", "a@b.example")]
            ),
            "SMTP 450: greylisted",
            True,
        ),
        (aiosmtplib.SMTPConnectError("refused"), "SMTP: SMTPConnectError: refused", True),
        (
            ConnectionRefusedError(111, "Connection refused"),
            "SMTP: ConnectionRefusedError: [Errno 111] Connection refused",
            True,
        ),
    ],
)
def test_smtp_errors_4xx_and_connection_problems_are_retried_5xx_are_not(
    error: Exception, message: str, retryable: bool
) -> None:
    assert smtp_failure(error) == Failure(message, retryable)
