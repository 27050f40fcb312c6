"""Lead state over the Faust table: decoded cache, and write-behind of changed leads."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Mapping

from streams.codec import decode_rotation, decode_state, encode, encode_state
from streams.routing import RoutingState
from streams.state import LeadState
from streams.table_store import LocalTable

__all__ = ["LeadStore"]


def _rotation_key(partition: int) -> bytes:
    return f"__rotation__/{partition}".encode()


class LeadStore:
    """Reads and writes lead state for the partitions this worker owns.

    `table` is the Faust table's local store (bytes -> bytes, by partition). Writing to it
    directly does not produce a changelog record: `take_dirty` hands the changed entries to
    the caller, which writes them to the changelog in one batch, then calls `written` to put
    them in the local table, and only then acknowledges the input. The local table never
    holds state the changelog lacks: with RocksDB it outlives a crash, and state ahead of
    the changelog and the outputs would make a restarted worker skip re-read events whose
    outputs were never sent. Between the two, taken entries are read from memory.
    Clean leads are kept decoded in a bounded LRU; dirty and in-flight ones stay until
    written.
    """

    def __init__(self, table: LocalTable, *, cache_size: int) -> None:
        self._table = table
        self._cache: OrderedDict[str, LeadState] = OrderedDict()
        self._cache_size = cache_size
        # None: the entry is deleted (an erasure); written as a changelog tombstone.
        self._dirty: dict[int, dict[str, LeadState | None]] = {}
        self._inflight: dict[int, dict[str, LeadState | None]] = {}
        self._rotation: dict[int, RoutingState] = {}
        self._dirty_rotation: set[int] = set()

    def leads(self, partition: int, keys: Iterable[str]) -> dict[str, LeadState]:
        dirty = self._dirty.get(partition, {})
        inflight = self._inflight.get(partition, {})
        out: dict[str, LeadState] = {}
        for key in keys:
            if key in dirty:
                lead = dirty[key]
            elif key in inflight:
                lead = inflight[key]
            else:
                lead = self._cached(partition, key)
            if lead is not None:
                out[key] = lead
        return out

    def _cached(self, partition: int, key: str) -> LeadState | None:
        lead = self._cache.get(key)
        if lead is not None:
            self._cache.move_to_end(key)
            return lead
        raw = self._table.get(partition, key.encode())
        if raw is None:
            return None
        lead = decode_state(raw)
        self._remember(key, lead)
        return lead

    def _remember(self, key: str, lead: LeadState) -> None:
        self._cache[key] = lead
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)

    def rotation(self, partition: int) -> RoutingState:
        """The partition's routing state: round-robin credits, rep loads (one per partition)."""
        if partition not in self._rotation:
            raw = self._table.get(partition, _rotation_key(partition))
            self._rotation[partition] = decode_rotation(raw) if raw else RoutingState()
        return self._rotation[partition]

    def update(
        self,
        partition: int,
        leads: Mapping[str, LeadState],
        rotation: RoutingState,
        *,
        deleted: Iterable[str] = (),
    ) -> None:
        """Changed leads, and `deleted` entries: gone from reads at once, from the table
        and its changelog (a tombstone) once written."""
        dirty = self._dirty.setdefault(partition, {})
        dirty.update(leads)
        for key in leads:
            self._cache.pop(key, None)
        for key in deleted:
            dirty[key] = None
            self._cache.pop(key, None)
        if rotation != self.rotation(partition):
            self._rotation[partition] = rotation
            self._dirty_rotation.add(partition)

    def take_dirty(self, partition: int) -> list[tuple[bytes, bytes | None]]:
        """Changed entries of a partition as (key, value) bytes, to send to the changelog;
        a deleted entry comes as (key, None): a tombstone.

        They stay readable from memory until `written` (one take per partition at a time).
        """
        taken = self._dirty.pop(partition, {})
        self._inflight.setdefault(partition, {}).update(taken)
        entries: list[tuple[bytes, bytes | None]] = [
            (key.encode(), None if lead is None else encode_state(lead))
            for key, lead in taken.items()
        ]
        if partition in self._dirty_rotation:
            self._dirty_rotation.discard(partition)
            entries.append((_rotation_key(partition), encode(self._rotation[partition])))
        return entries

    def written(
        self, partition: int, entries: list[tuple[bytes, bytes | None]], *, offset: int | None
    ) -> None:
        """`entries` (from `take_dirty`) are on the changelog up to `offset`: store them."""
        self._table.write(partition, entries, offset=offset)
        for key, lead in self._inflight.pop(partition, {}).items():
            if lead is not None:
                self._remember(key, lead)

    def forget(self, partitions: Iterable[int]) -> None:
        """Drop what we hold for partitions this worker no longer owns (or just got back)."""
        for partition in partitions:
            self._dirty.pop(partition, None)
            self._inflight.pop(partition, None)
            self._rotation.pop(partition, None)
            self._dirty_rotation.discard(partition)
        # Keys do not say their partition; dropping the whole clean cache is cheap and safe.
        self._cache.clear()
