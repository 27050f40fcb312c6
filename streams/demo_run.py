"""`leadstream run`: embedded broker, one worker and a replayed demo scenario, with live alerts."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import subprocess
import sys
import time
import webbrowser
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
from aiokafka import ConsumerRecord
from pydantic import SecretStr

from streams import CORE
from streams.broker import (
    EmbeddedBroker,
    free_port,
    port_is_free,
    start_worker_process,
    stop_process_group,
)
from streams.inbox import inbox_url, token_for
from streams.kafka_io import create_topics, tail
from streams.lead_model import ModelError, load_model
from streams.producer import BatchProducer, Record
from streams.settings import Settings
from streams.topics import Topics

__all__ = ["DEMO_SCENARIO", "replay_time", "run_demo"]

DEMO_SCENARIO = Path(__file__).parent / "demo" / "scenario.jsonl"
#: The rep whose inbox the demo opens (the scenario's first alert is hers); else the first rep.
DEMO_INBOX_REP = "carla"
_PACE_S = 0.25
_LIVE_WINDOW = timedelta(hours=1)


def replay_time(original: datetime, *, newest: datetime, now: datetime) -> datetime:
    """When a scenario event happens on replay.

    History (older than an hour before the scenario's newest event) keeps its age, so
    "3 pricing views within 7 days" still reads as days; the live part happens as it is sent.
    """
    age = newest - original
    return now if age < _LIVE_WINDOW else now - age


def run_demo(
    *,
    port: int,
    web_port: int,
    scenario: Path | None,
    exit_after_alerts: int | None,
    timeout_s: float | None,
) -> int:
    data_dir = Path(".leadstream-data").resolve()
    data_dir.mkdir(exist_ok=True)
    if not port_is_free(port):
        port, old = free_port(), port
        print(f"port {old} is taken; the embedded broker uses {port}")
    if not port_is_free(web_port):
        web_port, old = free_port(), web_port
        print(f"port {old} is taken; /metrics is served on {web_port}")
    broker = EmbeddedBroker(port, log=data_dir / "broker.log")
    worker: subprocess.Popen[bytes] | None = None
    settings = Settings(
        broker=broker.url,
        broker_flavor="tansu",
        web_port=web_port,
        fetch_wait_ms=100,
        intake_fetch_wait_ms=100,
        session_timeout_s=6.0,
        heartbeat_interval_s=1.0,
        data_dir=data_dir / "worker",
    )
    if not settings.write_keys:  # a key of its own: the demo's web port listens on all hosts
        settings = settings.model_copy(update={"write_keys": (SecretStr(secrets.token_hex(8)),)})
    if settings.inbox_secret is None:  # a random one: links of another run do not open this one
        settings = settings.model_copy(update={"inbox_secret": SecretStr(secrets.token_hex(16))})
    # `kill PID`, `timeout` or a supervisor stop the demo as Ctrl-C does: the worker and the
    # broker run in process groups of their own, and would be left running.
    previous = signal.signal(signal.SIGTERM, _terminated)
    try:
        broker.start()
        print(f"broker   Tansu (embedded, memory storage) on {broker.bootstrap}")
        env = {**os.environ, **settings.to_env()}
        (data_dir / "worker.log").unlink(missing_ok=True)
        worker = start_worker_process(env, data_dir / "worker.log")
        print(f"worker   pid {worker.pid}, log {data_dir / 'worker.log'}")
        print(f"core     {CORE}")  # the worker imports the same package: the same choice
        print(f"metrics  http://127.0.0.1:{web_port}/metrics")
        print(
            f"ingest   http://127.0.0.1:{web_port}/v1/batch (Segment API), "
            f"write key {settings.write_keys[0].get_secret_value()}"
        )
        inbox = _inbox_link(settings)
        if inbox is not None:
            url, name = inbox
            print(f"inbox    {url} (rep {name})")
            _open_in_browser(url)
        print("Replaying the demo scenario; alerts appear below as reps would get them.")
        print("Press Ctrl-C to stop.\n", flush=True)
        lines = (scenario or DEMO_SCENARIO).read_bytes().splitlines()
        return asyncio.run(
            _demo(settings, broker.bootstrap, lines, worker, exit_after_alerts, timeout_s)
        )
    except KeyboardInterrupt:
        print("\nstopping ...")
        return 0
    except RuntimeError as exc:
        print(f"leadstream: {exc}", file=sys.stderr)
        return 1
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second one: the cleanup goes on
        if worker is not None:
            stop_process_group(worker, timeout_s=15)
        broker.stop()
        signal.signal(signal.SIGTERM, previous)
        print("stopped the worker and the broker.", flush=True)


def _terminated(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


async def _demo(
    settings: Settings,
    bootstrap: str,
    lines: list[bytes],
    worker: subprocess.Popen[bytes],
    exit_after_alerts: int | None,
    timeout_s: float | None,
) -> int:
    topics = Topics(settings.topic_prefix)
    await create_topics(bootstrap, topics.all(), settings.partitions)
    started = time.monotonic()
    alerts: list[dict[str, object]] = []

    def on_alert(record: ConsumerRecord) -> None:
        alert = orjson.loads(record.value)
        alerts.append(alert)
        print(_format_alert(alert, started), flush=True)

    def on_handoff(record: ConsumerRecord) -> None:
        print(_format_handoff(orjson.loads(record.value)), flush=True)

    watchers = [
        asyncio.create_task(tail(bootstrap, topics.alerts, on_alert)),
        asyncio.create_task(tail(bootstrap, topics.routed, on_handoff)),
    ]
    producer = BatchProducer(kafka=bootstrap)
    # Ctrl-C ends the demo from inside the loop, so that everything below stops in order
    # and within bounds (not by cancelling whatever happens to be awaited at that moment).
    interrupted = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, interrupted.set)
    try:
        docs = [orjson.loads(line) for line in lines if line.strip()]
        newest = max(_parse_ts(d["timestamp"]) for d in docs)
        for doc in docs:
            if interrupted.is_set():
                break
            at = replay_time(_parse_ts(doc["timestamp"]), newest=newest, now=datetime.now(UTC))
            doc["timestamp"] = at.isoformat().replace("+00:00", "Z")
            key = (doc.get("anonymousId") or doc.get("userId") or "").encode()
            await producer.send([Record(topics.raw, key or None, orjson.dumps(doc))])
            await asyncio.sleep(_PACE_S)
        while not interrupted.is_set():
            if worker.poll() is not None:
                raise RuntimeError(f"the worker exited with code {worker.returncode}; see its log")
            if exit_after_alerts is not None and len(alerts) >= exit_after_alerts:
                return 0
            if timeout_s is not None and time.monotonic() - started > timeout_s:
                print(f"timed out after {timeout_s:.0f} s with {len(alerts)} alerts")
                return 0 if exit_after_alerts is None else 1
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(interrupted.wait(), timeout=0.2)
        print("\nstopping ...", flush=True)
        return 0
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
        signal.signal(signal.SIGTERM, _terminated)  # the loop's removal set the default
        for task in watchers:
            task.cancel()
        await asyncio.gather(*watchers, return_exceptions=True)
        # Bounded: on Ctrl-C the broker may already be gone, and a producer with records
        # in flight would wait for it.
        with contextlib.suppress(Exception):
            await asyncio.wait_for(producer.stop(), timeout=5)


def _inbox_link(settings: Settings) -> tuple[str, str] | None:
    """The demo rep's inbox link and name; None if the model cannot be read (the worker says)."""
    assert settings.inbox_secret is not None
    try:
        model = load_model(settings.model_path)
    except ModelError:
        return None
    rep = model.rep(DEMO_INBOX_REP) or model.reps[0]
    expires_at = datetime.now(UTC) + timedelta(days=settings.inbox_link_days)
    token = token_for(rep.id, settings.inbox_secret.get_secret_value(), expires_at=expires_at)
    return inbox_url(settings.inbox_base_url(), token), rep.name


def _open_in_browser(url: str) -> None:
    """Open the inbox for someone at a desktop; on a headless machine the printed link is it."""
    if not sys.stdout.isatty():
        return  # run by a script or a test
    if sys.platform.startswith("linux") and not (
        os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    ):
        return
    with contextlib.suppress(Exception):  # no browser: the link is printed above
        webbrowser.open(url, new=2)


def _parse_ts(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _format_alert(alert: dict[str, object], started: float) -> str:
    event_at = datetime.fromisoformat(str(alert["event_at"]))
    created = datetime.fromisoformat(str(alert["created_at"]))
    lag = (created - event_at).total_seconds()
    who = " · ".join(str(alert[k]) for k in ("email", "company") if alert.get(k))
    return (
        f"[+{time.monotonic() - started:5.1f}s] ALERT to {alert['rep_name']} "
        f"<{alert['rep_email']}>: {alert['message']}\n"
        f"          lead {alert['lead_id']} · {who} · score {alert['score']} · "
        f"trigger {alert['trigger']} · {lag:.2f} s after the event"
    )


def _format_handoff(handoff: dict[str, Any]) -> str:
    recent = ", ".join(str(a["label"]) for a in handoff["recent_activity"][:5])

    def said(field: str) -> str:
        bucket, text = handoff[field], handoff.get(f"{field}_text")
        return f"{bucket} ({text!r})" if text else str(bucket)

    return (
        f"[hand-off] {handoff['lead_id']} to {handoff['rep_name']} ({handoff['routing_rule']}), "
        f"fit {handoff['grade']}: timeline {said('purchase_timeline')}, "
        f"budget {said('budget')}, authority {said('authority')}; "
        f"recent: {recent}"
    )
