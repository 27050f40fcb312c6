"""The table store: memory or RocksDB, and partition-aware access to a Faust table's local data.

`LEADSTREAM_STORE=memory` keeps table state in the worker's memory: a restarted worker reads
every table's whole changelog again. `rocksdb` keeps it on disk under the data dir (one
RocksDB per table partition, through `rocksdict`): a restarted worker on the same data dir
reads only the changelog records written after the offset its local state holds.

Faust's RocksDB store finds a key's partition from the event being processed; the lead
store writes from a flusher with no current event, so it goes through `LocalTable`, which
names the partition explicitly.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Literal, Protocol

from faust.types import TP

__all__ = [
    "DictTable",
    "FaustLocalTable",
    "LocalTable",
    "StoreUnavailable",
    "check_store",
    "faust_store_options",
]

StoreKind = Literal["memory", "rocksdb"]


class StoreUnavailable(RuntimeError):
    """The configured store cannot be used on this machine."""


def _installed(package: str) -> bool:
    return importlib.util.find_spec(package) is not None


def check_store(kind: StoreKind, *, installed: Callable[[str], bool] = _installed) -> None:
    """Raise `StoreUnavailable` with what to do when `kind` cannot be used here."""
    if kind == "rocksdb" and not installed("rocksdict"):
        raise StoreUnavailable(
            "LEADSTREAM_STORE=rocksdb needs the rocksdict package, which is not installed "
            "(pip install rocksdict, or reinstall leadstream; it ships manylinux wheels for "
            "x86_64 and aarch64). LEADSTREAM_STORE=memory needs nothing."
        )


def faust_store_options(kind: StoreKind, *, web_port: int) -> dict[str, Any]:
    """The `faust.App` keyword arguments for the store.

    RocksDB takes a lock per partition database: two workers on one data dir would wait on
    each other and then crash. The table directory is keyed by the web port, which two
    workers on one host cannot share, so they never meet on the same files.
    """
    if kind == "memory":
        return {"store": "memory://"}
    check_store(kind)
    # Faust's `rocksdb://` store uses rocksdict when it is installed (python-rocksdb is not).
    return {"store": "rocksdb://", "tabledir": f"tables-{web_port}"}


class LocalTable(Protocol):
    """A table's local data, read and written by partition."""

    def get(self, partition: int, key: bytes) -> bytes | None: ...

    def write(
        self, partition: int, entries: Sequence[tuple[bytes, bytes | None]], *, offset: int | None
    ) -> None:
        """Write `entries` (a None value deletes the key); `offset`: the changelog offset
        they reach (None: unknown)."""
        ...


class DictTable:
    """A plain dict as the local table (unit tests)."""

    def __init__(self, data: dict[bytes, bytes] | None = None) -> None:
        self.data: dict[bytes, bytes] = {} if data is None else data
        self.offsets: dict[int, int] = {}

    def get(self, partition: int, key: bytes) -> bytes | None:
        return self.data.get(key)

    def write(
        self, partition: int, entries: Sequence[tuple[bytes, bytes | None]], *, offset: int | None
    ) -> None:
        for key, value in entries:
            if value is None:
                self.data.pop(key, None)
            else:
                self.data[key] = value
        if offset is not None:
            self.offsets[partition] = offset


class FaustLocalTable:
    """A Faust table's local store (`table.data`), memory or RocksDB, by partition."""

    def __init__(self, table: Any) -> None:
        self._table = table
        self._data = table.data
        # Faust's RocksDB store keeps one database per partition.
        self._rocks = hasattr(self._data, "_db_for_partition")

    def _tp(self, partition: int) -> TP:
        return TP(self._table.changelog_topic.get_topic_name(), partition)

    def get(self, partition: int, key: bytes) -> bytes | None:
        if self._rocks:
            value: bytes | None = self._data._db_for_partition(partition).get(key)
            return value
        return self._data.get(key)

    def write(
        self, partition: int, entries: Sequence[tuple[bytes, bytes | None]], *, offset: int | None
    ) -> None:
        if not entries:
            return
        if not self._rocks:
            for key, value in entries:
                if value is None:
                    self._data.pop(key, None)
                else:
                    self._data[key] = value
            return
        import rocksdict

        batch = rocksdict.WriteBatch(raw_mode=True)
        for key, value in entries:
            if value is None:
                batch.delete(key)
            else:
                batch.put(key, value)
        self._data._db_for_partition(partition).write(batch)
        if offset is not None:
            # Written after the values: a crash in between leaves an older offset, and
            # recovery re-reads from there (the same values again), never skips a record.
            self.persisted(partition, offset)

    def persisted(self, partition: int, offset: int) -> None:
        """The changelog holds what `write` stored for `partition` up to `offset`: with
        RocksDB, where recovery resumes (an earlier offset only re-reads records)."""
        if self._rocks:
            self._data.set_persisted_offset(self._tp(partition), offset)

    def items(self) -> Iterator[tuple[bytes, bytes]]:
        """Every entry of the partitions this worker owns as active (memory: all it holds)."""
        yield from list(self._data.items())

    def all_keys(self) -> list[bytes]:
        return list(self._data.keys())

    def count(self) -> float:
        """Entries held locally, actives and standbys (RocksDB: its estimate, no scan)."""
        if self._rocks:
            offset_key = self._data.offset_key  # Faust's bookkeeping, not an entry
            return float(
                sum(
                    _prop(db, "rocksdb.estimate-num-keys") - (db.get(offset_key) is not None)
                    for db in self._dbs()
                )
            )
        return float(len(self._data.data))

    def size_bytes(self) -> float:
        """Bytes of values held locally (RocksDB: live data size on disk, compressed)."""
        if self._rocks:
            return float(sum(_prop(db, "rocksdb.estimate-live-data-size") for db in self._dbs()))
        return float(sum(len(v) for v in self._data.data.values()))

    def _dbs(self) -> list[Any]:
        return list(self._data._dbs.values())

    def path(self) -> Path | None:
        """Where the RocksDB databases are (None for memory)."""
        return Path(self._data.path) if self._rocks else None


def _prop(db: Any, name: str) -> int:
    value = db.property_int_value(name)
    return int(value) if value is not None else 0
