"""The Segment HTTP ingest over aiohttp: the request handler and the `leadstream ingest` server.

The same handler serves `/v1/*` on the worker's web port (Faust's web server is aiohttp) and
in a process of its own for deployments that scale ingest apart from scoring. Decisions are
in `streams.ingest`; here a body is read (capped), the records are produced, and the answer
is sent only once the broker has acknowledged them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any, Final, Protocol, cast

from aiohttp import web
from prometheus_client import CollectorRegistry

from streams.ingest import (
    SHORT_PATHS,
    SUCCESS_BODY,
    Endpoint,
    RateLimiter,
    Refused,
    WriteKeys,
    ingest_request,
)
from streams.kafka_connection import KafkaConnection
from streams.kafka_io import create_topics
from streams.metrics import CONTENT_TYPE_LATEST, IngestMetrics, render
from streams.producer import BatchProducer, Record
from streams.settings import Settings
from streams.topics import Topics

__all__ = [
    "ROUTE",
    "RUNNER_OPTIONS",
    "IngestHandler",
    "IngestStartError",
    "Sender",
    "add_routes",
    "serve_ingest",
]

log = logging.getLogger(__name__)

#: The Tracking API paths served (POST, and OPTIONS for browsers' CORS preflight), with
#: analytics.js's one-letter forms; anything else under /v1 is a 404 from the router.
ROUTE = "/v1/{endpoint:batch|track|page|identify|group|b|t|p|i|g}"

# Browsers post from the site's origin: the write key is the credential, not the origin.
_CORS: Final = {"Access-Control-Allow-Origin": "*", "Access-Control-Expose-Headers": "Retry-After"}
_PREFLIGHT: Final = {
    **_CORS,
    "Access-Control-Allow-Methods": "POST",
    "Access-Control-Allow-Headers": "Authorization, Content-Type, Content-Encoding",
    "Access-Control-Max-Age": "86400",
}

#: For the aiohttp runner of any server that mounts the handler. aiohttp would inflate gzip
#: bodies itself before the handler sees them; the ingest decodes them (streams.ingest), so
#: the limits apply to both sizes and a bad body gets a clear answer.
RUNNER_OPTIONS: Final[dict[str, Any]] = {"access_log": None, "auto_decompress": False}


class IngestStartError(Exception):
    """`leadstream ingest` cannot start: the broker is unreachable or the port is taken."""


class Sender(Protocol):
    async def send(self, records: Iterable[Record]) -> int: ...


class IngestHandler:
    """An aiohttp handler for `ROUTE`: answers 200 only after the records are acknowledged."""

    def __init__(
        self,
        *,
        keys: WriteKeys,
        topic: str,
        producer: Sender,
        metrics: IngestMetrics,
        clock: Callable[[], datetime],
        max_body_bytes: int,
        produce_timeout_s: float,
        limiter: RateLimiter | None = None,
    ) -> None:
        self._keys = keys
        self._topic = topic
        self._producer = producer
        self._metrics = metrics
        self._clock = clock
        self._max_body_bytes = max_body_bytes
        self._produce_timeout_s = produce_timeout_s
        self._limiter = limiter
        self._sends: set[asyncio.Future[int]] = set()

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        producer: Sender,
        registry: CollectorRegistry,
        clock: Callable[[], datetime],
    ) -> IngestHandler:
        """The handler for engagement.raw, with the write keys and limits of `settings`."""
        return cls(
            keys=WriteKeys(k.get_secret_value() for k in settings.write_keys),
            topic=Topics(settings.topic_prefix).raw,
            producer=producer,
            metrics=IngestMetrics.create(registry),
            clock=clock,
            max_body_bytes=settings.ingest_max_body_bytes,
            produce_timeout_s=settings.ingest_produce_timeout_s,
            limiter=RateLimiter(rate_per_s=settings.ingest_rate_per_s, burst=settings.ingest_burst),
        )

    async def __call__(self, request: web.Request) -> web.Response:
        if request.method == "OPTIONS":
            return web.Response(status=204, headers=_PREFLIGHT)
        name = request.match_info["endpoint"]
        endpoint = SHORT_PATHS.get(name) or cast(Endpoint, name)
        headers = dict(_CORS)
        try:
            status, body = await self._answer(request, endpoint, headers)
        except Exception:
            # The details go to the log only: an answer never carries a trace or an error text.
            log.exception("ingest: request to /v1/%s failed", endpoint)
            failed = Refused(500, "internal_error", "the request could not be handled; retry")
            status, body = failed.status, failed.body()
        self._metrics.requests.labels(endpoint=endpoint, code=str(status)).inc()
        return web.Response(
            status=status, body=body, content_type="application/json", headers=headers
        )

    async def _answer(
        self, request: web.Request, endpoint: Endpoint, headers: dict[str, str]
    ) -> tuple[int, bytes]:
        body = await _read_capped(request, self._max_body_bytes)
        if body is None:
            refused = Refused(
                413, "payload_too_large", f"the body is over {self._max_body_bytes} bytes"
            )
            return refused.status, refused.body()
        result = ingest_request(
            endpoint=endpoint,
            body=body,
            content_encoding=request.headers.get("Content-Encoding"),
            authorization=request.headers.get("Authorization"),
            keys=self._keys,
            max_body_bytes=self._max_body_bytes,
            now=self._clock(),
            limiter=self._limiter,
        )
        if isinstance(result, Refused):
            if result.retry_after_s is not None:
                headers["Retry-After"] = str(result.retry_after_s)
            return result.status, result.body()
        records = [Record(self._topic, key, value) for key, value in result.records]
        if records:
            # Shielded: a timeout answers 503 but leaves aiokafka's own futures alone; the
            # records may still land, and the SDK's retry is deduplicated on messageId.
            send = asyncio.ensure_future(self._producer.send(records))
            self._sends.add(send)
            send.add_done_callback(self._sent)
            try:
                await asyncio.wait_for(asyncio.shield(send), self._produce_timeout_s)
            except Exception as exc:
                log.warning("ingest: producing to %s failed: %r", self._topic, exc)
                refused = Refused(
                    503,
                    "unavailable",
                    f"the messages could not be stored ({type(exc).__name__}); retry later",
                )
                return refused.status, refused.body()
        self._metrics.messages.labels(result="valid").inc(len(records) - result.invalid)
        self._metrics.messages.labels(result="invalid").inc(result.invalid)
        return 200, SUCCESS_BODY

    def _sent(self, send: asyncio.Future[int]) -> None:
        self._sends.discard(send)
        if not send.cancelled():
            send.exception()  # retrieved here: a late failure was already answered with 503


def add_routes(app: web.Application, handler: IngestHandler) -> None:
    """Serve `handler` on `app` (on Faust's server, a View with `post` and `options` does)."""
    app.router.add_post(ROUTE, handler)
    app.router.add_route("OPTIONS", ROUTE, handler)


async def _read_capped(request: web.Request, limit: int) -> bytes | None:
    """The raw body, or None once it is known to be over `limit` (reading stops there)."""
    if request.content_length is not None and request.content_length > limit:
        return None
    body = bytearray()
    async for chunk in request.content.iter_any():
        body += chunk
        if len(body) > limit:
            return None
    return bytes(body)


async def serve_ingest(
    settings: Settings,
    *,
    kafka: KafkaConnection,
    host: str,
    port: int,
    registry: CollectorRegistry,
    clock: Callable[[], datetime],
    on_ready: Callable[[str], None],
) -> None:
    """`leadstream ingest`: the Tracking API and /metrics until SIGTERM or SIGINT.

    On a signal it stops accepting, lets requests in flight finish (their produces are
    acknowledged or answered 503), then stops the producer.
    """
    topics = Topics(settings.topic_prefix)
    producer = BatchProducer(kafka=kafka)
    try:
        # The input topic with the worker's partition count, if no worker has made it yet
        # (brokers that auto-create would use their own default count).
        await create_topics(kafka, [topics.raw], settings.partitions, settings.replication_factor)
        await producer.start()
    except Exception as exc:
        await producer.stop()
        raise IngestStartError(
            f"cannot reach the broker {settings.broker}: {kafka.failure(exc)}"
        ) from exc
    app = web.Application()
    handler = IngestHandler.from_settings(
        settings, producer=producer, registry=registry, clock=clock
    )
    add_routes(app, handler)

    async def metrics(request: web.Request) -> web.Response:
        return web.Response(body=render(registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

    app.router.add_get("/metrics", metrics)
    runner = web.AppRunner(app, **RUNNER_OPTIONS)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await runner.setup()
        try:
            await web.TCPSite(runner, host, port).start()
        except OSError as exc:
            raise IngestStartError(f"cannot serve on {host}:{port}: {exc.strerror or exc}") from exc
        on_ready(f"http://{host}:{port}")
        await stop.wait()
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        with contextlib.suppress(Exception):
            await runner.cleanup()
        # Every request has had its answer: a 200 was acknowledged, the rest got a 503. A
        # broker that is gone does not hold the exit for aiokafka's full delivery timeout.
        try:
            await asyncio.wait_for(producer.stop(), settings.ingest_produce_timeout_s)
        except TimeoutError:
            log.warning("ingest: stopped without the broker's last acknowledgements")
