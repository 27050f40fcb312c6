"""LeadStore: decoded reads, write-behind of changed leads, rotation, forgetting partitions."""

from __future__ import annotations

from streams.codec import decode_state, encode
from streams.lead_store import LeadStore
from streams.routing import RoutingState
from streams.state import LeadState
from streams.table_store import DictTable


def _lead(pk: str, score: int) -> LeadState:
    return LeadState(lead_id=f"ld_{pk}", pk=pk, score=score)


def test_changed_leads_reach_the_table_only_when_written_to_the_changelog() -> None:
    table = DictTable()
    store = LeadStore(table, cache_size=10)
    store.update(1, {"a": _lead("a", 5), "b": _lead("b", 7)}, RoutingState())
    assert table.data == {}  # write-behind: nothing yet
    assert store.leads(1, ["a", "b", "c"]) == {"a": _lead("a", 5), "b": _lead("b", 7)}

    entries = store.take_dirty(1)
    assert {k: decode_state(v).score for k, v in entries} == {b"a": 5, b"b": 7}
    # Taken, on its way to the changelog: not in the local table yet, still read from memory.
    assert table.data == {}
    assert store.leads(1, ["a"])["a"].score == 5
    assert store.take_dirty(1) == []  # taken once

    store.written(1, entries, offset=41)
    assert table.data == dict(entries)
    assert table.offsets == {1: 41}


def test_a_lead_taken_but_not_written_is_read_from_memory_not_from_the_table() -> None:
    table = DictTable({b"a": encode(_lead("a", 1))})
    store = LeadStore(table, cache_size=0)
    store.update(1, {"a": _lead("a", 9)}, RoutingState())
    entries = store.take_dirty(1)
    assert store.leads(1, ["a"])["a"].score == 9  # not the table's older 1
    store.update(1, {"a": _lead("a", 10)}, RoutingState())  # changed again meanwhile
    store.written(1, entries, offset=None)
    assert store.leads(1, ["a"])["a"].score == 10  # the newer change wins over the written one


def test_leads_are_read_from_the_table_when_not_cached() -> None:
    table = DictTable({b"a": encode(_lead("a", 3))})
    store = LeadStore(table, cache_size=0)
    assert store.leads(2, ["a"])["a"].score == 3


def test_rotation_is_written_only_when_it_changes() -> None:
    table = DictTable()
    store = LeadStore(table, cache_size=10)
    store.update(0, {}, RoutingState())
    assert store.take_dirty(0) == []
    store.update(0, {}, RoutingState(rotation={"x,y": 1}))
    entries = store.take_dirty(0)
    ((key, _),) = entries
    assert key == b"__rotation__/0"
    store.written(0, entries, offset=None)
    assert LeadStore(table, cache_size=10).rotation(0) == RoutingState(rotation={"x,y": 1})


def test_rotation_written_before_routing_rules_reads_as_round_robin_positions() -> None:
    table = DictTable({b"__rotation__/3": b'{"next":{"carla,dan":5}}'})
    assert LeadStore(table, cache_size=10).rotation(3) == RoutingState(rotation={"carla,dan": 5})


def test_forget_drops_unwritten_changes_of_a_revoked_partition() -> None:
    table = DictTable()
    store = LeadStore(table, cache_size=10)
    store.update(4, {"a": _lead("a", 1)}, RoutingState())
    store.forget({4})
    assert store.take_dirty(4) == []
    assert store.leads(4, ["a"]) == {}


def test_a_deleted_lead_is_gone_from_reads_at_once_and_from_the_table_as_a_tombstone() -> None:
    table = DictTable({b"a": encode(_lead("a", 3)), b"b": encode(_lead("b", 4))})
    store = LeadStore(table, cache_size=10)
    assert store.leads(0, ["a"])["a"].score == 3  # cached now

    store.update(0, {}, RoutingState(), deleted=["a"])

    assert store.leads(0, ["a", "b"]) == {"b": _lead("b", 4)}  # not from the cache
    assert b"a" in table.data  # write-behind: still there until written
    entries = store.take_dirty(0)
    assert entries == [(b"a", None)]  # the changelog tombstone
    assert store.leads(0, ["a"]) == {}  # in flight: still deleted for reads
    store.written(0, entries, offset=7)
    assert set(table.data) == {b"b"}
    assert store.leads(0, ["a"]) == {}


def test_a_key_deleted_then_written_again_in_one_flush_keeps_the_new_lead() -> None:
    table = DictTable({b"a": encode(_lead("a", 3))})
    store = LeadStore(table, cache_size=10)
    store.update(0, {}, RoutingState(), deleted=["a"])
    store.update(0, {"a": _lead("a", 9)}, RoutingState())
    ((key, value),) = store.take_dirty(0)
    assert key == b"a" and value is not None and decode_state(value).score == 9
