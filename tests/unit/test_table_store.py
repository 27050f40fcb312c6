"""The table store setting, and partition-aware reads and writes of Faust's stores."""

from __future__ import annotations

from pathlib import Path

import faust
import pytest
from faust.types import TP
from pydantic import ValidationError

from streams.settings import Settings
from streams.table_store import (
    FaustLocalTable,
    StoreUnavailable,
    check_store,
    faust_store_options,
)


def test_memory_is_the_default_and_rocksdb_keys_its_directory_by_web_port() -> None:
    assert Settings().store == "memory"
    assert faust_store_options("memory", web_port=6066) == {"store": "memory://"}
    assert faust_store_options("rocksdb", web_port=6068) == {
        "store": "rocksdb://",
        "tabledir": "tables-6068",
    }


def test_an_unknown_store_is_refused_with_the_choices() -> None:
    with pytest.raises(ValidationError, match="'memory' or 'rocksdb'"):
        Settings(store="leveldb")  # type: ignore[arg-type]


def test_rocksdb_without_its_binding_is_refused_with_what_to_install() -> None:
    with pytest.raises(StoreUnavailable, match=r"needs the rocksdict package.*pip install"):
        check_store("rocksdb", installed=lambda package: False)
    check_store("memory", installed=lambda package: False)  # memory needs nothing
    check_store("rocksdb")  # installed here: a main dependency


def _table(tmp_path: Path, kind: str) -> faust.Table:
    app = faust.App(
        "t-store",
        broker="kafka://127.0.0.1:1",
        datadir=str(tmp_path),
        autodiscover=False,
        **faust_store_options(kind, web_port=7001),  # type: ignore[arg-type]
    )
    return app.Table("leads", default=None, key_type=bytes, value_type=bytes, partitions=4)


@pytest.mark.parametrize("kind", ["memory", "rocksdb"])
def test_writes_by_partition_need_no_current_event_and_read_back(tmp_path: Path, kind: str) -> None:
    table = _table(tmp_path, kind)
    local = FaustLocalTable(table)
    local.write(2, [(b"a", b"1"), (b"b", b"2")], offset=17)
    local.write(3, [(b"c", b"3")], offset=None)
    assert local.get(2, b"a") == b"1"
    assert local.get(3, b"c") == b"3"
    assert local.count() == 3
    if kind == "rocksdb":
        changelog = table.changelog_topic.get_topic_name()
        # Where recovery resumes: the offset written with the values.
        assert table.data.persisted_offset(TP(changelog, 2)) == 17
        assert local.get(2, b"c") is None  # one database per partition
        assert list((tmp_path / "v1" / "tables-7001").glob("leads-2.db"))
