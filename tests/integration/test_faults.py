"""The crash-safety harness, small: a worker SIGKILLed three times loses nothing."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from loadtest.faults import FaultOptions, run_faults
from tests.integration.conftest import Broker

pytestmark = pytest.mark.integration


@pytest.mark.timeout(60)
def test_three_sigkills_lose_no_alert_or_handoff_and_leave_the_same_scores(
    broker: Broker, tmp_path: Path
) -> None:
    result = asyncio.run(
        run_faults(
            FaultOptions(
                events=2_000,
                kills=3,
                seed=1,
                leads=300,
                bootstrap=broker.bootstrap,
                flavor=broker.flavor,
                settle_timeout_s=8,
            ),
            bootstrap=broker.bootstrap,
            workdir=tmp_path,
        )
    )
    assert result["kills"] == 3
    assert result["expected_alerts"] > 0 and result["expected_handoffs"] > 0
    assert result["missing_alerts"] == 0, result["examples"]
    assert result["missing_handoffs"] == 0, result["examples"]
    assert result["score_mismatches"] == 0, result["examples"]
    assert result["result"] == "ok"
