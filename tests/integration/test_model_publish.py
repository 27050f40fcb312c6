"""`leadstream model publish` against running workers: switch without a restart, rejections."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka.admin import AIOKafkaAdminClient

from schemas.model_record import text_sha256
from streams.kafka_io import produce, read_until
from streams.topics import Topics
from tests.integration.conftest import MODEL, Broker, wait_for
from tests.integration.segment import identify, page

pytestmark = pytest.mark.integration

#: The lead.model hop waits as long as the other hops do in these tests.
FAST_FEED = {"LEADSTREAM_MODEL_FETCH_WAIT_MS": "100"}


def model_file(directory: Path, version: str, text: str | None = None) -> Path:
    """The integration model under another version; only the version line is ours."""
    path = directory / f"model-{uuid.uuid4().hex[:6]}.yaml"
    body = re.sub(r"(?m)^version:.*$", f'version: "{version}"', text or MODEL.read_text())
    path.write_text(body, encoding="utf-8")
    return path


def leadstream(*args: str, broker: Broker, topics: Topics) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "streams", *args],
        capture_output=True,
        text=True,
        env={
            **os.environ,
            "LEADSTREAM_BROKER": broker.url,
            "LEADSTREAM_TOPIC_PREFIX": topics.prefix,
        },
        timeout=60,
    )


def lead(n: int, tag: str) -> list[dict[str, Any]]:
    """Events that put a new lead on leads.scored."""
    anon = f"anon-{tag}-{n}"
    return [
        identify(f"{tag}-{n}-1", anon=anon, email=f"p{n}@{tag}.example", country="US"),
        page(f"{tag}-{n}-2", "/pricing", anon=anon),
    ]


def versions(records: list[dict[str, Any]]) -> set[str]:
    return {r["model_version"] for r in records}


def of(tag: str, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The records caused by the events `lead(n, tag)` sent."""
    return [r for r in records if str(r.get("message_id", "")).startswith(f"{tag}-")]


def scored(worker: Any, tag: str) -> list[dict[str, Any]]:
    """leads.scored, once it holds a record caused by `tag` (and whatever came with it)."""
    return worker.read(worker.topics.scored, lambda r: bool(of(tag, r)))


def info(worker: Any, version: str) -> bool:
    """/metrics says the worker scores with integration v`version` (False until it serves)."""
    try:
        text = worker.metrics()
    except OSError:
        return False
    return f'leadstream_model_info{{name="integration",version="{version}"}} 1.0' in text


async def _describe(bootstrap: str, topic: str) -> tuple[int, str | None] | None:
    """(partitions, cleanup.policy) of `topic`, or None if it does not exist."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        if topic not in set(await admin.list_topics()):
            return None
        [described] = await admin.describe_topics([topic])
        policy = None
        try:
            from aiokafka.admin import ConfigResource, ConfigResourceType

            [configs] = await admin.describe_configs(
                [ConfigResource(ConfigResourceType.TOPIC, topic)]
            )
            for _, _, resources in configs.resources:
                policy = next((v for k, v, *_ in resources if k == "cleanup.policy"), policy)
        except Exception:  # brokers that do not describe configs (Tansu)
            pass
        return len(described["partitions"]), policy
    finally:
        await admin.close()


def test_a_published_model_reaches_a_running_worker_within_seconds_without_a_restart(
    make_worker: Any, tmp_path: Path
) -> None:
    worker = make_worker(model=model_file(tmp_path, "A"), **FAST_FEED)
    assert worker.proc is not None
    pid = worker.proc.pid
    worker.send(*lead(1, "before"))
    before = of("before", scored(worker, "before"))
    assert versions(before) == {"A"}
    # The worker made lead.model at start-up: one partition (compacted where supported).
    described = asyncio.run(_describe(worker.broker.bootstrap, worker.topics.model))
    assert described is not None and described[0] == 1
    if worker.broker.flavor == "kafka":
        assert described[1] == "compact"

    b_file = model_file(tmp_path, "B")
    done = leadstream("model", "publish", str(b_file), broker=worker.broker, topics=worker.topics)

    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == (
        f"published integration vB to {worker.topics.model}; running workers switch within seconds"
    )
    wait_for(lambda: info(worker, "B"), timeout_s=10, what="the worker to switch to vB")
    worker.send(*lead(2, "after"))
    everything = scored(worker, "after")
    assert versions(of("after", everything)) == {"B"}
    # Without --rescore, existing scores stay as they were: nothing new for the first lead.
    assert of("before", everything) == before

    assert worker.proc is not None and worker.proc.pid == pid and worker.proc.poll() is None
    assert not info(worker, "A")
    assert "leadstream_model_switches_total 1.0" in worker.metrics()
    assert "lead model: switched from integration vA to integration vB" in worker.log()

    published = asyncio.run(
        read_until(worker.broker.bootstrap, worker.topics.model, lambda r: len(r) >= 1, timeout_s=5)
    )
    assert [r.key for r in published] == [b"integration"]
    value = orjson.loads(published[0].value)
    assert value["text"] == b_file.read_text() and value["sha256"] == text_sha256(value["text"])
    assert value["rescore"] is False and value["published_by"]


def test_an_invalid_model_is_not_published(broker: Broker, tmp_path: Path) -> None:
    topics = Topics(prefix=f"bad{uuid.uuid4().hex[:6]}.")
    bad = model_file(tmp_path, "B")
    text = bad.read_text()
    bad.write_text(re.sub(r"(?m)^version:.*$", "version: {major: 2}", text))
    line = next(n for n, s in enumerate(text.splitlines(), 1) if s.startswith("version:"))

    done = leadstream("model", "publish", str(bad), broker=broker, topics=topics)

    assert done.returncode == 1
    assert done.stderr.startswith(f"{bad}:{line}: version: "), done.stderr
    assert "Traceback" not in done.stderr and done.stdout == ""
    assert asyncio.run(_describe(broker.bootstrap, topics.model)) is None


def test_publishing_to_an_unreachable_broker_fails_with_one_clear_line(tmp_path: Path) -> None:
    from streams.broker import free_port

    unreachable = Broker(f"127.0.0.1:{free_port()}", "kafka")
    done = leadstream(
        "model", "publish", str(model_file(tmp_path, "B")), broker=unreachable, topics=Topics()
    )

    assert done.returncode == 1
    assert done.stderr.startswith(f"leadstream: cannot publish to {unreachable.url}: ")
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr


def test_a_running_worker_rejects_bad_records_on_lead_model_and_keeps_its_model(
    make_worker: Any, tmp_path: Path
) -> None:
    worker = make_worker(model=model_file(tmp_path, "A"), **FAST_FEED)
    wait_for(lambda: info(worker, "A"), timeout_s=30, what="the worker to start")
    # Not what `model publish` would ever write: a hand-made record whose model is invalid.
    invalid = re.sub(r"(?m)^version:.*$", "version: {major: 2}", MODEL.read_text())
    line = next(n for n, s in enumerate(invalid.splitlines(), 1) if s.startswith("version:"))
    record = {
        "name": "integration",
        "version": "B",
        "text": invalid,
        "sha256": text_sha256(invalid),
        "published_at": "2026-11-26T09:00:00Z",
    }
    asyncio.run(
        produce(
            worker.broker.bootstrap,
            worker.topics.model,
            [(b"integration", b"\x00 not a model"), (b"integration", orjson.dumps(record))],
        )
    )

    wait_for(
        lambda: "leadstream_model_rejected_total 2.0" in worker.metrics(),
        timeout_s=10,
        what="both records rejected",
    )
    worker.send(*lead(1, "still"))
    assert versions(of("still", scored(worker, "still"))) == {"A"}
    assert worker.proc is not None and worker.proc.poll() is None
    log = worker.log()
    assert f"lead model record on {worker.topics.model}@0 rejected, keeping integration vA" in log
    assert (
        f"lead model integration vB on {worker.topics.model}@1 rejected, keeping integration vA: "
        f"{worker.topics.model}@1:{line}: version: "
    ) in log


def test_a_worker_started_after_a_publish_uses_the_published_model_not_its_file(
    make_worker: Any, tmp_path: Path
) -> None:
    worker = make_worker(model=model_file(tmp_path, "A"), start=False, **FAST_FEED)
    done = leadstream(
        "model",
        "publish",
        str(model_file(tmp_path, "B")),
        "--rescore",
        broker=worker.broker,
        topics=worker.topics,
    )
    assert done.returncode == 0, done.stderr
    assert "; they rescore stored leads with it" in done.stdout
    assert asyncio.run(_describe(worker.broker.bootstrap, worker.topics.model))[0] == 1  # type: ignore[index]

    worker.start()
    worker.send(*lead(1, "late"))

    assert versions(of("late", scored(worker, "late"))) == {"B"}
    assert info(worker, "B") and not info(worker, "A")
    assert (
        f"lead model: using integration vB published on {worker.topics.model} "
        "instead of the model file's integration vA"
    ) in worker.log()


def test_publish_with_rescore_replays_stored_leads_through_the_new_model(
    make_worker: Any, tmp_path: Path
) -> None:
    worker = make_worker(model=model_file(tmp_path, "A"), **FAST_FEED)
    anon = "anon-rescore-1"
    worker.send(
        identify("rs-1", anon=anon, email="rs@rescore.example", country="US"),
        page("rs-2", "/pricing", anon=anon),
        page("rs-3", "/pricing/plans", anon=anon),
    )
    first = worker.read(worker.topics.scored, lambda r: any(s["score"] == 20 for s in r))
    lead_id = next(s["lead_id"] for s in first if s["score"] == 20)

    # Model B: a pricing view is worth 25 instead of 10.
    text = MODEL.read_text().replace(
        '{id: pricing-view, page: "/pricing*", points: 10}',
        '{id: pricing-view, page: "/pricing*", points: 25}',
    )
    assert "points: 25" in text
    done = leadstream(
        "model",
        "publish",
        str(model_file(tmp_path, "B", text)),
        "--rescore",
        broker=worker.broker,
        topics=worker.topics,
    )
    assert done.returncode == 0, done.stderr

    def rescored(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [
            r
            for r in records
            if r["lead_id"] == lead_id
            and str(r["reason"] or "").startswith("rescored with model B")
        ] or [r for r in records if r["lead_id"] == lead_id and r["model_version"] == "B"]

    records = worker.read(worker.topics.scored, lambda r: bool(rescored(r)))
    [record] = rescored(records)
    # Nothing new was sent: the stored history (two pricing views) went through model B.
    assert record["model_version"] == "B"
    assert record["stage"] == record["previous_stage"] == "engaged"
    assert record["message_id"] == "rescore:B"
    assert record["score"] == 50 and record["previous_score"] == 20
    assert [(line["rule"], line["points"], line["count"]) for line in record["breakdown"]] == [
        ("engagement:pricing-view", 50, 2)
    ]
    wait_for(
        lambda: "leadstream_leads_rescored_total 1.0" in worker.metrics(),
        timeout_s=10,
        what="the rescore metric",
    )
