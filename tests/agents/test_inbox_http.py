"""The rep inbox adapter over real HTTP with a fake producer: the page, the live stream, clicks.

The decisions behind it are in tests/unit/test_inbox.py; the page in a real browser against a
real worker and broker is tests/integration/test_inbox.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import ClientResponse, web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry
from pydantic import SecretStr

from schemas.decisions import RepAlert
from schemas.feedback import SalesFeedback
from streams.app import create_app
from streams.codec import decode_sales_feedback, encode
from streams.inbox import Inbox, token_for
from streams.inbox_http import InboxFeed, InboxHandler, Subscribers, add_routes
from streams.kafka_connection import KafkaConnection
from streams.lead_model import load_model
from streams.settings import Settings
from tests.agents.test_agents import MODEL, NOW, FakeProducer
from tests.agents.test_ingest_http import FailingProducer, StalledProducer

SECRET = "inbox-secret-for-tests"
# Uma US and Jun JP in tests/integration/lead_model.yaml; the handlers' clock is NOW.
UMA = token_for("us-rep", SECRET, expires_at=NOW + timedelta(days=30))
JUN = token_for("jp-rep", SECRET, expires_at=NOW + timedelta(days=30))
UMA_EXPIRED = token_for("us-rep", SECRET, expires_at=NOW)
FEEDBACK_TOPIC = "x.sfa.feedback"


def alert(n: int, *, rep: str = "us-rep") -> RepAlert:
    return RepAlert(
        alert_id=f"al_{rep}_{n}",
        rep_id=rep,
        rep_name="Uma US" if rep == "us-rep" else "Jun JP",
        rep_email=f"{rep}@sales.test",
        lead_id=f"ld_{rep}_{n}",
        email=f"person{n}@acme.example",
        company="Acme <Robotics>",
        trigger="whitepaper-download",
        message=f"Person {n} downloaded a whitepaper",
        score=40,
        model_version="test-1",
        event_at=NOW - timedelta(seconds=2),
        created_at=NOW,
    )


@dataclass
class Served:
    client: TestClient[Any, Any]
    feed: InboxFeed
    subscribers: Subscribers
    producer: Any

    def deliver(self, *alerts: RepAlert) -> None:
        """As if read from rep.alerts."""
        for a in alerts:
            self.feed.apply(encode(a))


async def serve(producer: Any, *, heartbeat_s: float = 15.0) -> Served:
    model = load_model(MODEL)
    inbox, subscribers = Inbox(), Subscribers()
    handler = InboxHandler(
        secret=SECRET,
        model=lambda: model,
        inbox=inbox,
        subscribers=subscribers,
        topic=FEEDBACK_TOPIC,
        producer=producer,
        clock=lambda: NOW,
        produce_timeout_s=0.2,
        heartbeat_s=heartbeat_s,
    )
    app = web.Application()
    add_routes(app, handler)
    client: TestClient[Any, Any] = TestClient(TestServer(app))
    await client.start_server()
    feed = InboxFeed(
        topic="x.rep.alerts",
        kafka=KafkaConnection(bootstrap="127.0.0.1:1"),
        inbox=inbox,
        subscribers=subscribers,
        fetch_wait_ms=100,
    )
    return Served(client, feed, subscribers, producer)


@pytest.fixture
async def served() -> AsyncIterator[Served]:
    s = await serve(FakeProducer())
    yield s
    await s.client.close()


async def next_event(response: ClientResponse, timeout_s: float = 5.0) -> tuple[str, Any]:
    """The next server-sent event: (event name, data) or ("comment", text); ("eof", None)."""
    while True:
        raw = await asyncio.wait_for(response.content.readuntil(b"\n\n"), timeout_s)
        if not raw:
            return "eof", None
        lines = raw.decode().strip("\n").split("\n")
        if lines[0].startswith(":"):
            return "comment", lines[0][1:].strip()
        fields = dict(line.split(": ", 1) for line in lines)
        if "event" in fields:
            return fields["event"], orjson.loads(fields["data"])


async def post_click(served: Served, **body: Any) -> ClientResponse:
    return await served.client.post("/inbox/feedback", data=orjson.dumps(body))


# ---------------------------------------------------------------- the page


async def test_the_page_is_the_reps_own_and_keeps_the_token_to_itself(served: Served) -> None:
    response = await served.client.get(f"/inbox?token={UMA}")

    assert response.status == 200
    assert response.content_type == "text/html"
    page = await response.text()
    assert "<title>Inbox · Uma US</title>" in page
    assert "Jun JP" not in page
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert response.headers["Cache-Control"] == "no-store"
    csp = response.headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "connect-src 'self'" in csp
    nonce = csp.split("'nonce-")[1].split("'")[0]
    assert f'<script nonce="{nonce}">' in page  # only the page's own script runs


@pytest.mark.parametrize(
    "query",
    [
        "",
        "?token=",
        f"?token={UMA[:-2]}",
        f"?token={token_for('us-rep', 'another-secret-x', expires_at=NOW + timedelta(days=1))}",
        f"?token={UMA_EXPIRED}",
    ],
)
async def test_a_bad_or_missing_token_is_401_with_a_sentence_and_no_data(
    served: Served, query: str
) -> None:
    served.deliver(alert(1))
    response = await served.client.get(f"/inbox{query}")

    assert response.status == 401
    page = await response.text()
    assert "This inbox link is not valid." in page
    assert "Uma" not in page and "Person 1" not in page
    events = await served.client.get(f"/inbox/events{query}")
    assert events.status == 401
    assert "Person 1" not in await events.text()


async def test_a_rep_name_is_escaped_in_the_page(tmp_path: Path) -> None:
    text = MODEL.read_text().replace("name: Uma US", 'name: "Uma <b>US</b>"')
    (tmp_path / "model.yaml").write_text(text)
    model = load_model(tmp_path / "model.yaml")
    app = web.Application()
    add_routes(
        app,
        InboxHandler(
            secret=SECRET,
            model=lambda: model,
            inbox=Inbox(),
            subscribers=Subscribers(),
            topic=FEEDBACK_TOPIC,
            producer=FakeProducer(),
            clock=lambda: NOW,
        ),
    )
    async with TestClient(TestServer(app)) as client:
        page = await (await client.get(f"/inbox?token={UMA}")).text()
    assert "Uma &lt;b&gt;US&lt;/b&gt;" in page and "<b>US</b>" not in page


# ---------------------------------------------------------------- the live stream


async def test_the_stream_sends_the_reps_recent_alerts_then_new_ones_live(served: Served) -> None:
    served.deliver(alert(1), alert(1, rep="jp-rep"), alert(2))

    response = await served.client.get(f"/inbox/events?token={UMA}")
    assert response.status == 200
    assert response.headers["Content-Type"] == "text/event-stream"

    # Oldest first: the page puts each one on top, so the newest ends up first.
    assert await next_event(response) == ("alert", _view(alert(1)))
    assert await next_event(response) == ("alert", _view(alert(2)))
    assert await next_event(response) == ("ready", {})

    served.deliver(alert(2, rep="jp-rep"), alert(2), alert(3))  # jun's, a re-delivery, a new one
    assert await next_event(response) == ("alert", _view(alert(3)))
    response.close()


async def test_an_idle_stream_gets_heartbeats_and_ends_on_shutdown() -> None:
    served = await serve(FakeProducer(), heartbeat_s=0.05)
    try:
        response = await served.client.get(f"/inbox/events?token={JUN}")
        assert await next_event(response) == ("ready", {})
        assert await next_event(response) == ("comment", "heartbeat")

        await served.feed.on_stop()  # the worker stops

        assert await next_event(response) == ("eof", None)
    finally:
        await served.client.close()


async def test_a_server_shutdown_ends_open_streams_promptly() -> None:
    served = await serve(FakeProducer())
    response = await served.client.get(f"/inbox/events?token={UMA}")
    assert await next_event(response) == ("ready", {})

    # aiohttp would wait up to 60 s for a handler still running; the stream ends at once.
    await asyncio.wait_for(served.client.close(), 5)
    assert served.subscribers.closed


# ---------------------------------------------------------------- clicks


async def test_accept_is_answered_only_once_the_feedback_is_acknowledged(served: Served) -> None:
    served.deliver(alert(1), alert(2))
    stream = await served.client.get(f"/inbox/events?token={UMA}")
    while (await next_event(stream))[0] != "ready":
        pass
    producer: FakeProducer = served.producer
    producer.hold = True

    request = asyncio.ensure_future(
        post_click(
            served, token=UMA, lead_id="ld_us-rep_1", alert_id="al_us-rep_1", status="accepted"
        )
    )
    await producer.until(lambda sent: len(sent) == 1)
    await asyncio.sleep(0.05)  # give a premature answer the chance to happen; none must
    assert not request.done()
    producer.release()
    response = await asyncio.wait_for(request, 5)

    assert response.status == 200
    answer = await response.json()
    assert answer["ok"] is True
    assert answer["decision"] == {"status": "accepted", "reason": None, "reason_text": None}
    [record] = producer.sent
    assert (record.topic, record.key) == (FEEDBACK_TOPIC, b"ld_us-rep_1")
    feedback = decode_sales_feedback(record.value)
    assert isinstance(feedback, SalesFeedback)
    assert feedback.model_dump(exclude={"feedback_id"}) == {
        "lead_id": "ld_us-rep_1",
        "rep_id": "us-rep",
        "status": "accepted",
        "reason": None,
        "reason_text": None,
        "amount": None,
        "currency": None,
        "occurred_at": NOW,
    }
    assert feedback.feedback_id == answer["feedback_id"]
    # The rep's other open pages show the answer too.
    event, data = await next_event(stream)
    assert (event, data["alert_id"], data["decision"]["status"]) == (
        "alert",
        "al_us-rep_1",
        "accepted",
    )
    # A page opened later shows it as answered.
    later = await served.client.get(f"/inbox/events?token={UMA}")
    first = await next_event(later)
    assert first[1]["decision"]["status"] == "accepted"
    stream.close()
    later.close()


async def test_a_double_click_produces_the_same_feedback_id(served: Served) -> None:
    served.deliver(alert(1))
    click = {"token": UMA, "lead_id": "ld_us-rep_1", "alert_id": "al_us-rep_1"}
    first = await (await post_click(served, **click, status="accepted")).json()
    second = await (await post_click(served, **click, status="accepted")).json()

    assert first["feedback_id"] == second["feedback_id"]
    assert [orjson.loads(r.value)["feedback_id"] for r in served.producer.sent] == [
        first["feedback_id"]
    ] * 2


async def test_reject_with_other_needs_the_text(served: Served) -> None:
    served.deliver(alert(1))
    click = {"token": UMA, "lead_id": "ld_us-rep_1", "alert_id": "al_us-rep_1"}

    refused = await post_click(served, **click, status="rejected", reason="other")
    assert refused.status == 400
    assert await refused.json() == {
        "ok": False,
        "message": "say why in a few words when the reason is 'other'",
    }
    assert served.producer.sent == []

    response = await post_click(
        served, **click, status="rejected", reason="other", reason_text="works for a competitor"
    )
    assert response.status == 200
    [record] = served.producer.sent
    assert orjson.loads(record.value) | {"feedback_id": "", "occurred_at": ""} == {
        "feedback_id": "",
        "lead_id": "ld_us-rep_1",
        "rep_id": "us-rep",
        "status": "rejected",
        "reason": "other",
        "reason_text": "works for a competitor",
        "amount": None,
        "currency": None,
        "occurred_at": "",
    }


async def test_a_rep_can_never_act_on_another_reps_lead(served: Served) -> None:
    served.deliver(alert(1, rep="jp-rep"))

    response = await post_click(
        served,
        token=UMA,
        lead_id="ld_jp-rep_1",
        alert_id="al_jp-rep_1",
        status="rejected",
        reason="duplicate",
    )

    assert response.status == 404
    assert await response.json() == {"ok": False, "message": "this alert is not in your inbox"}
    assert served.producer.sent == []


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        (b"{", 400, "the request is not JSON"),
        (b"[]", 400, "the request is not a JSON object"),
        (
            b'{"lead_id": "ld_us-rep_1", "alert_id": "al_us-rep_1", "status": "accepted"}',
            401,
            "this inbox link is not valid",
        ),
        (
            orjson.dumps(
                {
                    "token": UMA_EXPIRED,
                    "lead_id": "ld_us-rep_1",
                    "alert_id": "al_us-rep_1",
                    "status": "accepted",
                }
            ),
            401,
            "this inbox link is not valid",
        ),
        (b"x" * 17_000, 413, "the request is too large"),
    ],
)
async def test_unusable_posts_say_why_and_produce_nothing(
    served: Served, body: bytes, status: int, message: str
) -> None:
    served.deliver(alert(1))
    response = await served.client.post("/inbox/feedback", data=body)

    assert response.status == status
    assert await response.json() == {"ok": False, "message": message}
    assert served.producer.sent == []


@pytest.mark.parametrize("producer", [FailingProducer(ConnectionError("down")), StalledProducer()])
async def test_a_broker_failure_asks_the_rep_to_try_again(producer: Any) -> None:
    served = await serve(producer)
    try:
        served.deliver(alert(1))
        response = await post_click(
            served, token=UMA, lead_id="ld_us-rep_1", alert_id="al_us-rep_1", status="accepted"
        )
        assert response.status == 503
        assert (await response.json())["message"] == (
            "your answer could not be saved just now; try again"
        )
    finally:
        await served.client.close()


# ---------------------------------------------------------------- on the worker


@pytest.mark.parametrize("secret", [SECRET, None])
async def test_the_worker_serves_the_inbox_only_with_a_secret(
    tmp_path: Path, secret: str | None
) -> None:
    settings = Settings(
        data_dir=tmp_path,
        partitions=4,
        topic_prefix="w.",
        inbox_secret=SecretStr(secret) if secret else None,
    )
    producer = FakeProducer()
    app = create_app(
        start_offset=False,  # no broker to ask where a partition reads on
        settings=settings,
        model=load_model(MODEL),
        registry=CollectorRegistry(),
        clock=lambda: NOW,
        producer=producer,  # type: ignore[arg-type]
    )
    assert app.lifecycle is not None
    assert (app.lifecycle.inbox is not None) == bool(secret)
    app.finalize()
    app.web.init_server()
    client: TestClient[Any, Any] = TestClient(TestServer(app.web.web_app))
    await client.start_server()
    try:
        page = await client.get(f"/inbox?token={UMA}")
        assert page.status == (200 if secret else 404)
        if secret:
            assert "Inbox · Uma US" in await page.text()
            assert app.lifecycle.inbox is not None
            app.lifecycle.inbox.apply(encode(alert(1)))
            click = {"token": UMA, "lead_id": "ld_us-rep_1", "alert_id": "al_us-rep_1"}
            answer = await client.post("/inbox/feedback", json=click | {"status": "accepted"})
            assert answer.status == 200
            assert [r.topic for r in producer.sent] == ["w.sfa.feedback"]
            stream = await client.get(f"/inbox/events?token={UMA}")
            assert (await next_event(stream))[0] == "alert"
            stream.close()
        assert (await client.get("/metrics")).status == 200
    finally:
        await asyncio.wait_for(client.close(), 5)


def _view(a: RepAlert) -> dict[str, Any]:
    return {
        "alert_id": a.alert_id,
        "lead_id": a.lead_id,
        "email": a.email,
        "company": a.company,
        "message": a.message,
        "score": a.score,
        "trigger": a.trigger,
        "event_at": a.event_at.isoformat(),
        "created_at": a.created_at.isoformat(),
        "decision": None,
    }
