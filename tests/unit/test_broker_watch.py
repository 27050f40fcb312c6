"""When a worker gives up on the broker, and how it tells a broker that lost its data."""

from __future__ import annotations

from streams.broker_watch import BrokerWatch, lost_records


def test_failures_shorter_than_the_timeout_are_ridden_out() -> None:
    watch = BrokerWatch(timeout_s=60)
    assert watch.unreachable(100.0, "refused") is None
    assert watch.unreachable(159.0, "refused") is None
    assert watch.down


def test_failures_for_the_whole_timeout_give_a_reason_that_names_the_setting() -> None:
    watch = BrokerWatch(timeout_s=60)
    watch.unreachable(100.0, "refused")
    reason = watch.unreachable(160.5, "KafkaConnectionError('refused')")
    assert reason is not None
    assert "unreachable for 60 s" in reason
    assert "LEADSTREAM_BROKER_LOST_TIMEOUT_S=60" in reason
    assert "KafkaConnectionError('refused')" in reason


def test_an_answer_restarts_the_clock() -> None:
    watch = BrokerWatch(timeout_s=60)
    watch.unreachable(100.0, "refused")
    watch.reached()
    assert not watch.down
    assert watch.unreachable(170.0, "refused") is None  # a new outage starts here


def test_nothing_read_yet_means_nothing_to_lose() -> None:
    assert lost_records("pe", read_up_to={}, ends={}, topics=set()) is None


def test_a_broker_at_or_beyond_what_was_read_is_fine() -> None:
    ends = {0: 10, 1: 5}
    assert lost_records("pe", read_up_to={0: 10, 1: 3}, ends=ends, topics={"pe"}) is None


def test_a_topic_gone_is_lost_data() -> None:
    reason = lost_records("pe", read_up_to={0: 10}, ends={}, topics={"other"})
    assert reason is not None and "no longer has topic pe" in reason


def test_a_partition_that_ends_before_what_was_read_is_lost_data() -> None:
    reason = lost_records("pe", read_up_to={0: 10, 1: 1_234}, ends={0: 10, 1: 0}, topics={"pe"})
    assert reason is not None
    assert "partition 1 ends at 0 (read up to 1,234)" in reason
    assert "partition 0" not in reason
