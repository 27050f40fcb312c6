"""The intake in a process of its own (`LEADSTREAM_INTAKE_PROCESS=true`, or `auto`, the default,
where the worker may use 2 CPUs: `streams.cpus`): reading, validating
and forwarding raw events on another core than the leads stage.

The worker's Python thread is its bottleneck: of its CPU per event, a quarter is the intake
(aiokafka's reads of `engagement.raw`, orjson, validation, normalization, encoding the
person-events records, producing them). Here a child process runs the same `IntakeService`,
with its own consumer (the same group, `<app id>-intake`) and producer, and the worker's
main thread keeps the scoring.

What crosses between them, on a pair of pipes, in length-prefixed pickled frames (our own
processes, our own types: not a wire format):

- child -> worker: `("counters", {metric: value}, assigned)`, the intake's metrics since the
  last frame, sent as each fetch is read and again before it is forwarded (so the worker's
  `/metrics` counts a read when it happens, and a fetch before any of its effects);
  `("handover", [(partition, offset, value)])`, the person-events records it just wrote and
  the broker acknowledged, which the worker applies as it applies its own intake's
  (`decode_forwarded`: the batch as written, rebuilt without validation).
- worker -> child: `("go",)`, a credit to forward one fetch: one for each handover once
  the leads stage has applied it and caught up (the read-ahead bound, `caught_up` in
  streams/app.py), and IN_FLIGHT (1) at start-up once the table is recovered; `("stop",)`.

At-least-once holds as in-process: the child commits raw offsets only after the broker has
acknowledged the records they became, and every record is still delivered to the leads
stage by its consumer (the handover only applies it sooner). If the child dies, the worker
stops (its supervisor restarts both); what the child forwarded and did not commit is read
again and recognised by messageId.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import pickle
import signal
import struct
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import mode
from prometheus_client import CollectorRegistry

from streams.cli import setup_logging, tune_process
from streams.codec import decode_forwarded
from streams.intake_service import CaughtUp, Handover, IntakeService
from streams.kafka_connection import kafka_connection
from streams.metrics import Metrics
from streams.producer import BatchProducer
from streams.settings import Settings

__all__ = ["IntakeProcess", "apply_counters", "intake_counters", "main"]

log = logging.getLogger(__name__)

_HEADER = struct.Struct("!I")
#: What the child reports of its metrics: counters as increments, gauges as values.
_COUNTERS = ("events_received", "events_valid", "events_dead_lettered")
_GAUGES = ("intake_lag",)
#: Forwards the child may make ahead of what the worker's leads stage has applied. 2 kept
#: the worker's main thread no busier (89-91% of a backlog's drain) and let the child write
#: a partition's next record before the identity messages the stage wrote there on applying
#: the last: those then missed the handover, and so did records behind them (988 records of
#: a 600,000-event backlog handed over, against 2,349 with 1). Tried again at stop 36, once
#: such records were parked instead (streams/app.py, `handover`): the handover held
#: (1,725-1,811 records of a 300,000-event backlog, as with 1), and throughput and latency
#: moved by less than the runs' spread (2 pairs faster, 2 slower; latency 2 of 3 lower).
IN_FLIGHT = 1
#: How long a stopping worker waits for the child to finish its batch in hand and commit.
STOP_TIMEOUT_S = 40.0

Key = tuple[str, tuple[tuple[str, str], ...]]


def intake_counters(metrics: Metrics) -> dict[Key, float]:
    """The intake's metrics as they stand: (attribute, labels) -> value."""
    out: dict[Key, float] = {}
    for name in _COUNTERS + _GAUGES:
        for family in getattr(metrics, name).collect():
            for sample in family.samples:
                if sample.name.endswith("_created"):
                    continue
                out[(name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def apply_counters(metrics: Metrics, changes: dict[Key, float]) -> None:
    """Apply a child's report to the worker's metrics: counters by increment, gauges set."""
    for (name, labels), value in changes.items():
        metric = getattr(metrics, name)
        target = metric.labels(**dict(labels)) if labels else metric
        if name in _GAUGES:
            target.set(value)
        elif value > 0:
            target.inc(value)


def _frame(obj: object) -> bytes:
    body = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    return _HEADER.pack(len(body)) + body


async def _read_frame(reader: asyncio.StreamReader) -> Any:
    (size,) = _HEADER.unpack(await reader.readexactly(_HEADER.size))
    # Our own child, on pipes only the two processes hold: not untrusted data.
    return pickle.loads(await reader.readexactly(size))  # noqa: S301


async def _pipes(read_fd: int, write_fd: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=2**24)
    await loop.connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(read_fd, "rb", buffering=0)
    )
    transport, protocol = await loop.connect_write_pipe(
        asyncio.streams.FlowControlMixin, os.fdopen(write_fd, "wb", buffering=0)
    )
    writer = asyncio.StreamWriter(transport, protocol, None, loop)
    return reader, writer


class IntakeProcess(mode.Service):
    """The worker's side: starts the child, applies what it hands over, answers its
    read-ahead bound, and stops the worker (`crash`) if the child dies."""

    def __init__(
        self,
        *,
        settings: Settings,
        metrics: Metrics,
        handover: Handover | None,
        caught_up: CaughtUp | None,
        crash: Callable[[BaseException], None],
        **kwargs: object,
    ) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self._settings = settings
        self._metrics = metrics
        self._handover = handover
        self._caught_up = caught_up
        self._failed = crash
        self._assigned = False
        self._proc: asyncio.subprocess.Process | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._reader: asyncio.StreamReader | None = None
        self._stopping = False
        self._ended = asyncio.Event()

    @property
    def assigned(self) -> bool:
        """The child joined its consumer group and holds partitions (what /readyz asks)."""
        return self._assigned

    async def on_start(self) -> None:
        to_child_r, to_child_w = os.pipe()
        from_child_r, from_child_w = os.pipe()
        try:
            self._proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "streams.intake_process",
                str(to_child_r),
                str(from_child_w),
                self._settings.event_loop,
                pass_fds=(to_child_r, from_child_w),
            )
        finally:
            os.close(to_child_r)
            os.close(from_child_w)
        self._reader, self._writer = await _pipes(from_child_r, to_child_w)
        self._writer.write(_frame(("settings", self._settings, self._handover is not None)))
        await self._writer.drain()

    @mode.Service.task
    async def _run(self) -> None:
        try:
            await self._follow()
        except Exception as exc:
            if not self._stopping:
                self._failed(exc)
        finally:
            self._ended.set()

    async def _follow(self) -> None:
        reader = self._reader
        assert reader is not None
        if self._caught_up is not None:
            await self._caught_up()  # at start-up: until the table is recovered
        for _ in range(IN_FLIGHT):
            await self._send(("go",))
        while True:
            try:
                frame = await _read_frame(reader)
            except asyncio.IncompleteReadError:
                code = None if self._proc is None else await self._proc.wait()
                if self._stopping:
                    return
                raise RuntimeError(f"the intake process exited (code {code})") from None
            kind = frame[0]
            if kind == "counters":
                apply_counters(self._metrics, frame[1])
                self._assigned = frame[2]
            elif kind == "handover" and self._handover is not None:
                await self._handover(
                    [(p, offset, value, decode_forwarded(value)) for p, offset, value in frame[1]]
                )
                if self._caught_up is not None and not self._stopping:
                    await self._caught_up()
                await self._send(("go",))

    async def _send(self, message: tuple[object, ...]) -> None:
        writer = self._writer
        if writer is None or writer.is_closing():
            return
        with contextlib.suppress(ConnectionError):
            writer.write(_frame(message))
            await writer.drain()

    async def on_stop(self) -> None:
        proc = self._proc
        if proc is None:
            return
        self._stopping = True
        # The child finishes the batch in hand (forwarded, handed over, applied here) and
        # commits; this side keeps reading until it has exited.
        await self._send(("stop",))
        try:
            await asyncio.wait_for(self._ended.wait(), timeout=STOP_TIMEOUT_S)
            await asyncio.wait_for(proc.wait(), timeout=5)
        except TimeoutError:
            log.warning("intake process: not stopped after %.0f s; killed", STOP_TIMEOUT_S)
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
        if self._writer is not None:
            self._writer.close()


class _Link:
    """The child's side of the pipes: what its IntakeService calls to reach the worker."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self.metrics = Metrics.create(CollectorRegistry())
        self.intake: IntakeService | None = None  # once made (`assigned`)
        self.credits = asyncio.Semaphore(0)  # forwards the worker's leads stage allows now
        self.stop = asyncio.Event()  # asked to stop, or the worker is gone
        self._sent: dict[Key, float] = {}
        self._assigned: bool | None = None

    async def send(self, message: tuple[object, ...]) -> None:
        self._writer.write(_frame(message))
        await self._writer.drain()

    async def report(self) -> None:
        """The intake's metrics that changed since the last report, and its assignment."""
        now = intake_counters(self.metrics)
        changes = {
            key: value if key[0] in _GAUGES else value - self._sent.get(key, 0.0)
            for key, value in now.items()
            if value != self._sent.get(key)
        }
        self._sent.update(now)
        assigned = self.intake is not None and self.intake.assigned
        if changes or assigned != self._assigned:
            self._assigned = assigned
            await self.send(("counters", changes, assigned))

    async def handover(self, records: list[tuple[int, int, bytes, Any]]) -> None:
        await self.send(("handover", [(p, offset, value) for p, offset, value, _ in records]))

    async def caught_up(self) -> None:
        if not self.stop.is_set():
            await self.credits.acquire()

    async def listen(self) -> None:
        try:
            while True:
                message = await _read_frame(self._reader)
                if message[0] == "go":
                    self.credits.release()
                elif message[0] == "stop":
                    break
        except asyncio.IncompleteReadError:
            pass  # the worker is gone: stop as if asked
        self.stop.set()
        self.credits.release()  # nothing more to wait for: the batch in hand goes out


async def _child(read_fd: int, write_fd: int) -> int:
    reader, writer = await _pipes(read_fd, write_fd)
    kind, settings, with_handover = await _read_frame(reader)
    assert kind == "settings"
    setup_logging(settings)
    tune_process()
    link = _Link(reader, writer)
    kafka = kafka_connection(settings)
    producer = BatchProducer(kafka=kafka, max_batch_size=settings.producer_batch_bytes)
    listener = asyncio.ensure_future(link.listen())
    await producer.start()
    service = link.intake = IntakeService(
        settings=settings,
        kafka=kafka,
        producer=producer,
        metrics=link.metrics,
        clock=lambda: datetime.now(UTC),
        handover=link.handover if with_handover else None,
        caught_up=link.caught_up if with_handover else None,
        report=link.report,
    )
    await service.start()
    crashed = asyncio.ensure_future(service.wait_until_stopped())
    stopped = asyncio.ensure_future(link.stop.wait())
    await asyncio.wait({crashed, stopped}, return_when=asyncio.FIRST_COMPLETED)
    asked = link.stop.is_set()
    failed = service.crash_reason
    await service.stop()  # the batch in hand forwarded, then the offsets committed
    with contextlib.suppress(Exception):
        await link.report()  # the last batch's counts
    await producer.stop()
    for task in (listener, crashed, stopped):
        task.cancel()
    if not asked or failed is not None:
        log.critical("intake process: the intake failed: %r", failed)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    """`python -m streams.intake_process READ_FD WRITE_FD EVENT_LOOP`: started by the
    worker, on the event loop the worker's settings choose."""
    from streams.event_loop import use_event_loop

    args = sys.argv[1:] if argv is None else argv
    read_fd, write_fd = int(args[0]), int(args[1])
    # A stop comes from the worker, on the pipe (or as its end, if the worker is gone): a
    # SIGTERM or Ctrl-C to the whole process group must not end this one before the worker
    # has had it finish the batch in hand and commit.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    use_event_loop(args[2])  # type: ignore[arg-type]
    return asyncio.run(_child(read_fd, write_fd))


if __name__ == "__main__":
    sys.exit(main())
