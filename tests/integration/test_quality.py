"""`leadstream report quality` against the topics a running worker wrote."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import pytest

from tests.integration.segment import identify, page, track

pytestmark = pytest.mark.integration


def test_the_quality_report_reads_merges_handoffs_and_dead_letters(make_worker: Any) -> None:
    worker = make_worker()
    worker.send(
        # Two browsers of one person (same email): one merge.
        page("q-a1", "/pricing", anon="anon-qa"),
        identify("q-a2", anon="anon-qa", email="lee@qual.example", country="US"),
        identify("q-b1", anon="anon-qb", email="LEE@qual.example"),
        # A free-mail lead handed off with no timeline.
        identify("q-c1", anon="anon-qc", email="sam@gmail.com", country="US"),
        track("q-c2", "Whitepaper Downloaded", anon="anon-qc"),
        # Two bad inputs.
        b"{not json",
        b'{"type":"track","messageId":"x","event":"e","timestamp":"2026-01-01T00:00:00Z"}',
    )
    worker.read(worker.topics.merged, lambda r: len(r) >= 1)
    worker.read(worker.topics.routed, lambda r: len(r) >= 1)
    worker.read(worker.topics.dlq, lambda r: len(r) >= 2)

    done = subprocess.run(
        [sys.executable, "-m", "streams", "report", "quality", "--since", "1d"],
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
    assert "duplicates merged          1 leads in 1 merges (email 1)" in out
    assert "leads handed to sales      1" in out
    assert "  with unknown timeline    1 (100%)" in out
    assert "  with a free-mail address 1 (100%)" in out
    assert "dead letters               2" in out
    assert "  invalid_json             1" in out
    assert "  missing_identity         1" in out


def test_the_quality_report_says_when_the_broker_is_unreachable() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "streams", "report", "quality"],
        capture_output=True,
        text=True,
        env={**os.environ, "LEADSTREAM_BROKER": "kafka://127.0.0.1:1"},
        timeout=60,
    )
    assert done.returncode == 1
    assert "cannot read the topics from kafka://127.0.0.1:1" in done.stderr
    assert "Traceback" not in done.stderr
