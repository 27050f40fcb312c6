"""The HTTP ingest adapter over real HTTP with a fake producer: acks before answers, 503, the mount.

The error paths of the requests themselves are in tests/unit/test_ingest.py and, against a
broker, tests/integration/test_ingest.py.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry
from pydantic import SecretStr

from streams.app import create_app
from streams.ingest_http import RUNNER_OPTIONS, IngestHandler, add_routes
from streams.lead_model import load_model
from streams.producer import Record
from streams.settings import Settings
from tests.agents.test_agents import MODEL, FakeProducer

NOW = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)
AUTH = {"Authorization": "Basic " + base64.b64encode(b"wk_test:").decode()}
TRACK = {
    "messageId": "m-1",
    "anonymousId": "anon-1",
    "timestamp": "2026-11-26T08:59:00Z",
    "event": "Whitepaper Downloaded",
}


class FailingProducer:
    def __init__(self, exc: Exception) -> None:
        self.exc = exc

    async def send(self, records: Iterable[Record]) -> int:
        raise self.exc


class StalledProducer:
    async def send(self, records: Iterable[Record]) -> int:
        await asyncio.Event().wait()
        return 0


def settings(**overrides: Any) -> Settings:
    return Settings(
        write_keys=(SecretStr("wk_test"),),
        topic_prefix="http.",
        ingest_max_body_bytes=4096,
        ingest_produce_timeout_s=0.2,
        **overrides,
    )


async def client_for(producer: Any, registry: CollectorRegistry) -> TestClient[Any, Any]:
    app = web.Application()
    add_routes(
        app,
        IngestHandler.from_settings(
            settings(), producer=producer, registry=registry, clock=lambda: NOW
        ),
    )
    client: TestClient[Any, Any] = TestClient(TestServer(app, **RUNNER_OPTIONS))
    await client.start_server()
    return client


@pytest.fixture
async def served() -> AsyncIterator[tuple[TestClient[Any, Any], FakeProducer, CollectorRegistry]]:
    producer = FakeProducer()
    registry = CollectorRegistry()
    client = await client_for(producer, registry)
    yield client, producer, registry
    await client.close()


async def test_the_answer_waits_for_the_broker_acknowledgement(
    served: tuple[TestClient[Any, Any], FakeProducer, CollectorRegistry],
) -> None:
    client, producer, registry = served
    producer.hold = True
    request = asyncio.ensure_future(client.post("/v1/track", json=TRACK, headers=AUTH))
    await producer.until(lambda sent: len(sent) == 1)
    await asyncio.sleep(0.05)  # give a premature answer the chance to happen; none must
    assert not request.done()

    producer.release()
    response = await asyncio.wait_for(request, 5)

    assert response.status == 200
    assert await response.read() == b'{"success":true}'
    [record] = producer.sent
    assert (record.topic, record.key) == ("http.engagement.raw", b"anon-1")
    assert orjson.loads(record.value or b"") == {
        **TRACK,
        "type": "track",
        "receivedAt": "2026-11-26T09:00:00.000Z",
    }
    assert (
        registry.get_sample_value(
            "leadstream_ingest_requests_total", {"endpoint": "track", "code": "200"}
        )
        == 1.0
    )
    assert registry.get_sample_value("leadstream_ingest_messages_total", {"result": "valid"}) == 1.0


async def test_invalid_messages_are_produced_and_counted(
    served: tuple[TestClient[Any, Any], FakeProducer, CollectorRegistry],
) -> None:
    client, producer, registry = served
    batch = {"batch": [{**TRACK, "type": "track"}, {"type": "track", "messageId": "no-one"}]}
    response = await client.post("/v1/batch", json=batch, headers=AUTH)
    assert response.status == 200
    assert [orjson.loads(r.value or b"")["messageId"] for r in producer.sent] == ["m-1", "no-one"]
    assert (
        registry.get_sample_value("leadstream_ingest_messages_total", {"result": "invalid"}) == 1.0
    )


@pytest.mark.parametrize(
    ("producer", "reason"),
    [
        (FailingProducer(ConnectionError("broker down")), "ConnectionError"),
        (StalledProducer(), "TimeoutError"),
    ],
)
async def test_a_broker_failure_is_503_so_the_sdk_retries(producer: Any, reason: str) -> None:
    registry = CollectorRegistry()
    client = await client_for(producer, registry)
    try:
        response = await client.post("/v1/track", json=TRACK, headers=AUTH)
        assert response.status == 503
        assert await response.json() == {
            "success": False,
            "code": "unavailable",
            "message": f"the messages could not be stored ({reason}); retry later",
        }
        assert (
            registry.get_sample_value(
                "leadstream_ingest_requests_total", {"endpoint": "track", "code": "503"}
            )
            == 1.0
        )
        assert (
            registry.get_sample_value("leadstream_ingest_messages_total", {"result": "valid"})
            == 0.0
        )
    finally:
        await client.close()


async def test_a_key_over_its_rate_gets_429_with_retry_after_and_nothing_is_produced() -> None:
    producer = FakeProducer()
    registry = CollectorRegistry()
    app = web.Application()
    handler = IngestHandler.from_settings(
        settings(ingest_rate_per_s=0.5, ingest_burst=2),
        producer=producer,
        registry=registry,
        clock=lambda: NOW,  # the clock stands still: no refill
    )
    add_routes(app, handler)
    client: TestClient[Any, Any] = TestClient(TestServer(app, **RUNNER_OPTIONS))
    await client.start_server()
    try:
        for n in range(2):
            ok = await client.post("/v1/track", json={**TRACK, "messageId": f"m-{n}"}, headers=AUTH)
            assert ok.status == 200
        response = await client.post("/v1/track", json=TRACK, headers=AUTH)
        assert response.status == 429
        assert response.headers["Retry-After"] == "2"
        assert response.headers["Access-Control-Expose-Headers"] == "Retry-After"
        assert (await response.json())["code"] == "rate_limited"
        assert len(producer.sent) == 2
        assert (
            registry.get_sample_value(
                "leadstream_ingest_requests_total", {"endpoint": "track", "code": "429"}
            )
            == 1.0
        )
    finally:
        await client.close()


async def test_an_unexpected_error_is_a_json_500_without_details(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken_clock() -> datetime:
        raise RuntimeError("internal detail /etc/leadstream")

    registry = CollectorRegistry()
    app = web.Application()
    handler = IngestHandler.from_settings(
        settings(), producer=FakeProducer(), registry=registry, clock=broken_clock
    )
    add_routes(app, handler)
    client: TestClient[Any, Any] = TestClient(TestServer(app, **RUNNER_OPTIONS))
    await client.start_server()
    try:
        response = await client.post("/v1/track", json=TRACK, headers=AUTH)
        assert response.status == 500
        text = await response.text()
        assert orjson.loads(text) == {
            "success": False,
            "code": "internal_error",
            "message": "the request could not be handled; retry",
        }
        assert "internal detail" not in text and "Traceback" not in text
        assert "internal detail" in caplog.text  # the details are in the log only
        assert (
            registry.get_sample_value(
                "leadstream_ingest_requests_total", {"endpoint": "track", "code": "500"}
            )
            == 1.0
        )
    finally:
        await client.close()


async def test_a_declared_length_over_the_limit_is_413_and_nothing_is_produced(
    served: tuple[TestClient[Any, Any], FakeProducer, CollectorRegistry],
) -> None:
    client, producer, _ = served
    body = orjson.dumps({**TRACK, "properties": {"pad": "x" * 5000}})
    response = await client.post("/v1/track", data=body, headers=AUTH)
    assert response.status == 413
    assert (await response.json())["message"] == "the body is over 4096 bytes"

    async def chunked() -> AsyncIterator[bytes]:  # no Content-Length: counted while read
        for start in range(0, len(body), 1000):
            yield body[start : start + 1000]

    response = await client.post("/v1/track", data=chunked(), headers=AUTH)
    assert response.status == 413
    assert producer.sent == []


async def test_only_the_five_endpoints_are_served(
    served: tuple[TestClient[Any, Any], FakeProducer, CollectorRegistry],
) -> None:
    client, _, _ = served
    assert (await client.post("/v1/alias", json=TRACK, headers=AUTH)).status == 404
    assert (await client.get("/v1/track", headers=AUTH)).status == 405


async def test_analytics_js_paths_and_cors_work_from_a_browser(
    served: tuple[TestClient[Any, Any], FakeProducer, CollectorRegistry],
) -> None:
    client, producer, registry = served
    preflight = await client.options(
        "/v1/b",
        headers={"Origin": "https://www.example.com", "Access-Control-Request-Method": "POST"},
    )
    assert preflight.status == 204
    assert preflight.headers["Access-Control-Allow-Origin"] == "*"
    assert "Authorization" in preflight.headers["Access-Control-Allow-Headers"]

    # What analytics.js sends: text/plain (no preflight), the write key in the body.
    single = orjson.dumps({**TRACK, "type": "track", "writeKey": "wk_test"})
    batch = orjson.dumps(
        {"batch": [{**TRACK, "messageId": "m-2", "type": "track"}], "writeKey": "wk_test"}
    )
    for path, body in (("/v1/t", single), ("/v1/b", batch)):
        response = await client.post(path, data=body, headers={"Content-Type": "text/plain"})
        assert response.status == 200
        assert response.headers["Access-Control-Allow-Origin"] == "*"
    assert [orjson.loads(r.value or b"")["messageId"] for r in producer.sent] == ["m-1", "m-2"]
    assert (
        registry.get_sample_value(
            "leadstream_ingest_requests_total", {"endpoint": "batch", "code": "200"}
        )
        == 1.0
    )
    denied = await client.post("/v1/t", data=single.replace(b"wk_test", b"wk_nope"))
    assert denied.status == 401
    assert denied.headers["Access-Control-Allow-Origin"] == "*"  # so the page can read it


@pytest.mark.parametrize("keys", [(SecretStr("wk_test"),), ()])
async def test_the_worker_serves_the_ingest_only_with_write_keys(
    tmp_path: Path, keys: tuple[SecretStr, ...]
) -> None:
    producer = FakeProducer()
    app = create_app(
        start_offset=False,  # no broker to ask where a partition reads on
        settings=Settings(data_dir=tmp_path, partitions=4, topic_prefix="w.", write_keys=keys),
        model=load_model(MODEL),
        registry=CollectorRegistry(),
        clock=lambda: NOW,
        producer=producer,  # type: ignore[arg-type]
    )
    app.finalize()
    app.web.init_server()
    client: TestClient[Any, Any] = TestClient(TestServer(app.web.web_app))
    await client.start_server()
    try:
        page = {k: v for k, v in TRACK.items() if k != "event"} | {"properties": {"path": "/"}}
        response = await client.post("/v1/page", json=page, headers=AUTH)
        if keys:
            assert response.status == 200
            assert [r.topic for r in producer.sent] == ["w.engagement.raw"]
        else:
            assert response.status == 404
            assert producer.sent == []
        assert (await client.get("/metrics")).status == 200
        preflight = await client.options("/v1/t")
        assert preflight.status == (204 if keys else 404)
    finally:
        await client.close()
