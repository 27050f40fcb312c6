"""A table recovery that has stalled is sought back to the records it passed over, and
reported either way (streams/recovery_watch.py)."""

from __future__ import annotations

import asyncio
from collections import Counter as Offsets
from typing import Any

from faust.types import TP
from prometheus_client import CollectorRegistry

from streams.metrics import Metrics
from streams.recovery_watch import RecoveryWatch, RecoveryWatchService, recovery_check
from tests.unit.fakes import PositionedConsumer


def test_a_recovery_with_records_left_and_no_progress_for_the_stall_time_is_stalled() -> None:
    watch = RecoveryWatch(stall_s=10)
    assert not watch.stalled(0, recovering=True, remaining=5, progress=1)
    assert not watch.stalled(9.9, recovering=True, remaining=5, progress=1)
    assert watch.stalled(10, recovering=True, remaining=5, progress=1)
    # Restarted: the next restart only after another stall time without progress.
    assert not watch.stalled(15, recovering=True, remaining=5, progress=1)
    assert watch.stalled(20, recovering=True, remaining=5, progress=1)


def test_progress_or_no_records_left_or_no_recovery_is_not_a_stall() -> None:
    watch = RecoveryWatch(stall_s=10)
    for t in range(0, 60, 5):  # a record applied between each check: slow, not stalled
        assert not watch.stalled(t, recovering=True, remaining=5, progress=t)
    watch = RecoveryWatch(stall_s=10)
    assert not any(watch.stalled(t, recovering=True, remaining=0, progress=1) for t in range(60))
    watch = RecoveryWatch(stall_s=10)
    assert not any(watch.stalled(t, recovering=False, remaining=5, progress=1) for t in range(60))


def test_a_recovery_that_ends_and_starts_again_is_timed_from_its_new_start() -> None:
    watch = RecoveryWatch(stall_s=10)
    assert not watch.stalled(0, recovering=True, remaining=5, progress=1)
    assert not watch.stalled(8, recovering=False, remaining=0, progress=1)  # done
    assert not watch.stalled(9, recovering=True, remaining=5, progress=1)  # next rebalance
    assert not watch.stalled(18, recovering=True, remaining=5, progress=1)
    assert watch.stalled(19, recovering=True, remaining=5, progress=1)


class _Recovery:
    """Faust's Recovery as far as the watch reads it."""

    def __init__(self) -> None:
        tp = TP("leadstream-leads-changelog", 2)
        self.in_recovery = True
        self._recovery_started_at = 100.0
        self.active_offsets: Offsets[TP] = Offsets({tp: -1})
        self.active_highwaters: Offsets[TP] = Offsets({tp: 7})

    def active_remaining(self) -> Offsets[TP]:
        return Offsets(
            {tp: hw - self.active_offsets[tp] for tp, hw in self.active_highwaters.items()}
        )

    def active_remaining_total(self) -> int:
        return sum(self.active_remaining().values())


class _App:
    def __init__(self, position: int) -> None:
        self.tables = type("Tables", (), {"recovery": _Recovery()})()
        self.consumer = PositionedConsumer(position)


TP2 = TP("leadstream-leads-changelog", 2)


async def test_a_stalled_recovery_whose_consumer_passed_records_over_seeks_back(
    caplog: Any,
) -> None:
    app = _App(position=8)  # fetched up to 7; the recovery applied up to 3
    recovery = app.tables.recovery
    metrics = Metrics.create(CollectorRegistry())
    now = [0.0]
    check = recovery_check(app, stall_s=5, rewinds=metrics.recovery_rewinds, clock=lambda: now[0])
    await check()
    recovery.active_offsets[TP2] = 3  # a record applied
    now[0] = 4.0
    await check()
    now[0] = 8.9
    await check()
    assert app.consumer.seeks == []  # 4.9 s since the last progress: not stalled
    now[0] = 9.0
    await check()
    assert app.consumer.seeks == [(TP2, 4)]  # the next record the recovery needs
    assert metrics.recovery_rewinds._value.get() == 1
    assert "leadstream-leads-changelog[2]: table recovery made no progress for 5 s" in caplog.text
    assert "needs offset 4 and the consumer is at 8: past records" in caplog.text
    now[0] = 12.0
    await check()  # within the next stall time: left to read on
    assert metrics.recovery_rewinds._value.get() == 1


async def test_a_stalled_recovery_not_passed_over_is_reported_and_left(caplog: Any) -> None:
    app = _App(position=0)  # waiting for offset 0: nothing came, nothing was passed over
    metrics = Metrics.create(CollectorRegistry())
    now = [0.0]
    check = recovery_check(app, stall_s=5, rewinds=metrics.recovery_rewinds, clock=lambda: now[0])
    await check()
    now[0] = 5.0
    await check()
    assert app.consumer.seeks == []
    assert metrics.recovery_rewinds._value.get() == 0
    assert "needs offset 0 and the consumer is at 0" in caplog.text
    assert "seeking back" not in caplog.text


async def test_the_service_runs_the_check_every_second_from_its_start() -> None:
    calls: list[float] = []

    async def check() -> None:
        calls.append(asyncio.get_running_loop().time())

    service = RecoveryWatchService(check)
    await service.start()
    try:
        await asyncio.sleep(2.5)
    finally:
        await service.stop()
    assert len(calls) >= 2


async def test_a_position_the_consumer_cannot_give_is_reported_and_asked_at_the_next_stall(
    caplog: Any,
) -> None:
    class _Revoked(PositionedConsumer):
        async def position(self, tp: object) -> int:
            self.asked += 1
            raise RuntimeError("not assigned")

    app = _App(position=8)
    app.consumer = _Revoked(8)
    metrics = Metrics.create(CollectorRegistry())
    now = [0.0]
    check = recovery_check(app, stall_s=5, rewinds=metrics.recovery_rewinds, clock=lambda: now[0])
    await check()
    now[0] = 5.0
    await check()  # no exception out of the watch's timer
    assert app.consumer.seeks == []
    assert "leadstream-leads-changelog[2]: position unknown (RuntimeError('not assigned'))" in (
        caplog.text
    )
    assert app.consumer.asked == 1
    now[0] = 7.0
    await check()  # within the stall time that follows: not asked
    assert app.consumer.asked == 1
    now[0] = 10.0
    await check()  # the next stall asks again
    assert app.consumer.asked == 2
