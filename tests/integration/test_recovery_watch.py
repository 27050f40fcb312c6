"""A table recovery whose consumer passed changelog records over seeks back to them, and the
state it recovers is exact."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import wait_for
from tests.integration.segment import page
from tests.metrics_text import metric

pytestmark = pytest.mark.integration

FAULT = Path(__file__).parent / "fault_recovery"  # its sitecustomize drops changelog records


def _rewinds(metrics: str) -> float:
    return metric(metrics, "leadstream_recovery_rewinds_total")


@pytest.mark.timeout(120)
def test_a_recovery_stalled_on_records_passed_over_seeks_back_to_them_and_scores_on(
    make_worker: Any,
) -> None:
    first = make_worker()
    first.send(*(page(f"w-{n}", "/pricing", anon="anon-w") for n in range(3)))
    scored = first.read(first.topics.scored, lambda r: len(r) >= 3)
    assert [s["score"] for s in scored] == [10, 20, 30]
    assert _rewinds(first.metrics()) == 0
    assert first.kill(signal.SIGTERM, timeout_s=30) == 0, first.log()[-3000:]

    # The next worker's consumer passes over the first records it fetches of the leads
    # changelog: its recovery would wait for them for ever.
    second = make_worker(PYTHONPATH=str(FAULT), LEADSTREAM_RECOVERY_STALL_S="2")
    wait_for(lambda: "FAULT dropped" in second.log(), timeout_s=30, what="the fault to fire")
    second.send(page("w-3", "/pricing", anon="anon-w"))
    scored = second.read(second.topics.scored, lambda r: len(r) >= 4, timeout_s=45)
    assert [s["score"] for s in scored] == [10, 20, 30, 40]  # on the whole recovered state
    assert _rewinds(second.metrics()) >= 1
    assert "past records it never delivered, seeking back" in second.log()
