"""Runs the pipeline and the baseline on the same broker with the same traffic; measures them."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import statistics
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any, NamedTuple

import orjson
from aiokafka import ConsumerRecord

from loadtest.generator import DEFAULT_PAYLOAD, Generator, Message, Payload
from loadtest.writes import read_window, run_topics, summarize
from streams.broker import EmbeddedBroker, free_port, start_worker_process, stop_process_group
from streams.cpus import available_cpus
from streams.kafka_io import create_topics, tail
from streams.metrics import STATE_BYTES_MAX_AGE_S
from streams.producer import BatchProducer, Record
from streams.settings import Settings
from streams.topics import Topics

__all__ = [
    "Drained",
    "Options",
    "Sample",
    "end_to_end",
    "next_poll_s",
    "run",
    "sustained",
    "traffic",
]

MODEL = Path(__file__).parent / "lead_model.yaml"
_CLK_TCK = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")


@dataclass(frozen=True)
class Options:
    bootstrap: str | None
    flavor: str
    events: int
    rate: int
    duration_s: float
    leads: int
    seed: int
    bad_rate: float
    baseline: bool
    workers: int
    partitions: int
    fetch_wait_ms: int
    json_path: Path | None
    repartition_fetch_wait_ms: int | None = None
    cover: bool = False
    session_timeout_s: float = 6
    heartbeat_interval_s: float = 1
    store: str = "memory"  # LEADSTREAM_STORE of the workers
    handover: bool = True  # LEADSTREAM_HANDOVER of the workers
    intake_process: bool | None = None  # LEADSTREAM_INTAKE_PROCESS; None: as the env says
    payload: Payload = DEFAULT_PAYLOAD  # the generator's messages (loadtest/generator.py)


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# --- workers ---------------------------------------------------------------------------------


@dataclass
class Worker:
    proc: subprocess.Popen[bytes]
    web_port: int
    log_path: Path
    cpu_start: float = 0.0

    def _metrics_text(self) -> str:
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{self.web_port}/metrics", timeout=5
            ) as r:
                return str(r.read().decode())
        except OSError:
            return ""

    def metrics(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for line in self._metrics_text().splitlines():
            match = re.match(r"^(leadstream_[a-z_]+)(?:\{[^}]*\})? (\S+)$", line)
            if match:
                out[match.group(1)] = out.get(match.group(1), 0.0) + float(match.group(2))
        return out

    def core(self) -> str:
        """The scoring core the worker runs (`leadstream_core_info`): compiled or python."""
        found = re.search(
            r'^leadstream_core_info\{core="(\w+)"\} 1\.0$', self._metrics_text(), re.M
        )
        return found.group(1) if found else "unknown"

    def cpu_s(self) -> float:
        """CPU seconds of the worker and of its processes (the intake process)."""
        total = 0
        for pid in process_tree(self.proc.pid):
            with contextlib.suppress(OSError):
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                total += int(fields[11]) + int(fields[12])
        return total / _CLK_TCK

    def rss_mib(self) -> float:
        """Resident memory of the worker and of its processes."""
        pages = 0
        for pid in process_tree(self.proc.pid):
            with contextlib.suppress(OSError):
                pages += int(Path(f"/proc/{pid}/statm").read_text().split()[1])
        return pages * _PAGE / 2**20

    def stop(self) -> None:
        stop_process_group(self.proc, timeout_s=20)


def process_tree(pid: int) -> list[int]:
    """`pid` and the processes it started, theirs too (Linux's /proc task children)."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        with contextlib.suppress(OSError):
            for task in Path(f"/proc/{current}/task").iterdir():
                todo += (int(c) for c in (task / "children").read_text().split())
    return found


def start_workers(
    opts: Options,
    bootstrap: str,
    topics: Topics,
    app_id: str,
    workdir: Path,
    *,
    only: int | None = None,
    ports: list[int] | None = None,
) -> list[Worker]:
    """`opts.workers` workers, or only worker number `only` (a restart: same log, same data).
    `ports`: the web ports by worker number (a restarted worker keeps its port, and with it
    its RocksDB directory); default: free ones."""
    workers = []
    for n in range(opts.workers) if only is None else (only,):
        port = ports[n] if ports is not None else free_port()
        log_path = workdir / f"{app_id}-worker-{n}.log"
        env = {
            **os.environ,
            **Settings(
                broker=f"kafka://{bootstrap}",
                broker_flavor=opts.flavor,
                app_id=app_id,
                topic_prefix=topics.prefix,
                partitions=opts.partitions,
                web_host="127.0.0.1",
                web_port=port,
                data_dir=workdir / f"{app_id}-{n}",
                store=opts.store,
                handover=opts.handover,
                fetch_wait_ms=opts.repartition_fetch_wait_ms or opts.fetch_wait_ms,
                intake_fetch_wait_ms=opts.fetch_wait_ms,
                session_timeout_s=opts.session_timeout_s,
                heartbeat_interval_s=opts.heartbeat_interval_s,
                log_level="warning",
                model_path=MODEL,
                intake_process=_intake_process(opts),
            ).to_env(),
        }
        workers.append(Worker(start_worker_process(env, log_path), port, log_path))
    return workers


def total(workers: list[Worker], name: str) -> float:
    return sum(w.metrics().get(name, 0.0) for w in workers)


# --- traffic ---------------------------------------------------------------------------------


async def preload(bootstrap: str, topic: str, messages: list[Message]) -> float:
    producer = BatchProducer(kafka=bootstrap)
    started = time.monotonic()
    try:
        for i in range(0, len(messages), 20_000):
            chunk = messages[i : i + 20_000]
            await producer.send(Record(topic, m.key, m.value) for m in chunk)
    finally:
        await producer.stop()
    return len(messages) / (time.monotonic() - started)


async def paced(bootstrap: str, topic: str, gen: Generator, *, rate: int, duration_s: float) -> int:
    """Produce `rate` events/s for `duration_s`, stamped with the time they are sent."""
    producer = BatchProducer(kafka=bootstrap)
    sent = 0
    started = time.monotonic()
    try:
        while (elapsed := time.monotonic() - started) < duration_s:
            due = int(elapsed * rate) - sent
            if due > 0:
                now_ms = int(time.time() * 1000)
                await producer.send(
                    Record(topic, m.key, m.value)
                    for m in (gen.next(now_ms=now_ms) for _ in range(due))
                )
                sent += due
            await asyncio.sleep(0.005)
    finally:
        await producer.stop()
    return sent


class LatencyProbe:
    """Event time to the alert record's timestamp (its produce time), per alert of an event
    stamped at or after `since_ms`: the warm-up's alerts may come after the timed traffic
    has begun (one, 4.5-5 s after its event, was a 30-second run's max_ms)."""

    def __init__(self, since_ms: float = 0) -> None:
        self.samples_ms: list[float] = []
        self.since_ms = since_ms

    def __call__(self, record: ConsumerRecord) -> None:
        doc = orjson.loads(record.value)
        event_at = datetime.fromisoformat(doc["event_at"]).timestamp() * 1000
        if event_at >= self.since_ms:
            self.samples_ms.append(record.timestamp - event_at)

    def summary(self) -> dict[str, float]:
        s = sorted(self.samples_ms)
        if not s:
            return {"alerts": 0}
        q = statistics.quantiles(s, n=100, method="inclusive") if len(s) > 1 else [s[0]] * 99
        return {
            "alerts": len(s),
            "p50_ms": q[49],
            "p90_ms": q[89],
            "p99_ms": q[98],
            "max_ms": s[-1],
        }


# --- phases ----------------------------------------------------------------------------------


@dataclass
class Report:
    options: dict[str, Any]
    results: dict[str, Any] = field(default_factory=dict)


async def wait_processed(
    workers: list[Worker], target: float, *, label: str, timeout_s: float = 900
) -> Drained:
    """Poll until the leads stage applied `target` events; how fast it went (`Drained`)."""
    samples: list[Sample] = []
    last_print = 0.0
    deadline = time.monotonic() + timeout_s
    for w in workers:
        w.cpu_start = w.cpu_s()
    while True:
        now = time.monotonic()
        read = [w.metrics() for w in workers]
        each = [m.get("leadstream_events_processed_total", 0.0) for m in read]
        done = sum(each)
        received = sum(m.get("leadstream_events_received_total", 0.0) for m in read)
        samples.append(Sample(now, done, all_in=min(each) > 0, received=received))
        if now - last_print >= 2:
            last_print = now
            recent = [s for s in samples if s.at >= now - 2]
            rate = (done - recent[0].done) / (now - recent[0].at) if now > recent[0].at else 0.0
            shares = "" if len(each) < 2 else "  (" + ", ".join(f"{n:,.0f}" for n in each) + ")"
            log(
                f"  [{label}] applied {done:,.0f}/{target:,.0f}  {rate:,.0f} events/s now  "
                f"lag {target - done:,.0f}{shares}"
            )
        if done >= target:
            cpu = sum(w.cpu_s() - w.cpu_start for w in workers)
            return Drained(sustained(samples, target), end_to_end(samples, target), cpu)
        if now > deadline:
            raise TimeoutError(f"{label}: only {done:,.0f} of {target:,.0f} applied")
        if any(w.proc.poll() is not None for w in workers):
            raise RuntimeError(f"{label}: a worker exited; see {workers[0].log_path}")
        await asyncio.sleep(next_poll_s(samples, target))


#: How often `wait_processed` reads the workers' metrics: each read costs a worker a few
#: milliseconds of CPU, so not often; but the last second of a drain more often, since the
#: end of the end-to-end time is the first read that finds every event applied.
POLL_S = 0.5
FINAL_POLL_S = 0.05
FINAL_S = 1.0


def next_poll_s(samples: list[Sample], target: float) -> float:
    """How long to wait before the next read of the workers' metrics: FINAL_POLL_S when,
    at the rate of the last FINAL_S, the rest of `target` is applied within FINAL_S; else
    POLL_S. (At POLL_S throughout, the end read ~0.25 s late on average: ~2.5% of a
    10-second drain, counted against the pipeline, while the baselines time their last
    record exactly.)"""
    last = samples[-1]
    since = [s for s in samples if s.at >= last.at - FINAL_S]
    first = since[0]
    if last.at <= first.at or last.done <= first.done:
        return POLL_S  # no rate yet, or nothing applied of late (stalled: no faster reads)
    rate = (last.done - first.done) / (last.at - first.at)
    return FINAL_POLL_S if (target - last.done) / rate <= FINAL_S else POLL_S


class Sample(NamedTuple):
    """The events the workers had applied in all at monotonic time `at` (s), whether each
    of them had applied some by then, and the raw events their intakes had read."""

    at: float
    done: float
    all_in: bool = True
    received: float = 0.0


class Drained(NamedTuple):
    """How fast a backlog went through (events/s), and the workers' CPU seconds for it.

    `end_to_end`: from the intakes' first read to the last event applied, the way the
    baseline loops are timed (first record to last); the figure the ratios use.
    `sustained`: the slope between 10% and 90% applied. It leaves out start-up but also
    whatever the intake did before the 10% mark: with an intake free to read ahead, most of
    a backlog's reading, so it flatters the pipeline (see README, Performance).
    """

    sustained: float
    end_to_end: float
    cpu_s: float


def end_to_end(samples: list[Sample], target: float) -> float:
    """`target` events over the time from the intakes' first read to the sample at which
    all were applied. The first read falls between the last sample with nothing read and
    the next one: their midpoint."""
    end = next((s for s in samples if s.done >= target), samples[-1])
    idle = [s for s in samples if s.received == 0 and s.at < end.at]
    if not idle:
        start = samples[0].at
    else:
        after = next((s for s in samples if s.at > idle[-1].at), end)
        start = (idle[-1].at + after.at) / 2
    return end.done / (end.at - start) if end.at > start else 0.0


def sustained(samples: list[Sample], target: float) -> float:
    """Events/s between 10% and 90% of `target`, starting no earlier than the first sample
    at which every worker was applying (a worker that joins late rebalances the group, and
    the others' pause then is start-up, not throughput). A run too short for that slope:
    from the last idle sample to the end."""
    hi = next((s for s in samples if s.done >= 0.9 * target), samples[-1])
    first = next((s for s in samples if s.done >= 0.1 * target), samples[0])
    # No sample with every worker applying before 90%: the 10% mark, as with one worker.
    lo = next((s for s in samples if s.at >= first.at and s.all_in and s.at < hi.at), first)
    if hi.at <= lo.at:
        idle = [s.at for s in samples if s.done == 0]
        start = idle[-1] if idle else samples[0].at
        end = samples[-1].at
        return samples[-1].done / (end - start) if end > start else 0.0
    return (hi.done - lo.done) / (hi.at - lo.at)


def traffic(opts: Options, *, seed: int | None = None, cover: bool = False) -> Generator:
    """The run's traffic: `opts`' people, seed, bad-message rate and payload."""
    return Generator(
        leads=opts.leads,
        seed=opts.seed if seed is None else seed,
        bad_rate=opts.bad_rate,
        cover=cover,
        payload=opts.payload,
    )


async def throughput(opts: Options, bootstrap: str, workdir: Path, report: Report) -> None:
    gen = traffic(opts, cover=opts.cover)
    now_ms = int(time.time() * 1000)
    messages = [gen.next(now_ms=now_ms) for _ in range(opts.events)]
    valid = sum(1 for m in messages if m.key is not None)
    run_id = uuid.uuid4().hex[:6]

    topics = Topics(prefix=f"lt{run_id}p.")
    await create_topics(bootstrap, topics.all(), opts.partitions)
    log(f"throughput: preloading {opts.events:,} events ({opts.leads:,} leads) ...")
    produce_rate = await preload(bootstrap, topics.raw, messages)
    workers = start_workers(opts, bootstrap, topics, f"lt{run_id}", workdir)
    try:
        drained = await wait_processed(workers, valid, label="pipeline")
        rate, cpu = drained.end_to_end, drained.cpu_s
        # The state gauges, read by the progress lines, may be that old: a reading now
        # would miss the leads of the last seconds (and the write-behind's last flush).
        log(f"throughput: drained; waiting {STATE_BYTES_MAX_AGE_S:.0f} s for fresh state sizes ...")
        await asyncio.sleep(STATE_BYTES_MAX_AGE_S + 0.5)
        metrics = [w.metrics() for w in workers]
        result: dict[str, Any] = {
            "events": opts.events,
            "valid": valid,
            "payload": opts.payload,
            "bytes_per_event": round(sum(len(m.value) for m in messages) / max(len(messages), 1)),
            "events_per_s": round(rate),
            "sustained_events_per_s": round(drained.sustained),
            "cpu_s_per_1k_events": round(cpu / valid * 1000, 3),
            "worker_rss_mib": [round(w.rss_mib(), 1) for w in workers],
            "leads_stored": sum(m.get("leadstream_leads_stored", 0) for m in metrics),
            "state_bytes": sum(m.get("leadstream_state_bytes", 0) for m in metrics),
            "alerts": sum(m.get("leadstream_alerts_total", 0) for m in metrics),
            # Person-events records applied as their worker wrote them; the rest were
            # decoded again on the consumer path.
            "handed_over_records": sum(
                m.get("leadstream_handed_over_records_total", 0) for m in metrics
            ),
            "preload_events_per_s": round(produce_rate),
            "core": ",".join(sorted({w.core() for w in workers})),
        }
        stored = result["leads_stored"] or 1
        result["state_bytes_per_lead"] = round(result["state_bytes"] / stored)
        report.results["pipeline"] = result
    finally:
        for w in workers:
            w.stop()

    if opts.baseline:
        btopic = f"lt{run_id}b.engagement.raw"
        await create_topics(bootstrap, [btopic, f"lt{run_id}b.alerts"], opts.partitions)
        await preload(bootstrap, btopic, messages)
        # Both loops read the same records, each in its own group: the tuned one (`ratio`),
        # then the loop as the issue describes it (`ratio_plain`).
        for style, suffix, what in (
            ("tuned", "", "raw aiokafka loop"),
            ("plain", "_plain", "plain loop (one record at a time, a send per alert)"),
        ):
            log(f"throughput: baseline {what} ...")
            proc = await _spawn_baseline(
                opts, bootstrap, btopic, f"lt{run_id}b.alerts", events=opts.events, style=style
            )
            out, _ = await proc.communicate()
            base = orjson.loads(out.splitlines()[-1])
            report.results[f"baseline{suffix}"] = {
                "events_per_s": round(base["rate"]),
                "events": base["events"],
            }
            report.results[f"ratio{suffix}"] = round(rate / base["rate"], 3)


async def latency(opts: Options, bootstrap: str, workdir: Path, report: Report) -> None:
    run_id = uuid.uuid4().hex[:6]
    topics = Topics(prefix=f"lt{run_id}l.")
    await create_topics(bootstrap, topics.all(), opts.partitions)
    workers = start_workers(opts, bootstrap, topics, f"lt{run_id}", workdir)
    gen = traffic(opts, seed=opts.seed + 1)
    probe = LatencyProbe()
    watcher = asyncio.create_task(
        tail(bootstrap, topics.alerts, probe, fetch_wait_ms=opts.fetch_wait_ms)
    )
    try:
        await paced(bootstrap, topics.raw, gen, rate=10, duration_s=1)  # warm-up: joins groups
        await wait_processed(workers, 1, label="warm-up", timeout_s=120)
        log(f"latency: {opts.rate:,} events/s for {opts.duration_s:.0f} s ...")
        for w in workers:
            w.cpu_start = w.cpu_s()
        since_ms = int(time.time() * 1000)
        probe.samples_ms.clear()
        probe.since_ms = since_ms  # events are stamped with their send time (`paced`)
        sent = await paced(bootstrap, topics.raw, gen, rate=opts.rate, duration_s=opts.duration_s)
        await asyncio.sleep(3 * opts.fetch_wait_ms / 1000 + 1)
        until_ms = int(time.time() * 1000)
        cpu = sum(w.cpu_s() - w.cpu_start for w in workers)
        report.results["latency"] = {
            "rate": opts.rate,
            "sent": sent,
            "worker_cpu_pct": round(100 * cpu / opts.duration_s, 1),
            "worker_rss_mib": [round(w.rss_mib(), 1) for w in workers],
            "lag": max(0.0, sent - total(workers, "leadstream_events_received_total")),
            # Person-events records applied as their worker wrote them (the rest took the
            # consumer hop): the intake's, each with the events of one fetch for one
            # partition, and the leads stage's identity messages.
            "handed_over_records": total(workers, "leadstream_handed_over_records_total"),
            **probe.summary(),
        }
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
        for w in workers:
            w.stop()
    report.results["writes"] = await _writes(
        bootstrap, f"lt{run_id}", sent, opts.duration_s, since_ms=since_ms, until_ms=until_ms
    )

    if opts.baseline:
        # The same traffic through each raw loop in turn, on topics of its own: the tuned
        # one (`latency_p99_ratio`), then the loop as the issue describes it (`_plain`).
        for style, suffix in (("tuned", ""), ("plain", "_plain")):
            log(f"latency: baseline {style} loop, {opts.rate:,} events/s ...")
            summary = await _loop_latency(opts, bootstrap, f"lt{run_id}b{suffix}.", style)
            report.results[f"latency_baseline{suffix}"] = summary
            ours = report.results["latency"].get("p99_ms")
            theirs = summary.get("p99_ms")
            if ours and theirs:
                report.results[f"latency_p99_ratio{suffix}"] = round(ours / theirs, 2)


async def _writes(
    bootstrap: str, run: str, events: int, seconds: float, *, since_ms: int, until_ms: int
) -> dict[str, Any]:
    """What the latency phase's pipeline wrote to the broker while it was timed, by topic
    (loadtest/writes.py): the pipeline's topics (`<run>l.`) and Faust's changelogs
    (`<run>-`), named without the run's prefix. If they cannot be read, the error instead:
    the run's other figures are still reported."""
    try:
        names = await run_topics(bootstrap, [f"{run}l.", f"{run}-"])
        log(f"latency: counting what was written to {len(names)} topics ...")
        counted = {n: n.removeprefix(f"{run}l.").removeprefix(f"{run}-") for n in names}
        written = await read_window(bootstrap, counted, since_ms=since_ms, until_ms=until_ms)
    except Exception as exc:  # a broker gone, a topic not read to its end in time
        log(f"latency: what was written could not be counted: {exc!r}")
        return {"error": repr(exc)}
    return summarize(written, events=events, seconds=seconds)


async def _loop_latency(opts: Options, bootstrap: str, prefix: str, style: str) -> dict[str, float]:
    """A raw loop's latency on the latency phase's traffic: event time to its alerts."""
    btopic, balerts = f"{prefix}engagement.raw", f"{prefix}alerts"
    await create_topics(bootstrap, [btopic, balerts], opts.partitions)
    bprobe = LatencyProbe()
    watcher = asyncio.create_task(
        tail(bootstrap, balerts, bprobe, fetch_wait_ms=opts.fetch_wait_ms)
    )
    proc = await _spawn_baseline(
        opts, bootstrap, btopic, balerts, events=10**12, timeout_s=opts.duration_s + 15, style=style
    )
    try:
        assert proc.stdout is not None
        said = await asyncio.wait_for(proc.stdout.readline(), 60)
        if said.strip() != b"ready":  # it owns partitions: what is sent now is timed
            raise RuntimeError(f"the {style} baseline loop did not start (it said {said!r})")
        gen = traffic(opts, seed=opts.seed + 1)
        await paced(bootstrap, btopic, gen, rate=opts.rate, duration_s=opts.duration_s)
        await asyncio.sleep(3 * opts.fetch_wait_ms / 1000 + 1)
    finally:
        proc.terminate()
        await proc.wait()
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
    return bprobe.summary()


async def _spawn_baseline(
    opts: Options,
    bootstrap: str,
    topic: str,
    alerts: str,
    *,
    events: int,
    timeout_s: float = 600,
    style: str = "tuned",
) -> asyncio.subprocess.Process:
    """A raw loop (`loadtest/baseline.py`) in its own process (its own core share, like the
    worker's)."""
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "loadtest.baseline", "--bootstrap", bootstrap,
        "--topic", topic, "--alerts", alerts, "--events", str(events),
        "--fetch-wait-ms", str(opts.fetch_wait_ms), "--timeout", str(timeout_s),
        "--style", style, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip


@contextlib.contextmanager
def broker_for(opts: Options, workdir: Path) -> Iterator[str]:
    if opts.bootstrap:
        yield opts.bootstrap
        return
    with EmbeddedBroker(free_port(), log=workdir / "broker.log") as broker:
        log(f"embedded broker (Tansu) on {broker.bootstrap}")
        yield broker.bootstrap


def _intake_process(opts: Options) -> bool:
    """Whether the workers run their intake in a child process: as asked, else as the
    environment's LEADSTREAM_INTAKE_PROCESS decides on this machine (auto: from 2 CPUs)."""
    if opts.intake_process is not None:
        return opts.intake_process
    return Settings().intake_in_own_process(available_cpus())


def run(opts: Options, *, phases: list[Callable[..., Any]] | None = None) -> Report:
    workdir = Path("loadtest/results").resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    if opts.intake_process is None:  # as the environment sets it: say which
        opts = replace(opts, intake_process=_intake_process(opts))
    report = Report(
        options={k: str(v) if isinstance(v, Path) else v for k, v in vars(opts).items()}
    )
    with broker_for(opts, workdir) as bootstrap:
        if opts.events:
            asyncio.run(throughput(opts, bootstrap, workdir, report))
        if opts.rate:
            asyncio.run(latency(opts, bootstrap, workdir, report))
    return report
