"""OffsetGuard: records a consumer skipped are found and read again, never passed over."""

from __future__ import annotations

from streams.offset_guard import OffsetGuard
from tests.unit.fakes import PositionedConsumer


def run(guard: OffsetGuard, partition: int, offsets: list[int]) -> list[str]:
    return [guard.check(partition, offset) for offset in offsets]


def test_contiguous_records_are_processed() -> None:
    guard = OffsetGuard()
    assert run(guard, 0, [5, 6, 7]) == ["process"] * 3
    assert guard.expected(0) == 8


def test_a_skip_seeks_back_drops_what_was_fetched_and_processes_the_re_read() -> None:
    # What the fault harness saw: offsets 0-46, then 65 onwards.
    guard = OffsetGuard()
    assert run(guard, 2, [45, 46]) == ["process", "process"]
    assert guard.check(2, 65) == "seek"
    assert guard.expected(2) == 47
    assert run(guard, 2, [66, 67]) == ["drop", "drop"]  # fetched before the seek
    assert run(guard, 2, list(range(47, 70))) == ["process"] * 23  # the re-read
    assert guard.expected(2) == 70


def test_re_deliveries_are_processed_and_move_the_expectation_back() -> None:
    # After a rebalance the consumer starts over at the committed offset: the lead state
    # recognises what was applied before, so the guard lets them through.
    guard = OffsetGuard()
    run(guard, 1, [10, 11, 12])
    assert guard.check(1, 4) == "process"
    assert guard.expected(1) == 5
    assert guard.check(1, 6) == "seek"


def test_partitions_are_independent() -> None:
    guard = OffsetGuard()
    run(guard, 0, [0, 1])
    run(guard, 1, [100])
    assert guard.check(1, 101) == "process"
    assert guard.check(0, 3) == "seek"
    assert guard.check(1, 102) == "process"


def test_a_re_read_that_skips_again_seeks_again() -> None:
    guard = OffsetGuard()
    run(guard, 0, [10])
    assert guard.check(0, 20) == "seek"
    assert run(guard, 0, [21, 22]) == ["drop", "drop"]
    # The re-read began at 15, not 11: seek again rather than pass over 11-14.
    assert guard.check(0, 15) == "seek"
    assert guard.expected(0) == 11
    assert run(guard, 0, [16]) == ["drop"]
    assert run(guard, 0, [11, 12]) == ["process", "process"]


def test_a_reassigned_partition_keeps_its_expectation() -> None:
    # No offset committed yet, so nothing seeks the consumer back after the rebalance:
    # records dropped around it must still be noticed.
    guard = OffsetGuard()
    run(guard, 3, [7, 8])
    guard.keep_only({3})
    assert guard.check(3, 12) == "seek"
    assert guard.expected(3) == 9


def test_a_partition_that_went_elsewhere_starts_over() -> None:
    guard = OffsetGuard()
    run(guard, 3, [7])
    guard.check(3, 9)  # seeking
    guard.keep_only({1})
    assert guard.check(3, 50) == "process"
    assert guard.expected(3) == 51


def test_rewind_reads_again_what_was_processed_but_not_written() -> None:
    guard = OffsetGuard()
    run(guard, 0, [5, 6, 7, 8])
    guard.rewind(0, 6)  # 6-8 were pending when the partition was revoked
    assert guard.expected(0) == 6
    assert guard.check(0, 9) == "seek"  # the consumer went on from its position
    assert run(guard, 0, [6, 7, 8, 9]) == ["process"] * 4


def test_a_record_handed_over_moves_the_expectation_on_never_back() -> None:
    guard = OffsetGuard()
    run(guard, 0, [5, 6])
    # 7 and 8 were applied in-process; the consumer then delivers 7: nothing moves back.
    guard.check(0, 7), guard.check(0, 8)
    guard.passed(0, 7)
    assert guard.expected(0) == 9
    # A re-delivery after a seek processed 4 again; a handed-over 5 the consumer then
    # delivers moves the expectation to 6, so 6 is not taken for a skip.
    guard.check(0, 4)
    guard.passed(0, 5)
    assert guard.check(0, 6) == "process"
    guard.passed(1, 3)  # a partition it does not hold: nothing to expect
    assert not guard.knows(1)


class _Conf:
    id = "leadstream"  # the group id


class _App:
    def __init__(self, position: int = 0) -> None:
        self.consumer = PositionedConsumer(position)
        self.conf = _Conf()


class _Message:
    def __init__(self, offset: int, partition: int = 2) -> None:
        self.topic, self.partition, self.offset = "leadstream.person-events", partition, offset
        self.tp = (self.topic, partition)


async def test_in_order_seeks_the_faust_consumer_back_and_counts_the_rewind() -> None:
    from prometheus_client import CollectorRegistry

    from streams.faust_transport import in_order
    from streams.metrics import Metrics

    registry = CollectorRegistry()
    rewinds = Metrics.create(registry).input_rewinds.labels(stage="leads")
    app, guard = _App(), OffsetGuard()
    seen = [await in_order(app, guard, _Message(o), rewinds) for o in (45, 46, 65, 66, 47)]  # type: ignore[arg-type]
    assert seen == [True, True, False, False, True]
    assert app.consumer.seeks == [(("leadstream.person-events", 2), 47)]
    assert registry.get_sample_value("leadstream_input_rewinds_total", {"stage": "leads"}) == 1


def test_a_partition_new_to_the_worker_is_compared_with_where_its_group_reads_on() -> None:
    # Faust skipped the first records after the assignment: the group committed 40, the
    # first record handed over is 47.
    guard = OffsetGuard()
    assert not guard.knows(1)
    guard.begin(1, 40)
    assert guard.check(1, 47) == "seek"
    assert guard.expected(1) == 40


async def test_in_order_asks_where_a_new_partition_starts_and_seeks_there() -> None:
    from prometheus_client import CollectorRegistry

    from streams.faust_transport import in_order
    from streams.metrics import Metrics

    app = _App()
    asked: list[tuple[str, str, int]] = []

    async def start_offset(group: str, topic: str, partition: int) -> int:
        asked.append((group, topic, partition))
        return 40

    rewinds = Metrics.create(CollectorRegistry()).input_rewinds.labels(stage="leads")
    guard = OffsetGuard()
    first = await in_order(app, guard, _Message(47), rewinds, start_offset=start_offset)  # type: ignore[arg-type]
    assert first is False
    assert app.consumer.seeks == [(("leadstream.person-events", 2), 40)]
    assert asked == [("leadstream", "leadstream.person-events", 2)]
    assert await in_order(app, guard, _Message(40), rewinds, start_offset=start_offset)  # type: ignore[arg-type]
    assert len(asked) == 1  # asked once per partition


async def test_a_start_offset_the_broker_does_not_give_is_never_guessed() -> None:
    """Taking the first record delivered as the start would commit past any records Faust
    skipped before it: the record is read again, and the broker asked again."""
    from prometheus_client import CollectorRegistry

    from streams.faust_transport import in_order
    from streams.metrics import Metrics

    app = _App()
    answers: list[int | Exception] = [TimeoutError("busy"), 40]

    async def start_offset(group: str, topic: str, partition: int) -> int:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    rewinds = Metrics.create(CollectorRegistry()).input_rewinds.labels(stage="leads")
    guard = OffsetGuard()
    assert not await in_order(app, guard, _Message(47), rewinds, start_offset=start_offset)  # type: ignore[arg-type]
    assert not guard.knows(2)
    assert app.consumer.seeks == [(("leadstream.person-events", 2), 47)]  # read it again
    # Asked again on the re-read: the group reads on from 40, so 40-46 were skipped.
    assert not await in_order(app, guard, _Message(47), rewinds, start_offset=start_offset)  # type: ignore[arg-type]
    assert app.consumer.seeks[-1] == (("leadstream.person-events", 2), 40)


async def test_a_partition_revoked_while_asking_is_left_to_its_new_owner() -> None:
    from streams.faust_transport import learn_start

    app = _App()

    async def start_offset(group: str, topic: str, partition: int) -> int:
        return 40

    guard = OffsetGuard()
    known = await learn_start(
        app,  # type: ignore[arg-type]
        guard,
        _Message(47),  # type: ignore[arg-type]
        start_offset,
        still_mine=lambda partition: False,
    )
    assert known is False
    assert not guard.knows(2)  # nothing for a later hand-over to take as this worker's


def test_a_consumer_standing_past_unprocessed_records_is_passed_over_after_three_checks() -> None:
    """Faust dropped the partition's last record (a batch fetched before a rebalance): no
    later record shows the gap, but the consumer's position does."""
    guard = OffsetGuard()
    guard.begin(0, 0)
    assert guard.check(0, 0) == "process"  # expects 1; the consumer fetched 1 and dropped it
    assert [guard.passed_over(0, 2) for _ in range(3)] == [False, False, True]
    assert [guard.passed_over(0, 2) for _ in range(3)] == [False, False, True]  # and again


def test_checks_counted_under_a_past_ownership_do_not_carry_over() -> None:
    """A partition revoked mid-count and assigned again starts its count afresh."""
    guard = OffsetGuard()
    guard.begin(0, 5)
    assert [guard.passed_over(0, 10) for _ in range(2)] == [False, False]
    guard.keep_only(set())  # revoked
    guard.keep_only({0})  # assigned again
    guard.begin(0, 5)
    assert [guard.passed_over(0, 10) for _ in range(3)] == [False, False, True]


def test_a_consumer_position_that_moves_or_is_not_ahead_is_not_passed_over() -> None:
    guard = OffsetGuard()
    assert guard.passed_over(0, 5) is False  # a partition not known: nothing to say
    guard.begin(0, 10)
    # Records on their way to the stage: the position moves, or the expectation does.
    assert [guard.passed_over(0, p) for p in (12, 13, 14, 15)] == [False] * 4
    for offset in (10, 11):
        guard.check(0, offset)
        assert guard.passed_over(0, 15) is False
    assert [guard.passed_over(0, 12) for _ in range(5)] == [False] * 5  # not ahead of 12


async def test_reread_passed_over_seeks_back_once_the_consumer_stands_still() -> None:
    from prometheus_client import CollectorRegistry

    from streams.faust_transport import reread_passed_over
    from streams.metrics import Metrics

    app = _App(position=2)
    rewinds = Metrics.create(CollectorRegistry()).input_rewinds.labels(stage="leads")
    guard = OffsetGuard()
    guard.begin(0, 0)
    guard.check(0, 0)
    for _ in range(2):
        await reread_passed_over(app, guard, "pe", {0, 1}, rewinds)  # type: ignore[arg-type]
    assert app.consumer.seeks == []
    await reread_passed_over(app, guard, "pe", {0, 1}, rewinds)  # type: ignore[arg-type]
    assert app.consumer.seeks == [(("pe", 0), 1)]  # partition 1 is not known: left alone
    assert rewinds._value.get() == 1


async def test_a_partition_whose_every_record_was_dropped_is_read_again_from_its_start() -> None:
    """Faust dropped all it fetched of a partition new to this worker (around a rebalance)
    and nothing more arrives there: no record ever reaches the stage to show the gap, so
    the check asks where the group reads on from and compares the consumer's position."""
    from prometheus_client import CollectorRegistry

    from streams.faust_transport import reread_passed_over
    from streams.metrics import Metrics

    app = _App(position=4)  # fetched 1-3, delivered none
    asked: list[tuple[str, str, int]] = []

    async def start_offset(group: str, topic: str, partition: int) -> int:
        asked.append((group, topic, partition))
        return 1

    rewinds = Metrics.create(CollectorRegistry()).input_rewinds.labels(stage="leads")
    guard = OffsetGuard()
    for _ in range(3):
        await reread_passed_over(app, guard, "pe", {3}, rewinds, start_offset=start_offset)  # type: ignore[arg-type]
    assert asked == [("leadstream", "pe", 3)]  # once: then the guard knows the partition
    assert app.consumer.seeks == [(("pe", 3), 1)]
    assert rewinds._value.get() == 1


async def test_a_partition_s_start_is_not_learned_when_the_broker_is_silent_or_it_went_away() -> (
    None
):
    from prometheus_client import CollectorRegistry

    from streams.faust_transport import reread_passed_over
    from streams.metrics import Metrics

    app = _App(position=4)
    rewinds = Metrics.create(CollectorRegistry()).input_rewinds.labels(stage="leads")

    async def busy(group: str, topic: str, partition: int) -> int:
        raise TimeoutError("busy")

    async def one(group: str, topic: str, partition: int) -> int:
        return 1

    guard = OffsetGuard()
    await reread_passed_over(app, guard, "pe", {3}, rewinds, start_offset=busy)  # type: ignore[arg-type]
    assert not guard.knows(3)  # asked again at the next check
    await reread_passed_over(
        app,  # type: ignore[arg-type]
        guard,
        "pe",
        {3},
        rewinds,
        start_offset=one,
        still_mine=lambda partition: False,  # revoked while asking
    )
    assert not guard.knows(3)
    assert app.consumer.seeks == []
