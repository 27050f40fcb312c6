"""`leadstream explain LEAD_ID` prints a lead's story from the topics of a running worker."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from streams.kafka_io import produce
from tests.integration.segment import identify, page, track

pytestmark = pytest.mark.integration


def explain(worker: Any, lead_id: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "streams", "explain", lead_id],
        capture_output=True,
        text=True,
        env={
            **os.environ,
            "LEADSTREAM_BROKER": worker.broker.url,
            "LEADSTREAM_TOPIC_PREFIX": worker.topics.prefix,
        },
        timeout=60,
    )


def test_explain_tells_the_story_of_a_merged_lead(make_worker: Any) -> None:
    worker = make_worker()
    worker.send(
        page("x-1", "/pricing", anon="anon-xa", days_ago=2),
        track("x-2", "Demo Requested", user="crm-x", days_ago=1),
        identify("x-3", anon="anon-xa", user="crm-x", email="rae@story.example", country="US"),
        track("x-4", "Whitepaper Downloaded", anon="anon-xa"),
    )
    (merge,) = worker.read(worker.topics.merged, lambda r: len(r) >= 1)
    # The merge and the whitepaper download reach the lead in either order (the merge takes
    # the identity graph's hops between partitions): once both have, it scores 100. Taking
    # the demo request in after the hot hand-off makes it an MQL, handed off again then.
    worker.read(
        worker.topics.scored,
        lambda r: any(s["lead_id"] == merge["lead_id"] and s["score"] == 100 for s in r),
    )
    routed = worker.read(worker.topics.routed, lambda r: len(r) >= 1)
    (handoff,) = [h for h in routed if h["reason"] == "hot_trigger"]
    fb = {
        "feedback_id": "x-fb",
        "lead_id": handoff["lead_id"],
        "status": "accepted",
        "occurred_at": datetime.now(UTC).isoformat(),
    }
    asyncio.run(
        produce(worker.broker.bootstrap, worker.topics.feedback, [(b"x", orjson.dumps(fb))])
    )
    worker.read(worker.topics.scored, lambda r: any(s["stage"] == "sal" for s in r))

    # Asked by the id of the lead that merged away, explain tells the surviving lead's story.
    (merged_id,) = merge["merged_lead_ids"]
    done = explain(worker, merged_id)

    assert done.returncode == 0, done.stderr
    text = done.stdout
    assert text.startswith(f"Lead {merged_id} (merged into {merge['lead_id']})")
    for expected in (
        "page view: /pricing",
        "event: Demo Requested",
        "event: Whitepaper Downloaded",
        f"merged {merged_id} into {merge['lead_id']} (same userId)",
        f"handed off to {handoff['rep_name']} ({handoff['rep_id']}): hot_trigger",
        "routing rule ",
        "alert to Uma US: rae@story.example downloaded a whitepaper",
        "-> sal: accepted by rep",
        "sales: accepted",
        "+60  engagement:demo-request",
    ):
        assert expected in text, (expected, text)
    # The story is in time order: the page view comes before the demo request.
    assert text.index("page view: /pricing") < text.index("event: Demo Requested")


def test_explain_says_so_when_a_lead_is_unknown(make_worker: Any) -> None:
    worker = make_worker()
    done = explain(worker, "ld_0000000000000000")
    assert done.returncode == 1
    assert "nothing on the topics for this lead" in done.stdout
