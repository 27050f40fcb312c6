"""Broker outages: when a worker must give up, and how it tells a broker that lost its data.

A worker that cannot reach the broker keeps retrying (aiokafka reconnects by itself) for
`broker_lost_timeout_s`; past that it exits with an error, so its supervisor (Kubernetes,
systemd, compose `restart:`) restarts it and the restart shows in the supervisor's records
instead of a worker hanging on. A broker that comes back without the records this worker has
already read (a memory-only broker restarted, a topic deleted and re-created) is worse: the
worker's tables and positions no longer match the topics, and running on would mean missing
state nobody sees. That is an immediate exit with the reason.
"""

from __future__ import annotations

from collections.abc import Mapping, Set
from dataclasses import dataclass

__all__ = ["BrokerLost", "BrokerWatch", "lost_records"]


class BrokerLost(RuntimeError):
    """The worker stops: the broker is gone for good, or lost records the worker read."""


@dataclass
class BrokerWatch:
    """Reachability over time; `timeout_s` of failures in a row means give up."""

    timeout_s: float
    _down_since: float | None = None

    def reached(self) -> None:
        self._down_since = None

    def unreachable(self, now_s: float, error: str) -> str | None:
        """Note a failed check at monotonic `now_s`; the reason to exit once it is time."""
        if self._down_since is None:
            self._down_since = now_s
        down_s = now_s - self._down_since
        if down_s < self.timeout_s:
            return None
        return (
            f"the broker has been unreachable for {down_s:.0f} s "
            f"(LEADSTREAM_BROKER_LOST_TIMEOUT_S={self.timeout_s:g}; last error: {error}); "
            "exiting so that the supervisor restarts the worker"
        )

    @property
    def down(self) -> bool:
        return self._down_since is not None


def lost_records(
    topic: str,
    *,
    read_up_to: Mapping[int, int],
    ends: Mapping[int, int],
    topics: Set[str],
) -> str | None:
    """Why the broker's copy of `topic` is behind this worker, or None.

    `read_up_to`: partition -> the offset after the last record this worker processed;
    `ends`: partition -> the broker's end offset now; `topics`: the topics the broker has.
    """
    if not read_up_to:
        return None
    if topic not in topics:
        return (
            f"the broker no longer has topic {topic}, which this worker was reading: its data "
            "was lost (a broker without durable storage restarted, or the topic was deleted). "
            "Exiting; see README 'Broker outages' before restarting"
        )
    behind = sorted(
        (partition, ends.get(partition, 0), offset)
        for partition, offset in read_up_to.items()
        if ends.get(partition, 0) < offset
    )
    if not behind:
        return None
    where = ", ".join(f"partition {p} ends at {end:,} (read up to {n:,})" for p, end, n in behind)
    return (
        f"the broker lost records of {topic} that this worker has processed: {where}. "
        "Its data was lost (a broker without durable storage restarted?). "
        "Exiting; see README 'Broker outages' before restarting"
    )
