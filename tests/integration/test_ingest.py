"""Segment HTTP ingest over real HTTP: Segment's own Python SDK, raw requests for every error.

`leadstream ingest` runs as a process of its own against the test broker; the last test
sends through a worker's web port and follows the events to an alert.
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import os
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from pydantic import SecretStr
from segment.analytics import Client
from segment.analytics.request import APIError

from streams.broker import free_port, stop_process_group, wait_for_port
from streams.kafka_io import create_topics, read_until
from streams.settings import Settings
from streams.topics import Topics
from tests.integration.conftest import PARTITIONS, Broker, wait_for
from tests.integration.segment import identify, page, track, ts

pytestmark = pytest.mark.integration

KEY = "wk_test_1"
LIMIT = 16 * 1024  # the ingest's body limit in these tests


@dataclass
class Ingest:
    """A `leadstream ingest` process on a free port, writing to its own topics."""

    url: str
    broker: Broker
    topics: Topics
    log_path: Path

    def post(
        self, path: str, body: bytes, *, key: str | None = KEY, **headers: str
    ) -> tuple[int, dict[str, Any]]:
        request = urllib.request.Request(f"{self.url}{path}", data=body, method="POST")
        request.add_header("Content-Type", "application/json")
        if key is not None:
            request.add_header("Authorization", _basic(key))
        for name, value in headers.items():
            request.add_header(name.replace("_", "-"), value)
        try:
            with urllib.request.urlopen(request, timeout=20) as response:
                return response.status, orjson.loads(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, orjson.loads(exc.read())

    def raw(self, done: Callable[[list[dict[str, Any]]], bool]) -> list[tuple[bytes, Any]]:
        """(key, parsed value) of every record on engagement.raw once `done` holds."""
        records = asyncio.run(
            read_until(
                self.broker.bootstrap,
                self.topics.raw,
                lambda recs: done([_parsed(r.value) for r in recs]),
                timeout_s=30,
            )
        )
        return [(r.key, _parsed(r.value)) for r in records]

    def metrics(self) -> str:
        with urllib.request.urlopen(f"{self.url}/metrics", timeout=5) as response:
            return str(response.read().decode())


def _basic(key: str) -> str:
    return "Basic " + base64.b64encode(f"{key}:".encode()).decode()


def _parsed(value: bytes) -> Any:
    try:
        return orjson.loads(value)
    except orjson.JSONDecodeError:
        return value


def _ids(records: list[Any]) -> list[str]:
    return [r["messageId"] for r in records if isinstance(r, dict) and "messageId" in r]


@pytest.fixture(scope="module")
def ingest(broker: Broker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ingest]:
    topics = Topics(prefix=f"i{uuid.uuid4().hex[:8]}.")
    asyncio.run(create_topics(broker.bootstrap, [topics.raw], PARTITIONS))
    port = free_port()
    log_path = tmp_path_factory.mktemp("ingest") / "ingest.log"
    env = {
        **os.environ,
        **Settings(
            broker=broker.url,
            topic_prefix=topics.prefix,
            partitions=PARTITIONS,
            web_host="127.0.0.1",
            write_keys=(SecretStr(KEY), SecretStr("wk_test_2")),
            ingest_max_body_bytes=LIMIT,
        ).to_env(),
    }
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "streams", "ingest", "--port", str(port)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_for(
            lambda: proc.poll() is not None or wait_for_port(port, timeout_s=0.1),
            timeout_s=30,
            what="leadstream ingest to listen",
        )
        assert proc.poll() is None, log_path.read_text()
        yield Ingest(f"http://127.0.0.1:{port}", broker, topics, log_path)
    finally:
        stop_process_group(proc, timeout_s=10)


def test_segment_sdk_calls_arrive_on_engagement_raw(ingest: Ingest) -> None:
    sent = []
    for gzipped in (False, True):
        client = Client(KEY, host=ingest.url, sync_mode=True, gzip=gzipped)
        suffix = "gz" if gzipped else "plain"
        for ok, msg in (
            client.identify(
                f"crm-{suffix}",
                {"email": "pat.lee@robotics.example", "company": "Robotics Inc"},
                anonymous_id=f"anon-{suffix}",
            ),
            client.page(
                anonymous_id=f"anon-{suffix}", name="Pricing", properties={"path": "/pricing"}
            ),
            client.track(anonymous_id=f"anon-{suffix}", event="Whitepaper Downloaded"),
        ):
            assert ok
            sent.append(msg)
    ids = [m["messageId"] for m in sent]

    records = ingest.raw(lambda recs: set(ids) <= set(_ids(recs)))

    mine = {value["messageId"]: (key, value) for key, value in records if value["messageId"] in ids}
    assert set(mine) == set(ids)
    for msg in sent:
        key, value = mine[msg["messageId"]]
        assert key == msg["anonymousId"].encode()
        assert value["type"] == msg["type"]
        # The SDK stamps its batches with sentAt: the device clock is corrected, as Segment
        # does (here one clock, so by the request's latency), the SDK's own time kept.
        assert value["originalTimestamp"] == msg["timestamp"]
        shift = _at(value["timestamp"]) - _at(msg["timestamp"])
        assert abs(shift.total_seconds()) < 10, shift
        assert value["context"]["library"]["name"] == "analytics-python"
        assert value["receivedAt"].endswith("Z")
        assert "writeKey" not in value  # the SDK sends it in the body too
    assert mine[ids[0]][1]["traits"]["email"] == "pat.lee@robotics.example"
    assert mine[ids[2]][1]["event"] == "Whitepaper Downloaded"


def test_the_ingest_says_it_runs_on_uvloop(ingest: Ingest) -> None:
    assert "; event loop uvloop" in ingest.log_path.read_text()  # LEADSTREAM_EVENT_LOOP=auto


def test_the_sdk_is_told_when_its_key_is_wrong(ingest: Ingest) -> None:
    client = Client("wk_wrong", host=ingest.url, sync_mode=True)
    with pytest.raises(APIError) as raised:
        client.track(anonymous_id="anon-x", event="Demo Requested")
    assert (raised.value.status, raised.value.code) == (401, "unauthorized")
    assert raised.value.message == "the write key is not valid"


def test_every_error_path_answers_clearly_and_produces_nothing(ingest: Ingest) -> None:
    refused = track("e-refused", "Demo Requested", anon="anon-e")
    body = orjson.dumps(refused)

    assert ingest.post("/v1/track", body, key="wk_nope") == (
        401,
        {"success": False, "code": "unauthorized", "message": "the write key is not valid"},
    )
    status, answer = ingest.post("/v1/track", body, key=None)
    assert (status, answer["code"]) == (401, "unauthorized")
    assert answer["message"].startswith("no write key: use HTTP Basic auth")

    status, answer = ingest.post("/v1/track", b"not gzip at all", Content_Encoding="gzip")
    assert (status, answer["code"]) == (400, "invalid_request")
    assert answer["message"].startswith("the body is not valid gzip")
    status, answer = ingest.post("/v1/track", gzip.compress(body)[:-10], Content_Encoding="gzip")
    assert (status, answer["message"]) == (400, "the gzip body is truncated")

    status, answer = ingest.post("/v1/batch", b'{"batch": [{"type": "track",')
    assert (status, answer["code"]) == (400, "invalid_request")
    assert answer["message"].startswith("the body is not valid JSON: ")
    assert ingest.post("/v1/batch", b'{"batch": {"no": "list"}}')[1]["message"] == (
        "batch must be a list of messages"
    )
    assert ingest.post("/v1/page", body)[1]["message"] == (
        'type "track" does not match the endpoint /v1/page'
    )

    oversize = orjson.dumps({"batch": [refused | {"properties": {"pad": "x" * LIMIT}}]})
    assert ingest.post("/v1/batch", oversize) == (
        413,
        {
            "success": False,
            "code": "payload_too_large",
            "message": f"the body is over {LIMIT} bytes",
        },
    )
    bomb = gzip.compress(b'{"batch": [' + b" " * (LIMIT * 50) + b"]}")
    assert len(bomb) < LIMIT
    assert ingest.post("/v1/batch", bomb, Content_Encoding="gzip") == (
        413,
        {
            "success": False,
            "code": "payload_too_large",
            "message": f"the body is over {LIMIT} bytes once decompressed",
        },
    )

    # A good request afterwards: once it is on the topic, nothing refused is before it.
    assert ingest.post("/v1/track", orjson.dumps(track("e-after", "x", anon="anon-e"))) == (
        200,
        {"success": True},
    )
    records = ingest.raw(lambda recs: "e-after" in _ids(recs))
    assert "e-refused" not in _ids([value for _, value in records])

    metrics = ingest.metrics()
    assert 'leadstream_ingest_requests_total{code="401",endpoint="track"} 2.0' in metrics
    assert 'leadstream_ingest_requests_total{code="413",endpoint="batch"} 2.0' in metrics


def test_a_partially_invalid_batch_is_accepted_and_forwarded_whole(ingest: Ingest) -> None:
    batch = {
        "batch": [
            page("p-ok-1", "/pricing", anon="anon-p"),
            {"type": "track", "messageId": "p-no-one", "event": "x", "timestamp": ts()},
            "not a message",
            track("p-ok-2", "Demo Requested", user="crm-p"),
        ],
        "context": {"ip": "10.1.2.3"},
    }

    assert ingest.post("/v1/batch", orjson.dumps(batch)) == (200, {"success": True})

    ids = {"p-ok-1", "p-no-one", "p-ok-2"}
    records = ingest.raw(lambda recs: ids <= set(_ids(recs)) and "not a message" in recs)
    by_id = {v["messageId"]: (k, v) for k, v in records if _ids([v]) and v["messageId"] in ids}
    assert by_id["p-ok-1"][0] == b"anon-p"
    assert by_id["p-ok-2"][0] == b"crm-p"
    assert by_id["p-no-one"][0] is None  # invalid: the intake dead-letters it
    assert all(v["context"] == {"ip": "10.1.2.3"} for _, v in by_id.values())
    assert "not a message" in [v for _, v in records]
    metrics = ingest.metrics()
    assert 'leadstream_ingest_messages_total{result="invalid"} 2.0' in metrics


def test_ingest_refuses_to_start_without_write_keys(broker: Broker) -> None:
    env = {k: v for k, v in os.environ.items() if k != "LEADSTREAM_WRITE_KEYS"}
    done = subprocess.run(
        [sys.executable, "-m", "streams", "ingest", "--port", str(free_port())],
        capture_output=True,
        text=True,
        env={**env, "LEADSTREAM_BROKER": broker.url},
        timeout=30,
    )
    assert done.returncode == 2
    assert "no write keys: set LEADSTREAM_WRITE_KEYS" in done.stderr
    assert "does not run open" in done.stderr


def _at(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp)


def test_a_device_clock_a_year_ahead_is_corrected_before_the_lead_sees_it(
    make_worker: Any,
) -> None:
    """A phone whose clock runs a year ahead: its events are scored at the time the server
    received them (less what the device says passed before it sent), not a year from now."""
    worker = make_worker(LEADSTREAM_WRITE_KEYS="wk_worker")
    wait_for(lambda: wait_for_port(worker.web_port, timeout_s=0.1), timeout_s=60, what="web port")
    ahead = datetime.now(UTC) + timedelta(days=365)
    body = {
        "sentAt": ahead.isoformat(),
        "batch": [
            identify(
                "y-1", anon="anon-y", email="yu@robotics.example", country="JP", days_ago=-365
            ),
            track("y-2", "Whitepaper Downloaded", anon="anon-y", days_ago=-365),
        ],
    }
    request = urllib.request.Request(
        f"http://127.0.0.1:{worker.web_port}/v1/batch", data=orjson.dumps(body), method="POST"
    )
    request.add_header("Authorization", _basic("wk_worker"))
    with urllib.request.urlopen(request, timeout=20) as response:
        assert response.status == 200

    alerts = worker.read(worker.topics.alerts, lambda r: len(r) >= 1)
    occurred = _at(alerts[0]["event_at"])
    assert abs((occurred - datetime.now(UTC)).total_seconds()) < 600, occurred


def test_sdk_to_the_worker_port_ends_in_an_alert_and_bad_messages_in_the_dlq(
    make_worker: Any,
) -> None:
    worker = make_worker(LEADSTREAM_WRITE_KEYS="wk_worker")
    wait_for(lambda: wait_for_port(worker.web_port, timeout_s=0.1), timeout_s=60, what="web port")
    url = f"http://127.0.0.1:{worker.web_port}"
    client = Client("wk_worker", host=url, sync_mode=True, gzip=True)
    client.identify(
        "crm-9",
        {"email": "kim@robotics.example", "name": "Kim Park", "employees": 120, "country": "US"},
        anonymous_id="anon-9",
    )
    client.track("crm-9", "Whitepaper Downloaded", anonymous_id="anon-9")
    bad = {"batch": [{"type": "track", "messageId": "w-bad", "event": "x", "timestamp": ts()}]}
    request = urllib.request.Request(f"{url}/v1/batch", data=orjson.dumps(bad), method="POST")
    request.add_header("Authorization", _basic("wk_worker"))
    with urllib.request.urlopen(request, timeout=20) as response:
        assert response.status == 200

    alerts = worker.read(worker.topics.alerts, lambda r: len(r) >= 1)
    dead = worker.read(worker.topics.dlq, lambda r: len(r) >= 1)

    assert [(a["trigger"], a["message"]) for a in alerts] == [
        ("whitepaper-download", "Kim Park downloaded a whitepaper")
    ]
    assert alerts[0]["email"] == "kim@robotics.example"
    assert [(d["reason"], orjson.loads(d["value"])["messageId"]) for d in dead] == [
        ("missing_identity", "w-bad")
    ]
    assert "ingest: Segment HTTP API on" in worker.log()
