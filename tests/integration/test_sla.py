"""The hand-off SLA on a real broker: nobody accepts -> reminder, escalation, reassignment;
an acceptance on sfa.feedback stops the clock; feedback for an unknown lead is dead-lettered."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from streams.kafka_io import produce
from tests.integration.conftest import MODEL
from tests.integration.segment import identify, track

pytestmark = pytest.mark.integration

#: Seconds, not minutes, so the test sees every step: remind at 1.2 s, escalate at 2.4 s,
#: reassign at 3.6 s.
SLA = """
sla:
  hot: {remind_after_minutes: 0.02, escalate_after_minutes: 0.04, reassign_after_minutes: 0.06}
  escalate_to: queue
"""


def model_with_sla(tmp_path: Path) -> Path:
    text = MODEL.read_text().replace('version: "test-1"', 'version: "test-sla"')
    text = text.replace(
        "  - {id: us-rep, name: Uma US, email: uma@sales.test, territory: {countries: [US]}}",
        "  - {id: us-rep, name: Uma US, email: uma@sales.test, territory: {countries: [US]}}\n"
        "  - {id: us-rep-2, name: Ulf US, email: ulf@sales.test, territory: {countries: [US]}}",
    )
    path = tmp_path / "sla-model.yaml"
    path.write_text(text + SLA, encoding="utf-8")
    return path


def hot(worker: Any, anon: str) -> None:
    worker.send(
        identify(f"{anon}-1", anon=anon, email=f"{anon}@sla.example", country="US"),
        track(f"{anon}-2", "Whitepaper Downloaded", anon=anon),
    )


def feedback(worker: Any, **fields: Any) -> None:
    fields.setdefault("occurred_at", datetime.now(UTC).isoformat())
    value = orjson.dumps(fields)
    asyncio.run(
        produce(
            worker.broker.bootstrap, worker.topics.feedback, [(fields["lead_id"].encode(), value)]
        )
    )


def test_nobody_accepts_reminder_escalation_then_reassignment(
    make_worker: Any, tmp_path: Path
) -> None:
    worker = make_worker(model=model_with_sla(tmp_path), LEADSTREAM_SLA_TICK_MS="100")
    hot(worker, "anon-s1")

    steps = worker.read(worker.topics.sla, lambda r: any(s["step"] == "reassigned" for s in r))
    assert [s["step"] for s in steps][:4] == ["started", "reminded", "escalated", "reassigned"]
    first = steps[0]["rep_id"]
    reassigned = next(s for s in steps if s["step"] == "reassigned")
    assert reassigned["to_rep_id"] not in (None, first)
    assert reassigned["reason"].endswith("did not accept within 0.06 minutes")
    alerts = worker.read(
        worker.topics.alerts, lambda r: any(a["trigger"] == "sla-reassigned" for a in r)
    )
    triggers = [(a["rep_id"], a["trigger"]) for a in alerts]
    assert (first, "whitepaper-download") in triggers
    assert (first, "sla-reminder") in triggers
    assert ("queue", "sla-escalation") in triggers
    assert (reassigned["to_rep_id"], "sla-reassigned") in triggers
    handoffs = worker.read(worker.topics.routed, lambda r: len(r) >= 2)
    assert [h["rep_id"] for h in handoffs] == [first, reassigned["to_rep_id"]]
    assert handoffs[1]["routing_rule"] == "sla_reassigned"


def test_an_acceptance_stops_the_clock_and_unknown_leads_are_dead_lettered(
    make_worker: Any, tmp_path: Path
) -> None:
    worker = make_worker(model=model_with_sla(tmp_path), LEADSTREAM_SLA_TICK_MS="100")
    hot(worker, "anon-s2")
    (handoff,) = worker.read(worker.topics.routed, lambda r: len(r) >= 1)

    feedback(
        worker,
        feedback_id="fb-1",
        lead_id=handoff["lead_id"],
        rep_id=handoff["rep_id"],
        status="accepted",
    )
    feedback(worker, feedback_id="fb-2", lead_id="ld_never_seen", status="accepted")

    steps = worker.read(worker.topics.sla, lambda r: any(s["step"] == "accepted" for s in r))
    accepted = next(s for s in steps if s["step"] == "accepted")
    assert accepted["time_to_accept_s"] is not None and accepted["time_to_accept_s"] < 10
    # No reassignment after the acceptance (the reassign step was due at 3.6 s).
    scored = worker.read(worker.topics.scored, lambda r: any(s["stage"] == "sal" for s in r))
    assert next(s for s in scored if s["stage"] == "sal")["reason"] == "accepted by rep"
    dead = worker.read(worker.topics.dlq, lambda r: any(d["reason"] == "unknown_lead" for d in r))
    (unknown,) = [d for d in dead if d["reason"] == "unknown_lead"]
    assert unknown["source_topic"] == worker.topics.feedback
    assert "ld_never_seen" in unknown["message"]
    later = worker.read(worker.topics.sla, lambda r: False, timeout_s=5)
    assert "reassigned" not in [s["step"] for s in later]
