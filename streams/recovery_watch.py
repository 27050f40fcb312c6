"""A table recovery whose consumer has passed over changelog records is sought back to them.

Faust's recovery reads each active changelog partition up to the end it noted when it began,
and only then lets the agents run. If the records it waits for are never delivered, it waits
for ever: the worker stays unready and scores nothing, and Faust only logs "No event received
for active tp" once a minute. That happens when the consumer has moved past records it then
dropped (Faust's `getmany` drops what it fetched when a rebalance or a flow stop comes in
between, and nothing seeks back: `streams/offset_guard.py` handles the same for the inputs).

`RecoveryWatch` decides when a recovery has stalled (pure). `recovery_check` then compares
each partition's consumer position with the next record the recovery needs, and seeks back
where the consumer is past it (`leadstream_recovery_rewinds_total`); either way it logs a
warning with both, which says why a recovery that is not passed over is stuck.
`RecoveryWatchService` runs the check every second: a service, not an app timer, because
Faust starts its timers only once the first recovery is over, and that one can stall too.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field
from typing import Any

from mode import Service
from prometheus_client import Counter

__all__ = ["RecoveryWatch", "RecoveryWatchService", "recovery_check"]

log = logging.getLogger(__name__)

#: How often the watch looks at the recovery.
CHECK_S = 1.0
#: Longest the watch waits for a consumer position (it asks the broker when there is none).
POSITION_TIMEOUT_S = 5.0


@dataclass
class RecoveryWatch:
    """Whether a recovery has stalled: records remain, and none has been applied for
    `stall_s`. After a stall, the next one only after another `stall_s` without progress."""

    stall_s: float
    _progress: Hashable = field(default=None, init=False)
    _since: float | None = field(default=None, init=False)

    def stalled(self, now: float, *, recovering: bool, remaining: int, progress: Hashable) -> bool:
        """`progress` changes whenever the recovery moves (a record applied, a new start)."""
        if not recovering or remaining <= 0:
            self._since = None
            return False
        if self._since is None or progress != self._progress:
            self._progress, self._since = progress, now
            return False
        if now - self._since < self.stall_s:
            return False
        self._since = now
        return True


def recovery_check(
    app: Any,
    *,
    stall_s: float,
    rewinds: Counter,
    clock: Callable[[], float] = time.monotonic,
) -> Callable[[], Awaitable[None]]:
    """The check of Faust's table recovery (`app.tables.recovery`), run every `CHECK_S`."""
    watch = RecoveryWatch(stall_s)

    async def check() -> None:
        recovery = app.tables.recovery
        offsets = recovery.active_offsets
        if not watch.stalled(
            clock(),
            recovering=bool(recovery.in_recovery),
            remaining=recovery.active_remaining_total(),
            progress=(
                recovery._recovery_started_at,  # a new recovery: timed from its start
                tuple(sorted((tuple(tp), offsets[tp]) for tp in offsets)),
            ),
        ):
            return
        for tp, left in sorted(recovery.active_remaining().items()):
            if left <= 0:
                continue
            needed = max(offsets[tp], -1) + 1  # -1: nothing applied yet
            try:
                position = await asyncio.wait_for(
                    app.consumer.position(tp), timeout=POSITION_TIMEOUT_S
                )
            except Exception as exc:  # revoked meanwhile, or the broker is busy: next stall
                log.warning("%s[%d]: position unknown (%r)", tp.topic, tp.partition, exc)
                continue
            passed = position is not None and position > needed
            log.warning(
                "%s[%d]: table recovery made no progress for %.0f s (records left: %d); "
                "it needs offset %d and the consumer is at %s%s",
                tp.topic,
                tp.partition,
                stall_s,
                left,
                needed,
                position,
                ": past records it never delivered, seeking back" if passed else "",
            )
            if passed:
                rewinds.inc()
                await app.consumer.seek(tp, needed)

    return check


class RecoveryWatchService(Service):
    """Runs `check` every `CHECK_S` while the worker runs, its first recovery included."""

    def __init__(self, check: Callable[[], Awaitable[None]], **kwargs: Any) -> None:
        self._check = check
        super().__init__(**kwargs)

    @Service.timer(CHECK_S)
    async def _watch(self) -> None:
        await self._check()
