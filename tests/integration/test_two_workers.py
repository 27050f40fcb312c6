"""Two workers in one group: one dies or stops, the other takes its partitions, nothing is lost."""

from __future__ import annotations

import signal
import time
from collections import Counter
from typing import Any

import pytest

from tests.integration.conftest import Worker, wait_for
from tests.integration.segment import page

pytestmark = pytest.mark.integration

PEOPLE = 24  # spread over the 4 partitions, so both workers hold some


def _round(worker: Worker, n: int) -> None:
    worker.send(*(page(f"r{n}-p{i}", "/pricing", anon=f"anon-{i}") for i in range(PEOPLE)))


def _finals(worker: Worker, *, score: int, timeout_s: float = 60) -> list[dict[str, Any]]:
    """leads.scored until every person's latest record has `score`."""

    def latest(docs: list[dict[str, Any]]) -> dict[str, int]:
        return {d["lead_id"]: d["score"] for d in docs}

    def done(docs: list[dict[str, Any]]) -> bool:
        return len(latest(docs)) == PEOPLE and set(latest(docs).values()) == {score}

    docs = worker.read(worker.topics.scored, done, timeout_s=timeout_s)
    off = {lead: s for lead, s in latest(docs).items() if s != score}
    assert done(docs), (
        f"{len(latest(docs))} of {PEOPLE} people scored; not at {score}: {off}\n"
        + "\n".join(line for line in worker.metrics().splitlines() if line.startswith(_SAID))
    )
    return docs


#: The worker's metrics a failed `_finals` shows: how far it got.
_SAID = (
    "leadstream_events_received_total",
    "leadstream_events_processed_total",
    "leadstream_events_deduplicated_total",
    "leadstream_handed_over_records_total",
    "leadstream_input_rewinds_total",
    "leadstream_intake_lag_records",
)


def _both_working(a: Worker, b: Worker) -> None:
    def processed(w: Worker) -> float:
        for line in w.metrics().splitlines():
            if line.startswith("leadstream_events_processed_total "):
                return float(line.split()[1])
        return 0.0

    wait_for(
        lambda: processed(a) > 0 and processed(b) > 0,
        timeout_s=30,
        what="both workers to process events",
    )


@pytest.mark.timeout(120)
def test_a_sigkilled_worker_s_partitions_move_to_the_other_with_no_loss(make_worker: Any) -> None:
    a, b = make_worker(), make_worker()
    _round(a, 1)
    _finals(a, score=10)
    _both_working(a, b)

    a.kill(signal.SIGKILL)
    _round(b, 2)
    _round(b, 3)
    # Every person's three pricing views count once each: the survivor took the dead
    # worker's partitions, recovered their state and read on from their committed offsets.
    _finals(b, score=30)
    assert b.proc is not None and b.proc.poll() is None


@pytest.mark.timeout(120)
def test_a_sigterm_commits_and_leaves_cleanly_so_the_other_replays_nothing(
    make_worker: Any,
) -> None:
    a, b = make_worker(), make_worker()
    _round(a, 1)
    _finals(a, score=10)
    _both_working(a, b)

    started = time.monotonic()
    code = a.kill(signal.SIGTERM, timeout_s=30)
    assert code == 0, a.log()[-3000:]
    assert time.monotonic() - started < 15, "the graceful stop took too long"

    _round(b, 2)
    scored = _finals(b, score=20)
    # A graceful stop writes its state and commits: the survivor does not process the first
    # round again, so no (lead, message) is scored twice.
    twice = [
        k for k, n in Counter((d["lead_id"], d["message_id"]) for d in scored).items() if n > 1
    ]
    assert twice == [], twice
