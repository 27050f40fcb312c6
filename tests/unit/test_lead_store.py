"""LeadStore: decoded reads, write-behind of changed leads, rotation, forgetting partitions."""

from __future__ import annotations

from streams.codec import decode_state, encode
from streams.lead_store import LeadStore
from streams.routing import RoutingState
from streams.state import LeadState


def _lead(pk: str, score: int) -> LeadState:
    return LeadState(lead_id=f"ld_{pk}", pk=pk, score=score)


def test_changed_leads_reach_the_table_only_when_taken() -> None:
    table: dict[bytes, bytes] = {}
    store = LeadStore(table, cache_size=10)
    store.update(1, {"a": _lead("a", 5), "b": _lead("b", 7)}, RoutingState())
    assert table == {}  # write-behind: nothing yet
    assert store.leads(1, ["a", "b", "c"]) == {"a": _lead("a", 5), "b": _lead("b", 7)}

    entries = dict(store.take_dirty(1))
    assert {k: decode_state(v).score for k, v in entries.items()} == {b"a": 5, b"b": 7}
    assert table == entries
    assert store.take_dirty(1) == []  # taken once


def test_leads_are_read_from_the_table_when_not_cached() -> None:
    table = {b"a": encode(_lead("a", 3))}
    store = LeadStore(table, cache_size=0)
    assert store.leads(2, ["a"])["a"].score == 3


def test_rotation_is_written_only_when_it_changes() -> None:
    table: dict[bytes, bytes] = {}
    store = LeadStore(table, cache_size=10)
    store.update(0, {}, RoutingState())
    assert store.take_dirty(0) == []
    store.update(0, {}, RoutingState(rotation={"x,y": 1}))
    ((key, _),) = store.take_dirty(0)
    assert key == b"__rotation__/0"
    assert LeadStore(table, cache_size=10).rotation(0) == RoutingState(rotation={"x,y": 1})


def test_rotation_written_before_routing_rules_reads_as_round_robin_positions() -> None:
    table = {b"__rotation__/3": b'{"next":{"carla,dan":5}}'}
    assert LeadStore(table, cache_size=10).rotation(3) == RoutingState(rotation={"carla,dan": 5})


def test_forget_drops_unwritten_changes_of_a_revoked_partition() -> None:
    table: dict[bytes, bytes] = {}
    store = LeadStore(table, cache_size=10)
    store.update(4, {"a": _lead("a", 1)}, RoutingState())
    store.forget({4})
    assert store.take_dirty(4) == []
    assert store.leads(4, ["a"]) == {}


def test_a_deleted_lead_is_gone_from_reads_at_once_and_from_the_table_as_a_tombstone() -> None:
    table = {b"a": encode(_lead("a", 3)), b"b": encode(_lead("b", 4))}
    store = LeadStore(table, cache_size=10)
    assert store.leads(0, ["a"])["a"].score == 3  # cached now

    store.update(0, {}, RoutingState(), deleted=["a"])

    assert store.leads(0, ["a", "b"]) == {"b": _lead("b", 4)}  # not from the cache
    assert b"a" in table  # write-behind: still there until taken
    assert store.take_dirty(0) == [(b"a", None)]  # the changelog tombstone
    assert set(table) == {b"b"}
    assert store.leads(0, ["a"]) == {}


def test_a_key_deleted_then_written_again_in_one_flush_keeps_the_new_lead() -> None:
    table = {b"a": encode(_lead("a", 3))}
    store = LeadStore(table, cache_size=10)
    store.update(0, {}, RoutingState(), deleted=["a"])
    store.update(0, {"a": _lead("a", 9)}, RoutingState())
    ((key, value),) = store.take_dirty(0)
    assert key == b"a" and value is not None and decode_state(value).score == 9
