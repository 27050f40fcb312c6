"""Liveness and readiness of the worker: `/healthz` and `/readyz` on its web port.

`/healthz` answers 200 while the process serves HTTP at all (restart it when it does not).
`/readyz` answers 200 only when the worker does its job: it holds partitions in its Faust
consumer group and in the intake's, its table recovery has finished, and it has a lead model;
otherwise 503 with each check's state, so a probe's log says which one fails.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import faust
from faust.web import Request, Response, View

__all__ = ["Probes", "Readiness", "readiness", "serve_health", "worker_probes"]


@dataclass(frozen=True)
class Probes:
    """What readiness is decided from, read from the running worker."""

    group_assigned: bool  # Faust's consumer group gave this worker partitions
    intake_assigned: bool  # the intake's consumer group did too
    recovery_done: bool  # table recovery finished, and no rebalance is under way
    model: str | None  # "name vVERSION" of the lead model in use; None without one


@dataclass(frozen=True)
class Readiness:
    ready: bool
    checks: dict[str, str] = field(default_factory=dict)  # check -> "ok", or why not

    def body(self) -> dict[str, Any]:
        return {"ready": self.ready, "checks": self.checks}


def readiness(probes: Probes) -> Readiness:
    """The verdict and each check's state (pure: tested with plain values)."""
    checks = {
        "consumer_group": "ok"
        if probes.group_assigned
        else "no partitions assigned in the worker's consumer group yet",
        "intake_group": "ok"
        if probes.intake_assigned
        else "no partitions assigned in the intake's consumer group yet",
        "table_recovery": "ok"
        if probes.recovery_done
        else "the leads table is recovering or a rebalance is under way",
        "model": f"ok: {probes.model}" if probes.model else "no lead model loaded",
    }
    return Readiness(all(v.startswith("ok") for v in checks.values()), checks)


class _Intake(Protocol):
    @property
    def assigned(self) -> bool: ...


def worker_probes(app: Any, *, intake: _Intake | None, model: Callable[[], Any]) -> Probes:
    """Probes read from a Faust app (`app.assignor`, `app.tables.recovery`, `app.rebalancing`).

    Before Faust has started its consumer, nothing is assigned and recovery has not run."""
    recovery = app.tables.recovery
    current = model()
    return Probes(
        group_assigned=bool(app.assignor.assigned_actives()),
        intake_assigned=intake is not None and intake.assigned,
        recovery_done=recovery.completed.is_set() and not app.in_recovery and not app.rebalancing,
        model=f"{current.name} v{current.version}" if current is not None else None,
    )


def serve_health(app: faust.App, *, probes: Callable[[], Probes]) -> None:
    """Mount `/healthz` and `/readyz` on the app's web server."""

    @app.page("/healthz")
    class HealthView(View):
        async def get(self, request: Request) -> Response:
            return self.json({"alive": True})

    @app.page("/readyz")
    class ReadyView(View):
        async def get(self, request: Request) -> Response:
            verdict = readiness(probes())
            return self.json(verdict.body(), status=200 if verdict.ready else 503)
