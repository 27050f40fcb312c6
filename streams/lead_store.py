"""Lead state over the Faust table: decoded cache, and write-behind of changed leads."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Mapping, MutableMapping

from streams.codec import decode_rotation, decode_state, encode
from streams.routing import RoutingState
from streams.state import LeadState

__all__ = ["LeadStore"]


def _rotation_key(partition: int) -> bytes:
    return f"__rotation__/{partition}".encode()


class LeadStore:
    """Reads and writes lead state for the partitions this worker owns.

    `table` is the Faust table's local store (bytes -> bytes). Writing to it directly does
    not produce a changelog record: `take_dirty` hands the changed entries to the caller,
    which writes them to the changelog in one batch and only then acknowledges the input.
    Clean leads are kept decoded in a bounded LRU; dirty ones stay until taken.
    """

    def __init__(self, table: MutableMapping[bytes, bytes], *, cache_size: int) -> None:
        self._table = table
        self._cache: OrderedDict[str, LeadState] = OrderedDict()
        self._cache_size = cache_size
        # None: the entry is deleted (an erasure); written as a changelog tombstone.
        self._dirty: dict[int, dict[str, LeadState | None]] = {}
        self._rotation: dict[int, RoutingState] = {}
        self._dirty_rotation: set[int] = set()

    def leads(self, partition: int, keys: Iterable[str]) -> dict[str, LeadState]:
        dirty = self._dirty.get(partition, {})
        out: dict[str, LeadState] = {}
        for key in keys:
            lead = dirty[key] if key in dirty else self._cached(key)
            if lead is not None:
                out[key] = lead
        return out

    def _cached(self, key: str) -> LeadState | None:
        lead = self._cache.get(key)
        if lead is not None:
            self._cache.move_to_end(key)
            return lead
        raw = self._table.get(key.encode())
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
            raw = self._table.get(_rotation_key(partition))
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
        and its changelog (a tombstone) at the next `take_dirty`."""
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
        """Changed entries of a partition as (key, value) bytes, now written to the table;
        a deleted entry is gone from it and comes as (key, None): a changelog tombstone."""
        entries: list[tuple[bytes, bytes | None]] = []
        for key, lead in self._dirty.pop(partition, {}).items():
            if lead is None:
                self._table.pop(key.encode(), None)
                entries.append((key.encode(), None))
                continue
            raw_key, value = key.encode(), encode(lead)
            self._table[raw_key] = value
            self._remember(key, lead)
            entries.append((raw_key, value))
        if partition in self._dirty_rotation:
            self._dirty_rotation.discard(partition)
            raw_key, value = _rotation_key(partition), encode(self._rotation[partition])
            self._table[raw_key] = value
            entries.append((raw_key, value))
        return entries

    def forget(self, partitions: Iterable[int]) -> None:
        """Drop what we hold for partitions this worker no longer owns (or just got back)."""
        for partition in partitions:
            self._dirty.pop(partition, None)
            self._rotation.pop(partition, None)
            self._dirty_rotation.discard(partition)
        # Keys do not say their partition; dropping the whole clean cache is cheap and safe.
        self._cache.clear()
