"""Rep notifications over real servers: `leadstream notifier` processes on the test broker
deliver to a fake Slack endpoint, an aiohttp webhook receiver that verifies signatures, and
aiosmtpd as the SMTP server, all started here; receivers fail on cue to exercise retries,
the dead-letter topic, the circuit breaker and at-most-once delivery across restarts.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import uuid
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiosmtpd.controller import Controller

from schemas.decisions import RepAlert
from streams.broker import free_port, stop_process_group, wait_for_port
from streams.codec import encode
from streams.kafka_io import create_topics, produce, read_until
from streams.notify import verify
from streams.settings import Settings
from streams.topics import Topics
from tests.integration.conftest import PARTITIONS, Broker, wait_for

pytestmark = pytest.mark.integration

SECRET = "whsec_test_0123456789"


@dataclass
class Hit:
    name: str
    headers: dict[str, str]
    body: bytes
    verified: bool
    status: int


@dataclass
class Receivers:
    """Slack at /slack/NAME, webhooks at /hook/NAME, SMTP; what each received, in order.

    A webhook named `flaky-*` answers 503 twice, then 200; `down-*` always answers 500. An
    email to `flaky-*@` is refused with a 451 (try later) once.
    """

    base: str
    smtp_port: int
    slack: list[Hit] = field(default_factory=list)
    hooks: list[Hit] = field(default_factory=list)
    mails: list[EmailMessage] = field(default_factory=list)
    _seen: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    def slack_for(self, name: str) -> list[dict[str, Any]]:
        return [orjson.loads(h.body) for h in self.slack if h.name == name]

    def hooks_for(self, name: str) -> list[Hit]:
        return [h for h in self.hooks if h.name == name]

    def mails_to(self, address: str) -> list[EmailMessage]:
        return [m for m in self.mails if m["To"] == address]

    async def _slack(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.slack.append(Hit(request.match_info["name"], dict(request.headers), body, True, 200))
        return web.Response(text="ok")

    async def _hook(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        body = await request.read()
        verified = verify(
            SECRET,
            request.headers.get("X-Leadstream-Timestamp"),
            body,
            request.headers.get("X-Leadstream-Signature"),
            now=datetime.now(UTC),
        )
        self._seen[name] += 1
        if not verified:
            status, text = 401, "bad signature"
        elif name.startswith("down-"):
            status, text = 500, "receiver down"
        elif name.startswith("flaky-") and self._seen[name] <= 2:
            status, text = 503, "warming up"
        else:
            status, text = 200, "ok"
        self.hooks.append(Hit(name, dict(request.headers), body, verified, status))
        return web.Response(status=status, text=text)

    async def handle_RCPT(  # aiosmtpd's hook
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        self._seen[address] += 1
        if address.startswith("flaky-") and self._seen[address] == 1:
            return "451 4.3.0 mailbox busy, try later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = message_from_bytes(envelope.content, policy=policy.default)
        assert isinstance(message, EmailMessage)
        self.mails.append(message)
        return "250 Message accepted"


@pytest.fixture(scope="module")
def receivers() -> Iterator[Receivers]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    port = free_port()
    smtp_port = free_port()
    recv = Receivers(base=f"http://127.0.0.1:{port}", smtp_port=smtp_port)
    app = web.Application()
    app.router.add_post("/slack/{name}", recv._slack)
    app.router.add_post("/hook/{name}", recv._hook)
    runner = web.AppRunner(app, access_log=None)

    async def start() -> None:
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()

    asyncio.run_coroutine_threadsafe(start(), loop).result(timeout=10)
    smtp = Controller(recv, hostname="127.0.0.1", port=smtp_port)
    smtp.start()
    try:
        yield recv
    finally:
        smtp.stop()
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=5)


@dataclass
class Notifier:
    """A `leadstream notifier` process."""

    proc: subprocess.Popen[bytes]
    port: int
    log_path: Path

    def metrics(self) -> str:
        import urllib.request

        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5) as r:
            return str(r.read().decode())

    def metric(self, line_start: str) -> float:
        for line in self.metrics().splitlines():
            if line.startswith(line_start + " "):
                return float(line.rsplit(" ", 1)[1])
        raise AssertionError(f"no metric {line_start}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> int:
        stop_process_group(self.proc, timeout_s=20)
        return self.proc.returncode


@dataclass
class Setup:
    broker: Broker
    topics: Topics
    tmp: Path
    receivers: Receivers
    notifiers: list[Notifier] = field(default_factory=list)

    def channels(self, reps: dict[str, list[dict[str, str]]]) -> Path:
        path = self.tmp / "channels.yaml"
        doc = {
            "link_base": "http://inbox.example:6066/inbox",
            "smtp": {
                "host": "127.0.0.1",
                "port": self.receivers.smtp_port,
                "security": "none",
                "from": "Leadstream <alerts@leadstream.example>",
            },
            "reps": reps,
        }
        path.write_bytes(orjson.dumps(doc))  # JSON is YAML
        return path

    def start(self, channels: Path, *, group: str) -> Notifier:
        port = free_port()
        log_path = self.tmp / f"notifier-{len(self.notifiers)}.log"
        env = {
            **os.environ,
            **Settings(
                broker=self.broker.url,
                broker_flavor=self.broker.flavor,  # type: ignore[arg-type]
                app_id=group,
                topic_prefix=self.topics.prefix,
                partitions=PARTITIONS,
                web_host="127.0.0.1",
                session_timeout_s=2,
                heartbeat_interval_s=0.3,
                notifier_fetch_wait_ms=100,
                notifier_max_attempts=3,
                notifier_backoff_base_s=0.05,
                notifier_backoff_max_s=0.2,
                notifier_circuit_failures=3,
                notifier_circuit_cooldown_s=600,
            ).to_env(),
            "HOOK_SECRET": SECRET,
        }
        with log_path.open("ab") as log:
            proc = subprocess.Popen(
                [
                    *(sys.executable, "-m", "streams", "notifier"),
                    *("--channels", str(channels), "--web-port", str(port)),
                ],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        notifier = Notifier(proc, port, log_path)
        self.notifiers.append(notifier)
        wait_for(
            lambda: proc.poll() is not None or wait_for_port(port, timeout_s=0.1),
            timeout_s=30,
            what="leadstream notifier to listen",
        )
        assert proc.poll() is None, notifier.log()
        return notifier

    def send(self, *alerts: RepAlert) -> None:
        records = [(a.rep_id.encode(), encode(a)) for a in alerts]
        asyncio.run(produce(self.broker.bootstrap, self.topics.alerts, records))

    def dead_letters(self, count: int) -> list[dict[str, Any]]:
        records = asyncio.run(
            read_until(
                self.broker.bootstrap,
                self.topics.alerts_dlq,
                lambda recs: len(recs) >= count,
                timeout_s=20,
            )
        )
        return [orjson.loads(r.value) for r in records]


@pytest.fixture
def setup(
    broker: Broker, receivers: Receivers, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[Setup]:
    topics = Topics(prefix=f"n{uuid.uuid4().hex[:8]}.")
    asyncio.run(create_topics(broker.bootstrap, [topics.alerts], PARTITIONS))
    s = Setup(broker, topics, tmp_path, receivers)
    yield s
    failed = getattr(request.node, "rep_call", None)
    for notifier in s.notifiers:
        notifier.stop()
        if failed is not None and failed.failed:
            sys.stderr.write(f"\n----- {notifier.log_path.name} -----\n{notifier.log()[-6000:]}\n")


def alert(alert_id: str, rep_id: str, **changes: Any) -> RepAlert:
    now = datetime.now(UTC)
    values: dict[str, Any] = {
        "alert_id": alert_id,
        "rep_id": rep_id,
        "rep_name": "Carla Gomez",
        "rep_email": "carla@sales.example.com",
        "lead_id": f"ld_{alert_id}",
        "email": "jane.doe@acme-robotics.com",
        "company": "Acme Robotics",
        "trigger": "whitepaper-download",
        "message": "Jane Doe downloaded a whitepaper",
        "score": 78,
        "model_version": "1",
        "event_at": now - timedelta(seconds=2),
        "created_at": now,
    }
    values.update(changes)
    return RepAlert(**values)


def test_alerts_reach_slack_a_verifying_webhook_and_email_with_retries(setup: Setup) -> None:
    r = setup.receivers
    run = uuid.uuid4().hex[:6]
    slack, hook = f"carla-{run}", f"flaky-{run}"
    carla_mail, ben_mail = f"carla-{run}@sales.example.com", f"flaky-{run}@sales.example.com"
    channels = setup.channels(
        {
            "carla": [
                {"type": "slack", "webhook_url": f"{r.base}/slack/{slack}"},
                {"type": "webhook", "url": f"{r.base}/hook/{hook}", "secret": "${HOOK_SECRET}"},
                {"type": "email", "to": carla_mail},
            ],
            "ben": [{"type": "email", "to": ben_mail}],
        }
    )
    notifier = setup.start(channels, group=f"g{run}")
    hot = alert(f"a1{run}", "carla")
    setup.send(hot, alert(f"a2{run}", "ben", message="Max Weber requested a demo"))
    setup.send(alert(f"a3{run}", "nobody"))  # a rep without channels

    wait_for(
        lambda: (
            len(r.slack_for(slack)) == 1
            and any(h.status == 200 for h in r.hooks_for(hook))
            and len(r.mails_to(carla_mail)) == 1
            and len(r.mails_to(ben_mail)) == 1
        ),
        timeout_s=30,
        what="every channel to receive its alert",
    )

    # Slack: who, company, why hot, timeline, a link to the lead.
    (message,) = r.slack_for(slack)
    assert message["text"].startswith("Hot lead: Jane Doe downloaded a whitepaper")
    blocks = message["blocks"]
    fields = [f["text"] for f in blocks[1]["fields"]]
    assert "*Who*\njane.doe@acme-robotics.com" in fields
    assert "*Company*\nAcme Robotics" in fields
    assert blocks[2]["text"]["text"] == "*Why hot*\nJane Doe downloaded a whitepaper"
    assert blocks[3]["elements"][0]["text"].startswith("*Timeline*: event <!date^")
    assert blocks[4]["elements"][0]["url"] == f"http://inbox.example:6066/inbox?lead=ld_a1{run}"

    # Webhook: failed twice (503), retried, delivered once; every attempt signed anew.
    hits = r.hooks_for(hook)
    assert [h.status for h in hits] == [503, 503, 200]
    assert all(h.verified for h in hits)
    assert {h.headers["X-Leadstream-Alert-Id"] for h in hits} == {hot.alert_id}
    assert RepAlert.model_validate_json(hits[-1].body) == hot

    # Email: one each; ben's server said 451 once and the notifier tried again.
    (mail,) = r.mails_to(carla_mail)
    assert mail["Subject"] == "Hot lead: Jane Doe downloaded a whitepaper"
    assert mail["From"] == "Leadstream <alerts@leadstream.example>"
    assert f"Open the lead: http://inbox.example:6066/inbox?lead=ld_a1{run}" in mail.get_content()
    assert r.mails_to(ben_mail)[0]["Subject"] == "Hot lead: Max Weber requested a demo"

    wait_for(
        lambda: notifier.metric('leadstream_notifier_alerts_total{result="no_channels"}') == 1,
        timeout_s=10,
        what="the alert without channels to be counted",
    )
    delivered = 'leadstream_notifier_deliveries_total{channel="%s",outcome="delivered"}'
    assert notifier.metric(delivered % "slack") == 1
    assert notifier.metric(delivered % "webhook") == 1
    assert notifier.metric(delivered % "email") == 2
    assert notifier.metric('leadstream_notifier_retries_total{channel="webhook"}') == 2
    assert notifier.metric('leadstream_notifier_retries_total{channel="email"}') == 1
    assert notifier.metric('leadstream_notifier_circuits{channel="webhook",state="closed"}') == 1

    assert notifier.stop() == 0
    assert "leadstream notifier: stopped" in notifier.log()
    assert "; event loop uvloop" in notifier.log()  # LEADSTREAM_EVENT_LOOP=auto


def test_an_always_failing_receiver_dead_letters_and_opens_its_circuit(setup: Setup) -> None:
    r = setup.receivers
    run = uuid.uuid4().hex[:6]
    slack, hook = f"carla-{run}", f"down-{run}"
    channels = setup.channels(
        {
            "carla": [
                {"type": "webhook", "url": f"{r.base}/hook/{hook}", "secret": "${HOOK_SECRET}"},
                {"type": "slack", "webhook_url": f"{r.base}/slack/{slack}"},
            ]
        }
    )
    notifier = setup.start(channels, group=f"g{run}")
    first = alert(f"a1{run}", "carla")
    setup.send(first)

    (dead,) = setup.dead_letters(1)

    assert dead["alert"] == orjson.loads(encode(first))
    assert dead["rep_id"] == "carla"
    assert dead["channel"] == "webhook"
    assert dead["cause"] == "retries_exhausted"
    assert dead["attempts"] == 3
    assert dead["last_error"] == "HTTP 500: receiver down"
    assert len(r.hooks_for(hook)) == 3
    wait_for(
        lambda: (
            notifier.metric('leadstream_notifier_circuits{channel="webhook",state="open"}') == 1
        ),
        timeout_s=10,
        what="the webhook's circuit to show open",
    )

    # The circuit is open: the next alert is dead-lettered without knocking on the receiver,
    # and the rep's other channel is not held up by it.
    second = alert(f"a2{run}", "carla")
    setup.send(second)
    dead_letters = setup.dead_letters(2)
    assert dead_letters[1]["alert"]["alert_id"] == second.alert_id
    assert dead_letters[1]["cause"] == "circuit_open"
    assert dead_letters[1]["attempts"] == 0
    assert dead_letters[1]["last_error"] == (
        "circuit open after 3 consecutive failures; last: HTTP 500: receiver down"
    )
    assert len(r.hooks_for(hook)) == 3
    wait_for(lambda: len(r.slack_for(slack)) == 2, timeout_s=20, what="both alerts on Slack")
    assert (
        notifier.metric(
            'leadstream_notifier_dead_letters_total{cause="retries_exhausted",channel="webhook"}'
        )
        == 1
    )
    assert (
        notifier.metric(
            'leadstream_notifier_dead_letters_total{cause="circuit_open",channel="webhook"}'
        )
        == 1
    )


def test_a_restarted_notifier_does_not_deliver_again(setup: Setup) -> None:
    r = setup.receivers
    run = uuid.uuid4().hex[:6]
    slack, hook = f"carla-{run}", f"ok-{run}"
    mail = f"carla-{run}@sales.example.com"
    channels = setup.channels(
        {
            "carla": [
                {"type": "slack", "webhook_url": f"{r.base}/slack/{slack}"},
                {"type": "webhook", "url": f"{r.base}/hook/{hook}", "secret": "${HOOK_SECRET}"},
                {"type": "email", "to": mail},
            ]
        }
    )
    first = setup.start(channels, group=f"g{run}")
    setup.send(alert(f"a1{run}", "carla"))
    wait_for(
        lambda: (
            len(r.slack_for(slack)) == 1
            and len(r.hooks_for(hook)) == 1
            and len(r.mails_to(mail)) == 1
        ),
        timeout_s=30,
        what="the first alert on every channel",
    )
    assert first.stop() == 0

    # A new consumer group reads rep.alerts from the beginning, as after lost offsets: only
    # the delivered log stands between the first alert and a second delivery.
    second = setup.start(channels, group=f"h{run}")
    setup.send(alert(f"a2{run}", "carla", message="Jane Doe requested a demo"))
    wait_for(
        lambda: (
            len(r.slack_for(slack)) == 2
            and len(r.hooks_for(hook)) == 2
            and len(r.mails_to(mail)) == 2
        ),
        timeout_s=30,
        what="the second alert on every channel",
    )

    # Same partition (keyed by rep), so the first alert was read before the second.
    assert [m["text"].split(" (")[0] for m in r.slack_for(slack)] == [
        "Hot lead: Jane Doe downloaded a whitepaper",
        "Hot lead: Jane Doe requested a demo",
    ]
    assert [h.headers["X-Leadstream-Alert-Id"] for h in r.hooks_for(hook)] == [
        f"a1{run}",
        f"a2{run}",
    ]
    already = 'leadstream_notifier_deliveries_total{channel="%s",outcome="already_delivered"}'
    for kind in ("slack", "webhook", "email"):
        assert second.metric(already % kind) == 1
