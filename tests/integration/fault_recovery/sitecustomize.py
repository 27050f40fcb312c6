"""Loaded at start-up by a worker whose PYTHONPATH holds this directory (test_recovery_watch).

Drops the first records Faust's consumer fetches of each leads-changelog partition while the
table recovers, after the consumer has moved past them: what Faust's own `getmany` does with
records fetched when a rebalance or a flow stop comes in between. Nothing else seeks back, so
the recovery waits for records that never come unless it is restarted.
"""

from __future__ import annotations

from typing import Any

from faust.transport.consumer import ThreadDelegateConsumer

_fetch = ThreadDelegateConsumer._getmany
_dropped: set[Any] = set()


async def _getmany(self: Any, active_partitions: Any, timeout: float) -> Any:
    records = await _fetch(self, active_partitions, timeout)
    if self.app.in_recovery:
        for tp in [tp for tp in records if tp.topic.endswith("-leads-changelog")]:
            if tp not in _dropped and records[tp]:
                _dropped.add(tp)
                dropped = records.pop(tp)
                print(
                    f"FAULT dropped {tp.topic}[{tp.partition}] offsets "
                    f"{dropped[0].offset}-{dropped[-1].offset}",
                    flush=True,
                )
    return records


ThreadDelegateConsumer._getmany = _getmany  # type: ignore[method-assign]
