"""A real worker's health endpoints, metrics (checked by promtool) and JSON logs."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from tests.integration.conftest import Worker, wait_for
from tests.unit.test_observability_files import promtool


def test_a_worker_is_alive_then_ready_and_its_metrics_and_logs_pass(
    make_worker: Callable[..., Worker],
) -> None:
    email = "jane.doe@acme-robotics.example"
    worker = make_worker(LEADSTREAM_LOG_FORMAT="json")

    answers: list[tuple[int, dict[str, Any]]] = []

    def ready() -> bool:
        got = worker.get_json("/readyz")
        if got is not None:
            answers.append(got)
        return got is not None and got[0] == 200

    wait_for(ready, timeout_s=60, what="/readyz to answer 200")
    status, body = answers[-1]
    assert body["ready"] is True
    assert set(body["checks"]) == {"consumer_group", "intake_group", "table_recovery", "model"}
    assert body["checks"]["model"].startswith("ok: ")
    # Any answer before that (the web server starts before the consumer joins) said why.
    for status, body in answers[:-1]:
        assert status == 503 and body["ready"] is False
        assert any(not v.startswith("ok") for v in body["checks"].values()), body
    assert worker.get_json("/healthz") == (200, {"alive": True})

    worker.send(
        {
            "type": "identify",
            "messageId": "obs-1",
            "anonymousId": "anon-obs",
            "timestamp": "2026-11-20T09:00:00Z",
            "traits": {"email": email, "name": "Jane Doe"},
        },
        b"{not json",
    )
    lag = f'leadstream_intake_lag_records{{topic="{worker.topics.raw}"}}'
    wait_for(
        lambda: (
            'leadstream_events_dead_lettered_total{reason="invalid_json"} 1.0' in worker.metrics()
            and lag in worker.metrics()
        ),
        timeout_s=30,
        what="the events counted and the intake lag exported",
    )

    text = worker.metrics()
    assert 'leadstream_sla_steps_total{step="escalated"} 0.0' in text
    done = promtool("check", "metrics", stdin=text)
    assert done.returncode == 0 and not (done.stdout + done.stderr).strip(), (
        done.stdout + done.stderr
    )

    lines = [line for line in worker.log().splitlines() if line.startswith("{")]
    records = [json.loads(line) for line in lines]
    assert any(r["logger"].startswith("streams.") for r in records), lines[:5]
    assert all({"time", "level", "logger", "message"} <= set(r) for r in records)
    assert email not in worker.log()
