"""End to end on a real broker: raw Segment messages in, alerts, hand-offs and DLQ out."""

from __future__ import annotations

import base64
from typing import Any

import jsonschema
import orjson
import pytest

from schemas.generate import render_all
from tests.integration.conftest import wait_for
from tests.integration.segment import identify, page, track, ts
from tests.metrics_text import metric

pytestmark = pytest.mark.integration

_SCHEMAS = {name: orjson.loads(body) for name, body in render_all().items()}


def _validate(records: list[dict[str, Any]], schema: str) -> None:
    for record in records:
        jsonschema.validate(record, _SCHEMAS[schema])


@pytest.mark.parametrize("intake", ["false", "true"], ids=["intake-in-worker", "intake-process"])
def test_anonymous_visitor_who_identifies_and_downloads_gets_one_alert_to_the_right_rep(
    make_worker: Any,
    intake: str,
) -> None:
    worker = make_worker(LEADSTREAM_INTAKE_PROCESS=intake)
    worker.send(
        page("m-1", "/pricing", anon="anon-1", days_ago=2),
        page("m-2", "/blog/routing", anon="anon-1", days_ago=1),
        identify(
            "m-3",
            anon="anon-1",
            user="crm-7",
            email=" Pat.Lee@Robotics.example ",
            name="Pat Lee",
            company="Robotics Inc",
            employees=120,
            title="VP Operations",
            country="US",
            purchase_timeline="this quarter",
        ),
        track("m-4", "Whitepaper Downloaded", anon="anon-1", user="crm-7"),
    )
    alerts = worker.read(worker.topics.alerts, lambda r: len(r) >= 1)
    handoffs = worker.read(worker.topics.routed, lambda r: len(r) >= 1)
    assert len(alerts) == 1, alerts
    alert = alerts[0]
    assert alert["rep_id"] == "us-rep"
    assert alert["trigger"] == "whitepaper-download"
    assert alert["email"] == "pat.lee@robotics.example"
    assert alert["message"] == "Pat Lee downloaded a whitepaper"
    # engagement: pricing 10 + whitepaper 30 (fit is the other axis: size 20 + executive 15)
    assert alert["score"] == 40

    assert len(handoffs) == 1
    handoff = handoffs[0]
    assert handoff["lead_id"] == alert["lead_id"]
    assert handoff["rep_id"] == "us-rep"
    assert handoff["purchase_timeline_text"] == "this quarter"
    assert handoff["purchase_timeline"] in ("within_1_month", "within_3_months")
    assert handoff["budget"] == "unknown" and handoff["authority"] == "unknown"
    labels = [a["label"] for a in handoff["recent_activity"]]
    assert labels[0] == "Whitepaper Downloaded"
    assert "/pricing" in labels and "/blog/routing" in labels  # made while anonymous
    assert sum(line["points"] for line in handoff["breakdown"]) == handoff["score"] == 40
    assert (handoff["fit"], handoff["grade"]) == (35, "B")

    scored = worker.read(worker.topics.scored, lambda r: any(s["score"] == 40 for s in r))
    assert [s["score"] for s in scored] == [10, 10, 40]
    assert [s["grade"] for s in scored] == ["D", "B", "B"]
    assert [s["stage"] for s in scored] == ["anonymous", "engaged", "engaged"]
    assert [s["reason"] for s in scored] == [None, "identified, with engagement", None]
    assert all(s["model_version"] == "test-1" for s in scored)
    _validate(alerts, "rep.alerts.json")
    _validate(handoffs, "leads.routed.json")
    _validate(scored, "leads.scored.json")

    metrics = worker.metrics()
    assert metric(metrics, "leadstream_alerts_total") == 1
    assert metric(metrics, "leadstream_events_valid_total") == 4
    assert metric(metrics, "leadstream_event_to_alert_seconds_count") == 1


_GOOD = '{"type":"page","messageId":"g-%d","anonymousId":"ok-%d","timestamp":"%s","properties":{"path":"/pricing"}}'

BAD_INPUTS: list[tuple[str, bytes | None]] = [
    ("empty_value", b""),
    ("too_large", b'{"pad":"' + b"x" * 70_000 + b'"}'),
    ("not_utf8", b"\xff\xfe\x00garbage"),
    ("invalid_json", b'{"type": "track", '),
    ("not_object", b'["track", "page"]'),
    (
        "unknown_type",
        b'{"type":"screen","messageId":"b","anonymousId":"a","timestamp":"2026-01-01T00:00:00Z"}',
    ),
    (
        "missing_field",
        b'{"type":"track","anonymousId":"a","event":"x","timestamp":"2026-01-01T00:00:00Z"}',
    ),
    (
        "wrong_type",
        b'{"type":"track","messageId":42,"anonymousId":"a","event":"x","timestamp":"2026-01-01T00:00:00Z"}',
    ),
    (
        "invalid_timestamp",
        b'{"type":"track","messageId":"b","anonymousId":"a","event":"x","timestamp":"last tuesday"}',
    ),
    (
        "missing_identity",
        b'{"type":"track","messageId":"b","event":"x","timestamp":"2026-01-01T00:00:00Z"}',
    ),
    (
        "invalid_value",
        b'{"type":"track","messageId":"","anonymousId":"a","event":"x","timestamp":"2026-01-01T00:00:00Z"}',
    ),
]


@pytest.mark.parametrize("intake", ["false", "true"], ids=["intake-in-worker", "intake-process"])
def test_bad_inputs_land_in_the_dlq_with_their_reason_and_good_ones_around_them_are_scored(
    make_worker: Any,
    intake: str,
) -> None:
    worker = make_worker(LEADSTREAM_INTAKE_PROCESS=intake)
    messages: list[bytes | None] = []
    for i, (_, bad) in enumerate(BAD_INPUTS):
        messages.append((_GOOD % (i, i, ts())).encode())
        messages.append(bad)
    messages.append((_GOOD % (99, 99, ts())).encode())
    worker.send(*messages)

    dead = worker.read(worker.topics.dlq, lambda r: len(r) >= len(BAD_INPUTS))
    by_reason = {d["reason"]: d for d in dead}
    assert len(dead) == len(BAD_INPUTS)
    assert sorted(by_reason) == sorted(reason for reason, _ in BAD_INPUTS)
    for reason, original in BAD_INPUTS:
        record = by_reason[reason]
        assert record["source_topic"] == worker.topics.raw
        assert record["offset"] >= 0 and record["message"]
        if record["value_encoding"] == "base64":
            assert base64.b64decode(record["value"]) == original
        else:
            assert record["value"].encode() == (original or b"")
    assert by_reason["not_utf8"]["value_encoding"] == "base64"
    assert "messageId" in by_reason["missing_field"]["message"]
    _validate(dead, "engagement.dlq.json")

    scored = worker.read(worker.topics.scored, lambda r: len(r) >= len(BAD_INPUTS) + 1)
    assert len(scored) == len(BAD_INPUTS) + 1  # every good message, none lost

    metrics = worker.metrics()
    for reason, _ in BAD_INPUTS:
        assert metric(metrics, "leadstream_events_dead_lettered_total", reason=reason) == 1
    assert metric(metrics, "leadstream_events_received_total") == 2 * len(BAD_INPUTS) + 1


def test_a_head_count_too_large_to_be_one_is_dropped_and_the_lead_goes_on(
    make_worker: Any,
) -> None:
    """Head counts past 64 bits, or past Python's int conversion limit, once stopped the
    state write or the intake (and every restart on them again). They are dropped now, as
    words are: the lead is scored, alerted and written."""
    worker = make_worker()
    worker.send(
        identify(
            "h-1", anon="anon-h", email="kim@shop.example", country="JP", employees="9" * 5000
        ),
        identify("h-2", anon="anon-h", employees="1180591620717411303424"),
        track("h-3", "Whitepaper Downloaded", anon="anon-h"),
        identify("h-4", anon="anon-h", employees="1,200"),
    )
    alerts = worker.read(worker.topics.alerts, lambda r: len(r) >= 1)
    assert alerts[0]["rep_id"] == "jp-rep"
    wait_for(
        lambda: (
            metric(worker.metrics(), "leadstream_events_processed_total") == 4
            and metric(worker.metrics(), "leadstream_state_bytes") > 0
        ),
        timeout_s=20,
        what="all four events applied and the lead written",
    )
    dead = [
        line
        for line in worker.metrics().splitlines()
        if line.startswith("leadstream_events_dead_lettered_total{")
    ]
    assert dead and all(line.endswith(" 0.0") for line in dead), dead
    scored = worker.read(worker.topics.scored, lambda r: len(r) >= 2)
    assert [s["score"] for s in scored] == [0, 30]
    assert worker.proc is not None and worker.proc.poll() is None


def test_a_resent_message_id_is_applied_once(make_worker: Any) -> None:
    worker = make_worker()
    hello = identify("r-1", anon="anon-r", email="sam@shop.example", country="JP")
    download = track("r-2", "Whitepaper Downloaded", anon="anon-r")
    worker.send(hello, download, download, download)
    worker.send(download, page("r-3", "/pricing", anon="anon-r"))  # an SDK retry, later

    scored = worker.read(worker.topics.scored, lambda r: any(s["score"] == 40 for s in r))
    assert [(s["score"], s["stage"]) for s in scored] == [
        (0, "known"),
        (30, "engaged"),
        (40, "engaged"),
    ]
    alerts = worker.read(worker.topics.alerts, lambda r: len(r) >= 1, timeout_s=5)
    assert len(alerts) == 1 and alerts[0]["rep_id"] == "jp-rep"
    wait_for(
        lambda: "leadstream_events_deduplicated_total 3.0" in worker.metrics(),
        timeout_s=10,
        what="three duplicates counted",
    )


@pytest.mark.parametrize("intake", ["false", "true"], ids=["intake-in-worker", "intake-process"])
def test_lead_state_survives_a_worker_crash(make_worker: Any, intake: str) -> None:
    """Table recovery after SIGKILL: the third pricing view in 7 days still fires."""
    worker = make_worker(LEADSTREAM_INTAKE_PROCESS=intake)
    worker.send(
        identify("c-1", anon="anon-c", email="kim@crash.example", country="US"),
        page("c-2", "/pricing", anon="anon-c", days_ago=3),
        page("c-3", "/pricing/teams", anon="anon-c", days_ago=2),
    )
    worker.read(worker.topics.scored, lambda r: any(s["score"] == 20 for s in r))
    worker.kill()  # SIGKILL: no commit, no flush

    restarted = make_worker(LEADSTREAM_INTAKE_PROCESS=intake)
    restarted.send(page("c-4", "/pricing", anon="anon-c"))
    alerts = restarted.read(restarted.topics.alerts, lambda r: len(r) >= 1)
    assert [(a["trigger"], a["score"]) for a in alerts] == [("pricing-3x-7d", 30)]
    scored = restarted.read(restarted.topics.scored, lambda r: any(s["score"] == 30 for s in r))
    # A batch whose offset was not committed may be replayed: its records come again,
    # identical, but no score is ever computed from lost state.
    assert scored[-1]["score"] == 30
    assert {s["score"] for s in scored} <= {0, 10, 20, 30}


def test_sigterm_writes_state_commits_and_exits_promptly(make_worker: Any) -> None:
    import signal
    import time

    worker = make_worker()
    worker.send(
        identify("t-1", anon="anon-t", email="lee@term.example", country="US"),
        page("t-2", "/pricing", anon="anon-t"),
    )
    worker.read(worker.topics.scored, lambda r: any(s["score"] == 10 for s in r))
    started = time.monotonic()
    code = worker.kill(signal.SIGTERM, timeout_s=30)
    assert time.monotonic() - started < 15, worker.log()[-3000:]
    assert code == 0, worker.log()[-3000:]

    # Everything was committed: a new worker replays nothing and carries on from the state.
    restarted = make_worker()
    restarted.send(page("t-3", "/pricing", anon="anon-t"))
    scored = restarted.read(restarted.topics.scored, lambda r: any(s["score"] == 20 for s in r))
    assert [s["score"] for s in scored] == [0, 10, 20]


def test_worker_creates_every_topic_with_the_configured_partitions(make_worker: Any) -> None:
    import asyncio
    import uuid

    from aiokafka.admin import AIOKafkaAdminClient

    from streams.topics import Topics
    from tests.integration.conftest import PARTITIONS

    fresh = Topics(prefix=f"fresh{uuid.uuid4().hex[:6]}.")
    worker = make_worker(LEADSTREAM_TOPIC_PREFIX=fresh.prefix)

    async def partitions() -> dict[str, int]:
        admin = AIOKafkaAdminClient(bootstrap_servers=worker.broker.bootstrap)
        await admin.start()
        try:
            existing = set(await admin.list_topics())
            names = [n for n in fresh.all() if n in existing]
            described = await admin.describe_topics(names) if names else []
            counts = dict.fromkeys(fresh.all(), 0)
            counts.update({d["topic"]: len(d["partitions"]) for d in described})
            return counts
        finally:
            await admin.close()

    wait_for(
        lambda: all(asyncio.run(partitions()).values()),
        timeout_s=30,
        what="the worker to create its topics",
    )
    assert asyncio.run(partitions()) == dict.fromkeys(fresh.all(), PARTITIONS)


def test_worker_runs_on_uvloop_by_default_and_on_asyncio_when_asked(make_worker: Any) -> None:
    """LEADSTREAM_EVENT_LOOP: the loop the worker says it runs on, and it scores on both."""
    import signal

    worker = make_worker()
    worker.send(page("l-1", "/pricing", anon="anon-l"))
    worker.read(worker.topics.scored, lambda r: any(s["score"] == 10 for s in r))
    assert "event loop: uvloop" in worker.log()
    assert worker.kill(signal.SIGTERM, timeout_s=30) == 0, worker.log()[-3000:]

    plain = make_worker(LEADSTREAM_EVENT_LOOP="asyncio")
    plain.send(page("l-2", "/pricing", anon="anon-l"))
    scored = plain.read(plain.topics.scored, lambda r: any(s["score"] == 20 for s in r))
    assert [s["score"] for s in scored] == [10, 20]
    assert "event loop: asyncio" in plain.log()
