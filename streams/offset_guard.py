"""Contiguous input per partition: find the records a consumer skipped, and say where to re-read.

Faust can pass over records without handing them to the agent: a batch fetched just before
a rebalance is dropped as belonging to the old consumer generation, and when the group has
no committed offset yet nothing seeks back to it, so the consumer goes on after the dropped
records. Acknowledging what comes next would then commit past records never processed.
(Found by `python -m loadtest.faults`: a worker restarted after a SIGKILL read offsets
0-46 of a partition, then 65 onwards; the 18 records in between were lost.)

Our own topics have no gaps in their offsets (no transactions, no compaction), so the
next record of a partition must be at the offset after the last one processed. A record
beyond it means some were skipped: seek back and drop until the missing one arrives. A
record at or before it is a re-delivery after a seek, which the lead state recognises.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

__all__ = ["OffsetGuard", "Verdict"]

Verdict = Literal["process", "drop", "seek"]


@dataclass
class OffsetGuard:
    """The next offset expected per partition this worker holds."""

    _next: dict[int, int] = field(default_factory=dict)
    _last_dropped: dict[int, int] = field(default_factory=dict)  # while seeking
    # (consumer position, expected offset, checks in a row) while the consumer is past
    # records not processed (`passed_over`)
    _past: dict[int, tuple[int, int, int]] = field(default_factory=dict)

    def check(self, partition: int, offset: int) -> Verdict:
        """What to do with the record at `offset`:

        - `process` it: the first since the assignment, the next one, or a re-delivery;
        - `seek` back to `expected(partition)` and drop it: records were skipped;
        - `drop` it: fetched before the seek took effect (offsets above the last dropped).

        A record at or below the last one dropped that is still beyond `expected` means
        the re-read skipped again: seek again. Records that no longer exist (deleted by
        retention before they were processed) are never passed over silently: the stage
        stops there, its lag grows and `leadstream_input_rewinds_total` counts.
        """
        expected = self._next.get(partition)
        if expected is None or offset <= expected:
            self._next[partition] = offset + 1
            self._last_dropped.pop(partition, None)
            return "process"
        last = self._last_dropped.get(partition)
        self._last_dropped[partition] = offset
        if last is not None and offset > last:
            return "drop"
        return "seek"

    def passed_over(self, partition: int, position: int, *, checks: int = 3) -> bool:
        """Whether the consumer has moved past records it never delivered, with nothing
        after them to show it: its `position` (the next offset it will fetch) is beyond
        the next offset expected, and neither has moved for `checks` calls in a row.

        `check` only sees a skip when a later record arrives. Faust drops a batch fetched
        just before a rebalance; if that batch held a partition's last records, no later
        record comes, and those records would wait for the next one (in a test, forever:
        found by test_two_workers). A position ahead that keeps changing is records still
        on their way to the stage, so only a standstill counts.
        """
        expected = self._next.get(partition)
        if expected is None or position <= expected:
            self._past.pop(partition, None)
            return False
        seen = self._past.get(partition)
        count = seen[2] + 1 if seen is not None and seen[:2] == (position, expected) else 1
        if count < checks:
            self._past[partition] = (position, expected, count)
            return False
        self._past.pop(partition, None)
        return True

    def passed(self, partition: int, offset: int) -> None:
        """The record at `offset` was processed another way (handed over in-process before
        the consumer delivered it): expect nothing before the one after it."""
        if partition in self._next:
            self._next[partition] = max(self._next[partition], offset + 1)
        self._last_dropped.pop(partition, None)

    def expected(self, partition: int) -> int:
        return self._next[partition]

    def knows(self, partition: int) -> bool:
        return partition in self._next

    def begin(self, partition: int, offset: int) -> None:
        """A partition new to this worker: its consumer group reads on from `offset` (the
        committed offset, or the partition's first), so a first record beyond it means
        records were skipped there too."""
        self._next[partition] = offset
        self._last_dropped.pop(partition, None)

    def positions(self) -> dict[int, int]:
        """Partition -> the offset after the last record processed (as far as known)."""
        return dict(self._next)

    def rewind(self, partition: int, offset: int) -> None:
        """Records from `offset` on were processed but their results dropped (a rebalance
        took the partition before they were written): they must be processed again."""
        if partition in self._next:
            self._next[partition] = min(self._next[partition], offset)
        self._last_dropped.pop(partition, None)

    def keep_only(self, partitions: set[int]) -> None:
        """The partitions now assigned. Those kept keep their expected offset: a consumer
        that was not sought back to the committed offset (none committed yet) goes on from
        its position, past anything dropped around the rebalance, and that must be caught.
        Those gone are forgotten: another worker may have moved them on meanwhile."""
        for partition in set(self._next) - partitions:
            del self._next[partition]
        for partition in set(self._last_dropped) - partitions:
            del self._last_dropped[partition]
        for partition in set(self._past) - partitions:
            del self._past[partition]
