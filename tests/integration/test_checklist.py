"""`leadstream checklist` against the topics a running worker wrote."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import pytest

from tests.integration.conftest import MODEL
from tests.integration.segment import identify, page, track

pytestmark = pytest.mark.integration


def test_the_checklist_reads_handoffs_and_events_from_the_topics(make_worker: Any) -> None:
    worker = make_worker()
    worker.send(
        page("c-a1", "/pricing", anon="anon-ca"),
        identify("c-a2", anon="anon-ca", email="kim@check.example", country="US"),
        track("c-a3", "Whitepaper Downloaded", anon="anon-ca"),
    )
    worker.read(worker.topics.routed, lambda r: len(r) >= 1)

    done = subprocess.run(
        [sys.executable, "-m", "streams", "checklist", "--since", "1d", "--model", str(MODEL)],
        capture_output=True,
        text=True,
        env={
            **os.environ,
            "LEADSTREAM_BROKER": worker.broker.url,
            "LEADSTREAM_TOPIC_PREFIX": worker.topics.prefix,
        },
        timeout=60,
    )

    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "[x]  1. A written lead definition shared by sales and marketing: good" in out
    assert "the model file lead_model.yaml" in out
    # The hand-off came without timing, budget or authority answers.
    assert "timeline known on 0% of hand-offs in the last 1 day" in out
    assert "100% of hand-offs in the last 1 day carry the lead's recent activity" in out
    assert "no sales feedback on sfa.feedback in the last 1 day" in out
    assert "only online events in the last 1 day (2)" in out
    assert "[?] 15. " in out
    assert "of 15 good" in out
