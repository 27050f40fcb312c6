"""The rep notifier: `rep.alerts` to each rep's Slack, webhook and email channels.

An aiokafka consumer in its own group (`<app id>-notifier`) hands each fetched batch to the
pure core (`streams.notify`) and delivers what it plans, a bounded number at once, with
retries, per-channel circuit breakers and a dead-letter topic. A batch's offsets are
committed only after every delivery in it is made or dead-lettered (at-least-once), and each
delivery made is written to `rep.alerts.delivered` first, so an alert read again after a
restart is not delivered to a channel twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import signal
import time
from collections import Counter
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Protocol

import aiohttp
import aiosmtplib
from aiohttp import web
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, ConsumerRecord, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError
from prometheus_client import CollectorRegistry

from schemas.decisions import RepAlert
from schemas.notify import ChannelType, Delivered, DlqCause
from streams.codec import decode_output, encode
from streams.kafka_connection import KafkaConnection
from streams.kafka_io import create_topics, open_partition
from streams.metrics import CONTENT_TYPE_LATEST, NotifierMetrics, render
from streams.notify import (
    ChannelsConfig,
    Circuit,
    CircuitPolicy,
    DeliveredSet,
    Delivery,
    Email,
    Failure,
    HttpPost,
    RetryPolicy,
    Smtp,
    admit,
    backoff_s,
    circuit_failed,
    circuit_succeeded,
    http_failure,
    plan_batch,
    to_mime,
    undelivered,
)
from streams.notify import render as render_payload
from streams.producer import BatchProducer, Record
from streams.settings import Settings
from streams.topics import DELIVERED_TOPIC_CONFIG, DELIVERED_TOPIC_PARTITIONS, Topics

__all__ = [
    "DeliveredLog",
    "NetworkTransport",
    "Notifier",
    "NotifierStartError",
    "Sender",
    "Transport",
    "serve_notifier",
    "smtp_failure",
]

log = logging.getLogger(__name__)

#: Most alerts handled (and committed) together.
_BATCH_MAX = 500
#: How often deliveries of alerts older than the dedupe window are forgotten.
_PRUNE_EVERY_S = 600.0
_DAY_S = 86_400.0


class NotifierStartError(Exception):
    """`leadstream notifier` cannot start: the broker is unreachable or the port is taken."""


class Sender(Protocol):
    """Produces records and returns once the broker has acknowledged them (BatchProducer)."""

    async def send(self, records: Iterable[Record]) -> int: ...


class Transport(Protocol):
    """Sends one payload; None when it was accepted, else what went wrong."""

    async def send(self, payload: HttpPost | Email) -> Failure | None: ...


class NetworkTransport:
    """HTTP with aiohttp (Slack, webhooks) and SMTP with aiosmtplib (email)."""

    def __init__(
        self, *, session: aiohttp.ClientSession, smtp: Smtp | None, timeout_s: float
    ) -> None:
        self._session = session
        self._smtp = smtp
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._timeout_s = timeout_s

    async def send(self, payload: HttpPost | Email) -> Failure | None:
        if isinstance(payload, HttpPost):
            return await self._post(payload)
        return await self._mail(payload)

    async def _post(self, request: HttpPost) -> Failure | None:
        try:
            async with self._session.post(
                request.url,
                data=request.body,
                headers=dict(request.headers),
                timeout=self._timeout,
                allow_redirects=False,
            ) as response:
                body = await response.content.read(2048)
                return http_failure(
                    response.status,
                    body.decode("utf-8", "replace"),
                    retry_after=response.headers.get("Retry-After"),
                )
        except TimeoutError:
            return Failure(f"no answer within {self._timeout_s:g} s", retryable=True)
        except aiohttp.ClientError as exc:
            # The message names host and port, never the path (a Slack hook's secret part).
            return Failure(f"{type(exc).__name__}: {exc}", retryable=True)

    async def _mail(self, email: Email) -> Failure | None:
        smtp = self._smtp
        if smtp is None:  # parse_channels refuses email channels without smtp
            return Failure("no SMTP server configured", retryable=False)
        try:
            await aiosmtplib.send(
                to_mime(email),
                hostname=smtp.host,
                port=smtp.port,
                username=smtp.username,
                password=smtp.password.get_secret_value() if smtp.password else None,
                use_tls=smtp.security == "tls",
                start_tls=smtp.security == "starttls",
                timeout=smtp.timeout_s,
            )
        except Exception as exc:
            return smtp_failure(exc)
        return None


def smtp_failure(exc: Exception) -> Failure:
    """An SMTP error as a failure: 4xx replies are worth retrying, 5xx are not; so are
    connection problems and timeouts."""
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused) and exc.recipients:
        exc = exc.recipients[0]
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        message = " ".join(str(exc.message).split())
        return Failure(f"SMTP {exc.code}: {message}", retryable=400 <= exc.code < 500)
    if isinstance(exc, aiosmtplib.SMTPException | OSError | TimeoutError):
        return Failure(f"SMTP: {type(exc).__name__}: {exc}", retryable=True)
    raise exc


class DeliveredLog:
    """`rep.alerts.delivered`: read into a DeliveredSet, and written on every delivery."""

    def __init__(
        self,
        *,
        topic: str,
        kafka: KafkaConnection,
        producer: Sender,
        delivered: DeliveredSet,
        clock: Callable[[], datetime],
        fetch_wait_ms: int,
    ) -> None:
        self._tp = TopicPartition(topic, 0)
        self._kafka = kafka
        self._producer = producer
        self.delivered = delivered
        self._clock = clock
        self._fetch_wait_ms = fetch_wait_ms
        self._consumer: AIOKafkaConsumer | None = None

    async def catch_up(self) -> int:
        """Read up to the topic's end as of now; return the deliveries remembered."""
        consumer = self._consumer
        if consumer is None:
            consumer, end = await open_partition(
                self._kafka,
                self._tp.topic,
                partition=self._tp.partition,
                fetch_wait_ms=self._fetch_wait_ms,
            )
            self._consumer = consumer
        else:
            end = (await consumer.end_offsets([self._tp]))[self._tp]
        while await consumer.position(self._tp) < end:
            fetched = await consumer.getmany(self._tp, timeout_ms=200, max_records=10_000)
            now = self._clock()
            for record in fetched.get(self._tp, []):
                done = decode_output(Delivered, record.value)
                if done is not None and record.key is not None:
                    key = record.key.decode("utf-8", "replace")
                    self.delivered.add(key, alert_created_at=done.alert_created_at, now=now)
        return len(self.delivered)

    async def record(self, delivery: Delivery, *, attempts: int) -> None:
        """Write the delivery and wait for the acknowledgement; then it counts as made."""
        now = self._clock()
        done = Delivered(
            rep_id=delivery.alert.rep_id,
            channel=delivery.channel.type,
            attempts=attempts,
            alert_created_at=delivery.alert.created_at,
            delivered_at=now,
        )
        key = delivery.key
        await self._producer.send([Record(self._tp.topic, key.encode(), encode(done), 0)])
        self.delivered.add(key, alert_created_at=delivery.alert.created_at, now=now)

    async def close(self) -> None:
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            await consumer.stop()


class _Rebalance(ConsumerRebalanceListener):
    def __init__(self, notifier: Notifier) -> None:
        self._notifier = notifier

    async def on_partitions_revoked(self, revoked: object) -> None:
        # The batch in hand finishes and commits before its partitions go to another member.
        async with self._notifier.batch_lock:
            pass

    async def on_partitions_assigned(self, assigned: object) -> None:
        # Another member may have delivered alerts of these partitions moments ago.
        await self._notifier.delivered_log.catch_up()


class Notifier:
    """Consumes `rep.alerts` and delivers each alert to its rep's channels until `stop`."""

    def __init__(
        self,
        *,
        settings: Settings,
        config: ChannelsConfig,
        kafka: KafkaConnection,
        transport: Transport,
        producer: Sender,
        metrics: NotifierMetrics,
        clock: Callable[[], datetime],
        stop: asyncio.Event,
        monotonic: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        self._settings = settings
        self._config = config
        self._topics = Topics(settings.topic_prefix)
        self._kafka = kafka
        self._transport = transport
        self._producer = producer
        self._metrics = metrics
        self._clock = clock
        self._monotonic = monotonic
        self._rng = rng or random.Random()  # noqa: S311 — backoff jitter, not a secret
        self._retry = RetryPolicy(
            max_attempts=settings.notifier_max_attempts,
            base_s=settings.notifier_backoff_base_s,
            max_s=settings.notifier_backoff_max_s,
        )
        self._breaker = CircuitPolicy(
            failures=settings.notifier_circuit_failures,
            cooldown_s=settings.notifier_circuit_cooldown_s,
        )
        self._window_s = settings.notifier_dedupe_days * _DAY_S
        self.delivered_log = DeliveredLog(
            topic=self._topics.alerts_delivered,
            kafka=kafka,
            producer=producer,
            delivered=DeliveredSet(self._window_s),
            clock=clock,
            fetch_wait_ms=settings.notifier_fetch_wait_ms,
        )
        self.batch_lock = asyncio.Lock()
        self._slots = asyncio.Semaphore(settings.notifier_concurrency)
        self._stop = stop
        self._types = {cid: c.type for cid, c in config.channels().items()}
        self._circuits: dict[str, Circuit] = dict.fromkeys(self._types, Circuit())
        self._show_circuits()

    async def ensure_topics(self) -> None:
        """rep.alerts and rep.alerts.dlq with the worker's partition count, and the
        delivered log, if nothing has made them yet."""
        s, t = self._settings, self._topics
        await create_topics(
            self._kafka, [t.alerts, t.alerts_dlq], s.partitions, s.replication_factor
        )
        await create_topics(
            self._kafka,
            [t.alerts_delivered],
            DELIVERED_TOPIC_PARTITIONS,
            s.replication_factor,
            configs=DELIVERED_TOPIC_CONFIG,
        )

    async def run(self) -> None:
        """Deliver until `stop` is set; a batch cut short by it is not committed."""
        s, stop = self._settings, self._stop
        remembered = await self.delivered_log.catch_up()
        log.info(
            "notifier: %d deliveries remembered from the last %g days",
            remembered,
            s.notifier_dedupe_days,
        )
        consumer = AIOKafkaConsumer(
            **self._kafka.client_kwargs(),
            group_id=f"{s.app_id}-notifier",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=s.notifier_fetch_wait_ms,
            session_timeout_ms=int(s.session_timeout_s * 1000),
            heartbeat_interval_ms=int(s.heartbeat_interval_s * 1000),
            rebalance_timeout_ms=int(max(10.0, s.session_timeout_s * 2) * 1000),
            # A batch may spend its retries (minutes with the default backoff) before the
            # next poll; the group must not evict the member meanwhile.
            max_poll_interval_ms=int(max(300.0, self._longest_batch_s()) * 1000),
        )
        consumer.subscribe([self._topics.alerts], listener=_Rebalance(self))
        pruned_at = self._monotonic()
        try:
            await consumer.start()
            while not stop.is_set():
                fetched = await consumer.getmany(timeout_ms=200, max_records=_BATCH_MAX)
                records = [r for recs in fetched.values() for r in recs]
                if self._monotonic() - pruned_at >= _PRUNE_EVERY_S:
                    pruned_at = self._monotonic()
                    self.delivered_log.delivered.prune(now=self._clock())
                if not records:
                    continue
                async with self.batch_lock:
                    if not await self.handle(records):
                        log.info("notifier: stopping; the unfinished batch is read again")
                        break
                    await self._commit(consumer)
        finally:
            await consumer.stop()
            await self.delivered_log.close()

    def _longest_batch_s(self) -> float:
        r = self._retry
        return r.max_attempts * (self._settings.notifier_timeout_s + r.max_s) + 60

    async def _commit(self, consumer: AIOKafkaConsumer) -> None:
        try:
            await consumer.commit()
        except (CommitFailedError, IllegalStateError) as exc:
            # The new owner reads the batch again; its deliveries are on the delivered log.
            log.warning("notifier: offsets not committed after a rebalance: %s", exc)

    async def handle(self, records: list[ConsumerRecord]) -> bool:
        """Deliver a fetched batch of `rep.alerts` records: True once every delivery is made
        or dead-lettered; False if `stop` was set before they all were."""
        alerts: list[RepAlert] = []
        for record in records:
            alert = decode_output(RepAlert, record.value)
            if alert is None:
                self._metrics.alerts.labels(result="unreadable").inc()
                log.warning(
                    "notifier: %s@%d:%d is not a rep alert; skipped",
                    record.topic,
                    record.partition,
                    record.offset,
                )
                continue
            alerts.append(alert)
        plan = plan_batch(
            alerts,
            config=self._config,
            delivered=self.delivered_log.delivered,
            now=self._clock(),
            window_s=self._window_s,
        )
        m = self._metrics
        m.alerts.labels(result="accepted").inc(plan.accepted)
        m.alerts.labels(result="no_channels").inc(plan.no_channels)
        m.alerts.labels(result="expired").inc(plan.expired)
        for channel, count in plan.already_delivered.items():
            m.deliveries.labels(channel=channel, outcome="already_delivered").inc(count)
        settled = await asyncio.gather(*(self._deliver(d) for d in plan.deliveries))
        return all(settled)

    async def _deliver(self, delivery: Delivery) -> bool:
        """Attempt until delivered or given up (True), or until stopped (False)."""
        async with self._slots:
            cid, kind = delivery.channel_id, delivery.channel.type
            attempts = 0
            while True:
                if self._stop.is_set():
                    return False  # stopping: no new attempt; the batch is read again
                circuit, admitted = admit(
                    self._circuits[cid], now=self._monotonic(), policy=self._breaker
                )
                self._set_circuit(cid, circuit)
                if not admitted:
                    await self._dead_letter(
                        delivery,
                        "circuit_open",
                        attempts,
                        f"circuit open after {circuit.failures} consecutive failures; "
                        f"last: {circuit.last_error}",
                    )
                    return True
                attempts += 1
                payload = render_payload(
                    delivery.alert, delivery.channel, config=self._config, now=self._clock()
                )
                failure = await self._transport.send(payload)
                if failure is None:
                    self._set_circuit(cid, circuit_succeeded(self._circuits[cid]))
                    await self.delivered_log.record(delivery, attempts=attempts)
                    self._delivered(delivery, attempts)
                    return True
                self._set_circuit(
                    cid,
                    circuit_failed(
                        self._circuits[cid],
                        now=self._monotonic(),
                        policy=self._breaker,
                        error=failure.message,
                    ),
                )
                if not failure.retryable:
                    await self._dead_letter(delivery, "permanent_error", attempts, failure.message)
                    return True
                if attempts >= self._retry.max_attempts:
                    await self._dead_letter(
                        delivery, "retries_exhausted", attempts, failure.message
                    )
                    return True
                wait_s = backoff_s(
                    attempts,
                    policy=self._retry,
                    rand=self._rng.random(),
                    retry_after_s=failure.retry_after_s,
                )
                log.info(
                    "notifier: alert %s to %s failed (attempt %d: %s); again in %.2f s",
                    delivery.alert.alert_id,
                    cid,
                    attempts,
                    failure.message,
                    wait_s,
                )
                if await self._stopped_within(wait_s):
                    return False
                self._metrics.retries.labels(channel=kind).inc()

    async def _stopped_within(self, seconds: float) -> bool:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), seconds)
        return self._stop.is_set()

    def _delivered(self, delivery: Delivery, attempts: int) -> None:
        kind = delivery.channel.type
        self._metrics.deliveries.labels(channel=kind, outcome="delivered").inc()
        latency = (self._clock() - delivery.alert.created_at).total_seconds()
        self._metrics.delivery_latency.labels(channel=kind).observe(max(0.0, latency))
        log.info(
            "notifier: alert %s delivered to %s of %s (attempt %d)",
            delivery.alert.alert_id,
            delivery.channel_id,
            delivery.alert.rep_id,
            attempts,
        )

    async def _dead_letter(
        self, delivery: Delivery, cause: DlqCause, attempts: int, error: str
    ) -> None:
        record = undelivered(
            delivery, cause=cause, attempts=attempts, last_error=error, now=self._clock()
        )
        dlq = self._topics.alerts_dlq
        await self._producer.send([Record(dlq, record.rep_id.encode(), encode(record))])
        kind = delivery.channel.type
        self._metrics.deliveries.labels(channel=kind, outcome="dead_lettered").inc()
        self._metrics.dead_letters.labels(channel=kind, cause=cause).inc()
        log.warning(
            "notifier: alert %s to %s of %s given up (%s after %d attempts): %s; on %s",
            delivery.alert.alert_id,
            delivery.channel_id,
            delivery.alert.rep_id,
            cause,
            attempts,
            error,
            dlq,
        )

    def _set_circuit(self, cid: str, circuit: Circuit) -> None:
        before = self._circuits[cid]
        self._circuits[cid] = circuit
        if circuit.state != before.state:
            log.warning(
                "notifier: circuit of %s %s -> %s%s",
                cid,
                before.state,
                circuit.state,
                f" ({circuit.last_error})" if circuit.state == "open" else "",
            )
            self._show_circuits()

    def _show_circuits(self) -> None:
        counts: Counter[tuple[ChannelType, str]] = Counter(
            (self._types[cid], c.state) for cid, c in self._circuits.items()
        )
        for kind in ("slack", "webhook", "email"):
            for state in ("closed", "open", "half_open"):
                self._metrics.circuits.labels(channel=kind, state=state).set(counts[(kind, state)])


async def serve_notifier(
    settings: Settings,
    config: ChannelsConfig,
    *,
    kafka: KafkaConnection,
    host: str,
    port: int,
    registry: CollectorRegistry,
    clock: Callable[[], datetime],
    on_ready: Callable[[str], None],
) -> None:
    """`leadstream notifier`: deliver alerts and serve /metrics until SIGTERM or SIGINT.

    On a signal no new attempt starts; attempts in flight finish (each within
    notifier_timeout_s), a batch that was cut short is left uncommitted (the next run reads
    it again and skips what was delivered), and the consumer leaves its group.
    """
    topics = Topics(settings.topic_prefix)
    tansu = settings.broker_flavor == "tansu"
    producer = BatchProducer(
        kafka=kafka,
        # A Tansu gap: ListOffsets is wrong after a multi-record batch, and the delivered log
        # is read up to its end offset.
        single_record_tail=frozenset({topics.alerts_delivered}) if tansu else frozenset(),
    )
    metrics = NotifierMetrics.create(registry)
    stop = asyncio.Event()
    async with aiohttp.ClientSession() as session:
        notifier = Notifier(
            settings=settings,
            config=config,
            kafka=kafka,
            transport=NetworkTransport(
                session=session, smtp=config.smtp, timeout_s=settings.notifier_timeout_s
            ),
            producer=producer,
            metrics=metrics,
            clock=clock,
            stop=stop,
        )
        try:
            await notifier.ensure_topics()
            await producer.start()
        except Exception as exc:
            await producer.stop()
            raise NotifierStartError(
                f"cannot reach the broker {settings.broker}: {kafka.failure(exc)}"
            ) from exc

        app = web.Application()

        async def metrics_page(request: web.Request) -> web.Response:
            body = render(registry)
            return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

        app.router.add_get("/metrics", metrics_page)
        runner = web.AppRunner(app, access_log=None)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        try:
            await runner.setup()
            try:
                await web.TCPSite(runner, host, port).start()
            except OSError as exc:
                raise NotifierStartError(
                    f"cannot serve on {host}:{port}: {exc.strerror or exc}"
                ) from exc
            on_ready(f"http://{host}:{port}")
            try:
                await notifier.run()
            except Exception:
                log.exception("notifier: stopped by an error; the batch in hand is read again")
                raise
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
            with contextlib.suppress(Exception):
                await runner.cleanup()
            try:
                await asyncio.wait_for(producer.stop(), settings.notifier_timeout_s)
            except TimeoutError:
                log.warning("notifier: stopped without the broker's last acknowledgements")
