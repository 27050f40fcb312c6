"""Readiness: ready only when every check passes, and the body names the one that fails."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from types import SimpleNamespace
from typing import Any

import pytest

from streams.health import Probes, readiness, worker_probes

READY = Probes(group_assigned=True, intake_assigned=True, recovery_done=True, model="demo v3")


def test_ready_when_every_check_passes() -> None:
    verdict = readiness(READY)
    assert verdict.ready
    assert verdict.body() == {
        "ready": True,
        "checks": {
            "consumer_group": "ok",
            "intake_group": "ok",
            "table_recovery": "ok",
            "model": "ok: demo v3",
        },
    }


@pytest.mark.parametrize(
    ("change", "failing", "words"),
    [
        ({"group_assigned": False}, "consumer_group", "no partitions assigned"),
        ({"intake_assigned": False}, "intake_group", "intake"),
        ({"recovery_done": False}, "table_recovery", "recovering"),
        ({"model": None}, "model", "no lead model"),
    ],
)
def test_not_ready_names_the_failing_check(
    change: dict[str, Any], failing: str, words: str
) -> None:
    verdict = readiness(replace(READY, **change))
    assert not verdict.ready
    assert words in verdict.checks[failing]
    assert all(v.startswith("ok") for k, v in verdict.checks.items() if k != failing)


def _app(*, actives: set[Any], completed: bool, in_recovery: bool, rebalancing: bool) -> Any:
    event = asyncio.Event()
    if completed:
        event.set()
    return SimpleNamespace(
        assignor=SimpleNamespace(assigned_actives=lambda: actives),
        tables=SimpleNamespace(recovery=SimpleNamespace(completed=event)),
        in_recovery=in_recovery,
        rebalancing=rebalancing,
    )


MODEL = SimpleNamespace(name="demo", version="3")
INTAKE = SimpleNamespace(assigned=True)


def test_a_starting_worker_is_not_ready() -> None:
    # What Faust's app looks like before its consumer has joined: nothing assigned,
    # recovery not run, the intake not connected.
    app = _app(actives=set(), completed=False, in_recovery=False, rebalancing=False)
    probes = worker_probes(app, intake=SimpleNamespace(assigned=False), model=lambda: MODEL)
    verdict = readiness(probes)
    assert not verdict.ready
    assert {k for k, v in verdict.checks.items() if not v.startswith("ok")} == {
        "consumer_group",
        "intake_group",
        "table_recovery",
    }


def test_a_running_worker_is_ready_and_a_rebalance_makes_it_not_ready() -> None:
    app = _app(actives={("t", 0)}, completed=True, in_recovery=False, rebalancing=False)
    assert readiness(worker_probes(app, intake=INTAKE, model=lambda: MODEL)).ready
    app.rebalancing = True
    verdict = readiness(worker_probes(app, intake=INTAKE, model=lambda: MODEL))
    assert not verdict.ready and verdict.checks["table_recovery"] != "ok"
    app.rebalancing, app.in_recovery = False, True
    assert not readiness(worker_probes(app, intake=INTAKE, model=lambda: MODEL)).ready


def test_without_an_intake_service_the_worker_is_not_ready() -> None:
    app = _app(actives={("t", 0)}, completed=True, in_recovery=False, rebalancing=False)
    verdict = readiness(worker_probes(app, intake=None, model=lambda: MODEL))
    assert not verdict.ready and verdict.checks["intake_group"] != "ok"
