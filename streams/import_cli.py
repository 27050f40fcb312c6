"""`leadstream import accounts|events`: read a CSV file, report its rows, produce the good ones."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import TextIO

from streams.csv_import import (
    CsvImportError,
    Kind,
    Prepared,
    load_mapping,
    prepare_accounts,
    prepare_events,
)
from streams.kafka_connection import KafkaConnection
from streams.kafka_io import create_topics
from streams.producer import BatchProducer, Record
from streams.topics import CRM_ACCOUNTS_TOPIC_CONFIG, CRM_ACCOUNTS_TOPIC_PARTITIONS

__all__ = ["ImportTarget", "ProgressBar", "run_import"]

#: Records per produce call: the bar moves, and memory stays flat on big files.
_CHUNK = 1000


@dataclass(frozen=True, slots=True)
class ImportTarget:
    """Where the records go."""

    broker: str  # as the user gave it, for messages
    kafka: KafkaConnection
    topic: str
    replication: int = 1


class ProgressBar:
    """`label [#####-----]  42%  1,234/2,900 rows  3,100 rows/s` on one line, redrawn in place
    at most every `every_s`; `close` ends the line."""

    def __init__(
        self,
        err: TextIO,
        *,
        clock: Callable[[], float] = time.monotonic,
        every_s: float = 0.2,
        width: int = 24,
    ) -> None:
        self._err = err
        self._clock = clock
        self._every_s = every_s
        self._width = width
        self._shown_at = float("-inf")
        self._started: dict[str, float] = {}
        self._drawn = False

    def update(self, label: str, done: int, total: int, *, unit: str = "rows") -> None:
        now = self._clock()
        started = self._started.setdefault(label, now)
        if done < total and now - self._shown_at < self._every_s:
            return
        self._shown_at = now
        share = done / total if total else 1.0
        filled = round(share * self._width)
        bar = "#" * filled + "-" * (self._width - filled)
        rate = f"  {done / (now - started):,.0f} {unit}/s" if now > started else ""
        self._err.write(f"\r{label} [{bar}] {share:4.0%}  {done:,}/{total:,} {unit}{rate}\x1b[K")
        self._err.flush()
        self._drawn = True

    def close(self) -> None:
        if self._drawn:
            self._err.write("\n")
            self._err.flush()
            self._drawn = False


def run_import(
    kind: Kind,
    *,
    file: Path,
    mapping: Path | None,
    target: ImportTarget,
    source: str | None = None,
    default_date: date | None = None,
    dry_run: bool,
    progress: bool,
    now: datetime,
    out: TextIO,
    err: TextIO,
) -> int:
    """Read, check and (unless `dry_run`) produce; 0 if every row went, 1 if rows were
    rejected or the broker failed, 2 if the file or mapping cannot be used at all."""
    bar = ProgressBar(err) if progress else None
    try:
        data = file.read_bytes()
        mapping_text = mapping.read_text(encoding="utf-8") if mapping is not None else None
    except (OSError, UnicodeDecodeError) as exc:
        what = mapping if mapping is not None and not isinstance(exc, OSError) else file
        print(f"leadstream: cannot read {what}: {_why(exc)}", file=err)
        return 2
    try:
        columns = load_mapping(mapping_text, kind=kind)
        validating = (lambda done, total: bar.update("checking ", done, total)) if bar else None
        if kind == "accounts":
            prepared = prepare_accounts(data, mapping=columns, now=now, progress=validating)
        else:
            assert source is not None
            prepared = prepare_events(
                data,
                mapping=columns,
                source=source,
                default_date=default_date,
                progress=validating,
            )
    except CsvImportError as exc:
        if bar:
            bar.close()
        where = mapping if str(exc).startswith("mapping:") and mapping is not None else file
        print(f"leadstream: {where}: {exc}", file=err)
        return 2
    if bar:
        bar.close()
    _describe(file, prepared, out)
    for rejected in prepared.rejected:
        print(f"{file}:{rejected.line}: {rejected.reason}: {rejected.message}", file=err)
    if not dry_run and prepared.records:
        logging.getLogger("aiokafka").setLevel(logging.CRITICAL)  # one line below says it all
        try:
            asyncio.run(_produce(kind, target, prepared.records, bar))
        except Exception as exc:  # connection refused, unknown host, timeouts
            if bar:
                bar.close()
            print(
                f"leadstream: cannot import to {target.broker}: {target.kafka.failure(exc)}",
                file=err,
            )
            return 1
        if bar:
            bar.close()
    print(_summary(kind, prepared, target.topic, dry_run=dry_run), file=out)
    return 1 if prepared.rejected else 0


async def _produce(
    kind: Kind,
    target: ImportTarget,
    records: Sequence[tuple[bytes, bytes]],
    bar: ProgressBar | None,
) -> None:
    if kind == "accounts":
        await create_topics(
            target.kafka,
            [target.topic],
            CRM_ACCOUNTS_TOPIC_PARTITIONS,
            target.replication,
            configs=CRM_ACCOUNTS_TOPIC_CONFIG,
        )
    producer = BatchProducer(kafka=target.kafka)
    try:
        for start in range(0, len(records), _CHUNK):
            chunk = records[start : start + _CHUNK]
            await producer.send(Record(target.topic, key, value) for key, value in chunk)
            if bar:
                bar.update("producing", start + len(chunk), len(records), unit="records")
    finally:
        await producer.stop()


def _describe(file: Path, prepared: Prepared, out: TextIO) -> None:
    blank = f", {prepared.blank} blank line(s) skipped" if prepared.blank else ""
    print(f"{file}: {prepared.encoding}, {prepared.rows:,} row(s){blank}", file=out)
    used = ", ".join(f"{name} <- {header}" for name, header in prepared.columns.items())
    print(f"columns: {used}", file=out)


def _summary(kind: Kind, prepared: Prepared, topic: str, *, dry_run: bool) -> str:
    if kind == "accounts":
        what = f"{prepared.accepted:,} account(s)"
    else:
        what = f"{prepared.accepted:,} row(s) as {len(prepared.records):,} messages"
    verb = "would produce" if dry_run else "produced"
    parts = [f"{verb} {what} to {topic}"]
    if prepared.rejected:
        reasons = ", ".join(f"{r} {n}" for r, n in prepared.rejected_by_reason().items())
        parts.append(f"rejected {len(prepared.rejected):,} row(s): {reasons}")
    else:
        parts.append("rejected 0 rows")
    if prepared.duplicates:
        parts.append(f"{prepared.duplicates:,} duplicate row(s) skipped")
    if dry_run:
        parts.append("dry run: nothing was sent")
    return "; ".join(parts)


def _why(exc: BaseException) -> str:
    if isinstance(exc, OSError):
        return exc.strerror or str(exc)
    return f"not UTF-8 text ({exc})"
