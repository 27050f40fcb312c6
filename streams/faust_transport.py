"""Where we reach into Faust: the consumer's fetch wait, and seeking back to skipped records.

Faust hard-codes `fetch_max_wait_ms=1500` for the worker consumer. On Apache Kafka a fetch
returns as soon as data arrives, so that only bounds idle polling; on brokers that do not
wake a waiting fetch (Tansu) it adds up to 1.5 s to every hop. This is the one place that
reaches into Faust for it; faust-streaming is pinned to a minor version for that reason.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable
from typing import Any

import aiokafka
import faust
from aiokafka.errors import KafkaError
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP, AppT, Message
from prometheus_client import Counter

from streams.offset_guard import OffsetGuard

__all__ = [
    "PASSED_OVER_CHECK_S",
    "StartOffset",
    "commit_offsets",
    "in_order",
    "learn_start",
    "reread_passed_over",
    "transport_class",
]

log = logging.getLogger(__name__)


class _ReadOffsets(defaultdict[TP, int | None]):
    """Faust's last-read offset per partition, which it uses to drop a fetched record at or
    below it as a re-delivery. For `guarded` topics it answers None, so every record fetched
    reaches the agent, whose OffsetGuard decides: Faust's guess goes wrong around rebalances
    and seeks and then drops records that were never processed."""

    def __init__(self, guarded: frozenset[str]) -> None:
        super().__init__(lambda: None)
        self._guarded = guarded

    def __getitem__(self, tp: TP) -> int | None:
        if tp.topic in self._guarded:
            return None
        return super().__getitem__(tp)


def transport_class(
    fetch_wait_ms: int, *, guarded: frozenset[str] = frozenset()
) -> type[faust_aiokafka.Transport]:
    """A Faust aiokafka Transport whose worker consumer waits at most `fetch_wait_ms`, and
    hands every record of the `guarded` topics to their agents (see `_ReadOffsets`)."""

    class _ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
        def _create_worker_consumer(self, transport: Any) -> aiokafka.AIOKafkaConsumer:
            consumer = super()._create_worker_consumer(transport)
            # Read by AIOKafkaConsumer.start() when it builds its Fetcher.
            consumer._fetch_max_wait_ms = fetch_wait_ms
            return consumer

    class _Consumer(faust_aiokafka.Consumer):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._read_offset = _ReadOffsets(guarded)

        async def on_partitions_revoked(self, revoked: set[TP]) -> None:
            # Faust forgets what was acknowledged but not yet committed as soon as a
            # partition is revoked, and commits only on its timer: the next owner would
            # replay up to ~3 s of work. Write what is pending and commit it first.
            hook = getattr(self.app, "before_revoke", None)
            if hook is not None and revoked:
                try:
                    extra = await hook(revoked)
                    committed = await self.commit(revoked)
                    if extra:
                        committed = await commit_offsets(self.app, extra) or committed
                    log.info("revoked: wrote pending state, committed: %s", committed)
                except Exception as exc:  # the next owner replays instead: at-least-once
                    log.warning("partitions revoked before their work was committed: %r", exc)
            await super().on_partitions_revoked(revoked)

        def _new_consumer_thread(self) -> faust_aiokafka.AIOKafkaConsumerThread:
            return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)

    class _Transport(faust_aiokafka.Transport):
        Consumer = _Consumer

    return _Transport


async def commit_offsets(app: AppT, offsets: dict[TP, int]) -> bool:
    """Commit `offsets` (the next offset to read, per partition) through Faust's consumer,
    which then never commits below them: its own commits follow acknowledgements only."""
    consumer: Any = app.consumer  # Faust's Consumer; `_commit_offsets` is not in ConsumerT
    committed: bool = await consumer._commit_offsets(offsets)
    return committed


#: How often each stage compares its consumer's position with what it has processed.
PASSED_OVER_CHECK_S = 1.0


async def reread_passed_over(
    app: AppT,
    guard: OffsetGuard,
    topic: str,
    partitions: set[int],
    rewinds: Counter,
    *,
    start_offset: StartOffset | None = None,
    still_mine: Callable[[int], bool] = lambda _: True,
) -> None:
    """Seek back where the consumer has moved past records it never delivered and no later
    record will show it (`OffsetGuard.passed_over`); called every `PASSED_OVER_CHECK_S`.

    A partition no record has reached yet is checked too: its start is asked of the broker
    (`start_offset`). Faust can drop every record it fetched of a partition new to this
    worker (those fetched around a rebalance); with no record after them, the stage would
    never learn of the partition, and its records would wait for the next one there (in
    the tests, forever: found by test_two_workers and test_handover).
    """
    for partition in sorted(partitions):
        if not guard.knows(partition):
            if start_offset is None:
                continue
            begin = await _ask_start(app, topic, partition, start_offset)
            if begin is None or not still_mine(partition):
                continue  # asked again at the next check; revoked meanwhile: not ours
            if not guard.knows(partition):  # a record may have taught it meanwhile
                guard.begin(partition, begin)
        tp = TP(topic, partition)
        try:
            position = await app.consumer.position(tp)
        except KafkaError as exc:  # revoked meanwhile: its new owner reads it
            log.debug("%s[%d]: no position (%r)", topic, partition, exc)
            continue
        if position is None or not guard.knows(partition):
            continue
        if guard.passed_over(partition, position):
            expected = guard.expected(partition)
            log.warning(
                "%s[%d]: the consumer moved past offsets %d-%d without delivering them; "
                "reading them again",
                topic,
                partition,
                expected,
                position - 1,
            )
            rewinds.inc()
            await app.consumer.seek(tp, expected)


#: Longest the first record of a new partition waits to learn where its group reads on.
START_OFFSET_TIMEOUT_S = 5.0

#: Where a consumer group starts reading a partition: (group, topic, partition) -> offset.
StartOffset = Callable[[str, str, int], Awaitable[int]]


async def _ask_start(
    app: AppT, topic: str, partition: int, start_offset: StartOffset
) -> int | None:
    """Where this app's group reads `partition` on from; None if the broker did not answer
    within `START_OFFSET_TIMEOUT_S`."""
    try:
        return await asyncio.wait_for(
            start_offset(app.conf.id, topic, partition), timeout=START_OFFSET_TIMEOUT_S
        )
    except Exception as exc:  # the broker is busy: the caller asks again
        log.warning("%s[%d]: start offset unknown (%r)", topic, partition, exc)
        return None


async def learn_start(
    app: faust.App,
    guard: OffsetGuard,
    message: Message,
    start_offset: StartOffset | None,
    *,
    still_mine: Callable[[int], bool] = lambda _: True,
) -> bool:
    """Whether the guard knows where `message`'s partition reads on from, asking the broker
    for the first record of a partition new to this worker: Faust can skip records there
    too, so the guard compares with where the group really reads on from.

    False when the broker did not answer, or the partition went elsewhere meanwhile
    (`still_mine`): the record is then sought back to and read again later, never taken as
    the start (records Faust skipped before it would be committed past unprocessed).
    """
    if start_offset is None or guard.knows(message.partition):
        return True  # None: no broker to ask (agent tests); the first record is the start
    begin = await _ask_start(app, message.topic, message.partition, start_offset)
    if begin is None:  # read it again, and ask again
        await app.consumer.seek(message.tp, message.offset)
        return False
    if not still_mine(message.partition):
        return False  # revoked while asking: the new owner reads it
    if not guard.knows(message.partition):
        guard.begin(message.partition, begin)
    return True


async def in_order(
    app: faust.App,
    guard: OffsetGuard,
    message: Message,
    rewinds: Counter,
    *,
    start_offset: StartOffset | None = None,
) -> bool:
    """Whether to process `message`: False while records before it that the consumer
    skipped are sought back to and read again (streams/offset_guard.py)."""
    if not await learn_start(app, guard, message, start_offset):
        return False
    verdict = guard.check(message.partition, message.offset)
    if verdict == "process":
        return True
    if verdict == "seek":
        expected = guard.expected(message.partition)
        log.warning(
            "%s[%d]: the consumer skipped offsets %d-%d; reading them again",
            message.topic,
            message.partition,
            expected,
            message.offset - 1,
        )
        rewinds.inc()
        await app.consumer.seek(message.tp, expected)
    return False
