"""`leadstream forget EMAIL` against a running worker: a person known by two browsers, a
userId and an email (two merges) is erased everywhere, and comes back as a fresh lead."""

from __future__ import annotations

import asyncio
import hashlib
import os
import subprocess
import sys
from typing import Any

import orjson
import pytest

from streams.kafka_io import read_until
from tests.integration.conftest import PARTITIONS, wait_for
from tests.integration.segment import identify, page, track
from tests.pii import assert_no_pii

pytestmark = pytest.mark.integration

EMAIL = "Fay.Lee@Forget.example"
NAMES = ("Fayette", "Leeuwenhoek")


def forget(worker: Any, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "streams", "forget", *args, "--timeout", "30", "--no-progress"],
        capture_output=True,
        text=True,
        env={
            **os.environ,
            "LEADSTREAM_BROKER": worker.broker.url,
            "LEADSTREAM_TOPIC_PREFIX": worker.topics.prefix,
            "LEADSTREAM_PARTITIONS": str(PARTITIONS),
        },
        timeout=60,
    )


def live_entries(worker: Any) -> dict[bytes, bytes | None]:
    """The leads table as its changelog says it is now: the last value of each key."""
    records = asyncio.run(
        read_until(
            worker.broker.bootstrap,
            f"{worker.app_id}-leads-changelog",
            lambda _: False,
            timeout_s=1.5,
        )
    )
    latest: dict[bytes, bytes | None] = {}
    for r in records:
        latest[r.key] = r.value
    return latest


def test_forget_erases_a_merged_person_everywhere_and_they_come_back_fresh(
    make_worker: Any,
) -> None:
    # Every log level: the check below covers debug lines too.
    worker = make_worker(LEADSTREAM_LOG_LEVEL="debug")
    worker.send(
        # A UTM source that is the person's email (it happens): never a metric label.
        {
            **page("f-1", "/pricing", anon="anon-f", days_ago=3),
            "context": {"campaign": {"source": EMAIL}},
        },
        track("f-2", "Demo Requested", user="crm-f", days_ago=2),
        identify("f-3", anon="anon-f", user="crm-f", email=EMAIL, firstName="Fay", lastName="Lee"),
        page("g-1", "/pricing/plans", anon="anon-g", days_ago=1),
        identify("g-2", anon="anon-g", email=" fay.lee@forget.example"),
    )
    merges = worker.read(worker.topics.merged, lambda r: len(r) >= 2)
    lead_id = merges[-1]["lead_id"]
    merged_ids = {m for record in merges for m in record["merged_lead_ids"]}
    assert len(merged_ids) == 2
    keys = [b"anon-f", b"anon-g", b"crm-f", b"email:fay.lee@forget.example"]
    wait_for(
        lambda: all(live_entries(worker).get(k) for k in keys),
        timeout_s=15,
        what="the person's entries in the changelog",
    )

    done = forget(worker, f" {EMAIL} ", "--reason", "ticket 9")

    assert done.returncode == 0, done.stderr
    assert f"forgot lead {lead_id}" in done.stdout
    assert all(m in done.stdout for m in merged_ids)
    assert_no_pii(done.stdout + done.stderr, email=EMAIL, names=NAMES, where="the command")
    (answer,) = worker.read(worker.topics.forgotten, lambda r: len(r) >= 1)
    assert answer["found"] is True and answer["lead_id"] == lead_id
    assert set(answer["merged_lead_ids"]) == merged_ids
    assert answer["reason"] == "ticket 9"
    assert answer["identifier_sha256"] == hashlib.sha256(EMAIL.lower().encode()).hexdigest()

    # The lead and every key that pointed at it end as tombstones in the changelog, and no
    # entry left names the person.
    wait_for(
        lambda: all(live_entries(worker).get(k, b"") is None for k in keys),
        timeout_s=15,
        what="tombstones for every key of the person",
    )
    live = [v for v in live_entries(worker).values() if v is not None]
    for value in live:
        assert_no_pii(value.decode(), email=EMAIL, names=NAMES, where="the leads table")

    # They come back: a new browser with the same email and the old userId start fresh
    # leads, scored by the new events only, and nothing merges into the erased lead.
    worker.send(
        identify("h-1", anon="anon-h", email=EMAIL),
        track("h-2", "Whitepaper Downloaded", anon="anon-h"),
        track("h-3", "Demo Requested", user="crm-f"),
    )
    scored = worker.read(
        worker.topics.scored,
        lambda r: sum(1 for s in r if s["message_id"] in ("h-2", "h-3")) >= 2,
    )
    fresh = {s["message_id"]: s for s in scored if s["message_id"] in ("h-2", "h-3")}
    assert fresh["h-2"]["score"] == 30 and fresh["h-3"]["score"] == 60
    assert fresh["h-2"]["lead_id"] not in {lead_id, *merged_ids}
    # A lead id is a hash of the person key: the userId's fresh lead has the id its first
    # lead had (documented under Right to erasure), but none of the erased lead's score.
    assert fresh["h-3"]["lead_id"] != lead_id
    assert len(worker.read(worker.topics.merged, lambda r: len(r) >= 2, timeout_s=2)) == 2

    # Nobody by that email: said so, never dropped silently.
    unknown = forget(worker, "nobody@forget.example")
    assert unknown.returncode == 3, unknown.stderr
    assert "no lead is known by this email" in unknown.stdout
    answers = worker.read(worker.topics.forgotten, lambda r: len(r) >= 2)
    assert sorted(a["found"] for a in answers) == [False, True]  # any partition order
    assert not [a for a in answers if "forget.example" in orjson.dumps(a).decode()]

    # Whatever the worker logged (every level) and exports on /metrics never names them.
    assert_no_pii(worker.metrics(), email=EMAIL, names=NAMES, where="/metrics")
    assert_no_pii(worker.log(), email=EMAIL, names=NAMES, where="the worker's log")
