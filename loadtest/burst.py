"""Backpressure: a worker at a normal rate, then a burst of 10x, or a flood of a whole backlog.

    python -m loadtest.burst [--rate 1000] [--steady 20] [--burst 10] [--factor 10]
                             [--flood N] [--store memory|rocksdb] [--bootstrap H:P]

Phases: `--steady` s at `--rate` events/s (the worker's steady state), `--burst` s at
`--factor` times that rate, then the rate again until the backlog has drained (at most
`--drain-timeout` s). `--flood N` adds N events produced in one go at the burst's start:
an outage's backlog arriving at once. The worker's RSS (/proc/<pid>/statm) and lag
(events produced minus events applied) are sampled every `--sample` s; printed: steady and
peak RSS, the peak lag and how long it took to drain. A benchmark, not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from loadtest.generator import Generator
from loadtest.harness import Options, Worker, log, preload, start_workers
from streams.broker import EmbeddedBroker, free_port
from streams.kafka_io import create_topics
from streams.producer import BatchProducer, Record
from streams.topics import Topics

__all__ = ["BurstOptions", "Sample", "main", "run_burst", "summarize"]


@dataclass(frozen=True)
class BurstOptions:
    rate: int = 1_000
    steady_s: float = 20
    burst_s: float = 10
    factor: int = 10
    flood: int = 0
    leads: int = 20_000
    store: str = "memory"
    sample_s: float = 0.5
    drain_timeout_s: float = 300
    seed: int = 1


@dataclass(frozen=True)
class Sample:
    at_s: float
    phase: str
    rss_mib: float
    produced: int
    applied: float
    raw_lag: float  # of that lag, what the intake has not read yet (the rest is past it)
    leads: float

    @property
    def lag(self) -> float:
        return max(0.0, self.produced - self.applied)


@dataclass
class _Traffic:
    gen: Generator
    producer: BatchProducer
    topic: str
    sent: int = 0
    phase: str = "start"
    samples: list[Sample] = field(default_factory=list)

    async def paced(self, rate: int, duration_s: float, *, until: Any = None) -> None:
        """`rate` events/s for `duration_s` (or until `until()` holds, if given)."""
        started, base = time.monotonic(), self.sent
        while (elapsed := time.monotonic() - started) < duration_s:
            if until is not None and until():
                return
            due = int(elapsed * rate) - (self.sent - base)
            if due > 0:
                now_ms = int(time.time() * 1000)
                batch = [self.gen.next(now_ms=now_ms) for _ in range(due)]
                await self.producer.send(Record(self.topic, m.key, m.value) for m in batch)
                self.sent += due
            await asyncio.sleep(0.01)


async def _sample(worker: Worker, traffic: _Traffic, opts: BurstOptions, t0: float) -> None:
    while True:
        applied = await asyncio.to_thread(worker.metrics)
        traffic.samples.append(
            Sample(
                at_s=round(time.monotonic() - t0, 2),
                phase=traffic.phase,
                rss_mib=worker.rss_mib(),
                produced=traffic.sent,
                applied=applied.get("leadstream_events_processed_total", 0.0),
                raw_lag=applied.get("leadstream_intake_lag_records", 0.0),
                leads=applied.get("leadstream_leads_stored", 0.0),
            )
        )
        if worker.proc.poll() is not None:
            raise RuntimeError(f"the worker exited during the {traffic.phase}: {worker.log_path}")
        await asyncio.sleep(opts.sample_s)


def _steady_lag(opts: BurstOptions) -> float:
    """A lag no larger than a second's traffic counts as drained (two hops, fetch waits)."""
    return max(100.0, float(opts.rate))


def summarize(samples: list[Sample], *, lag_ok: float) -> dict[str, Any]:
    """Steady RSS: the median of the steady phase's second half; peak: the maximum after it."""
    steady = [s for s in samples if s.phase == "steady"]
    steady = steady[len(steady) // 2 :] or steady
    after = [s for s in samples if s.phase in ("burst", "drain")]
    rss_steady = sorted(s.rss_mib for s in steady)[len(steady) // 2] if steady else 0.0
    peak = max(after, key=lambda s: s.rss_mib) if after else None
    peak_lag = max(after, key=lambda s: s.lag) if after else None
    burst_end = next((s.at_s for s in samples if s.phase == "drain"), None)
    drained = next((s for s in samples if s.phase == "drain" and s.lag <= lag_ok), None)
    return {
        "rss_steady_mib": round(rss_steady),
        "rss_peak_mib": round(peak.rss_mib) if peak else None,
        "rss_peak_at_s": peak.at_s if peak else None,
        "rss_end_mib": round(samples[-1].rss_mib) if samples else None,
        "peak_lag": round(peak_lag.lag) if peak_lag else None,
        "drained": drained is not None,
        "drain_s": (
            round(drained.at_s - burst_end, 1)
            if drained is not None and burst_end is not None
            else None
        ),
        "produced": samples[-1].produced if samples else 0,
        "applied": round(samples[-1].applied) if samples else 0,
    }


async def run_burst(opts: BurstOptions, *, bootstrap: str, flavor: str, workdir: Path) -> dict:
    app_id = f"bu{uuid.uuid4().hex[:6]}"
    topics = Topics(prefix=f"{app_id}.")
    await create_topics(bootstrap, topics.all(), 4)
    worker_opts = Options(
        bootstrap=bootstrap,
        flavor=flavor,
        events=0,
        rate=opts.rate,
        duration_s=0,
        leads=opts.leads,
        seed=opts.seed,
        bad_rate=0.0,
        baseline=False,
        workers=1,
        partitions=4,
        fetch_wait_ms=100,
        json_path=None,
        store=opts.store,
    )
    worker = start_workers(worker_opts, bootstrap, topics, app_id, workdir)[0]
    producer = BatchProducer(kafka=bootstrap)
    traffic = _Traffic(Generator(leads=opts.leads, seed=opts.seed), producer, topics.raw)
    t0 = time.monotonic()
    sampler: asyncio.Task[None] | None = None
    try:
        while not worker.metrics():  # serving /metrics: started
            if worker.proc.poll() is not None or time.monotonic() - t0 > 120:
                raise RuntimeError(f"the worker did not start: {worker.log_path}")
            await asyncio.sleep(0.2)
        sampler = asyncio.create_task(_sample(worker, traffic, opts, t0))
        traffic.phase = "steady"
        log(f"burst: steady {opts.rate:,}/s for {opts.steady_s:g} s")
        await traffic.paced(opts.rate, opts.steady_s)
        traffic.phase = "burst"
        if opts.flood:
            log(f"burst: flood of {opts.flood:,} events at once")
            now_ms = int(time.time() * 1000)
            await preload(
                bootstrap, topics.raw, [traffic.gen.next(now_ms=now_ms) for _ in range(opts.flood)]
            )
            traffic.sent += opts.flood
        log(f"burst: {opts.factor}x, {opts.rate * opts.factor:,}/s for {opts.burst_s:g} s")
        await traffic.paced(opts.rate * opts.factor, opts.burst_s)
        traffic.phase = "drain"
        log(f"burst: back to {opts.rate:,}/s until the lag drains")

        def drained() -> bool:
            last = traffic.samples[-1] if traffic.samples else None
            return last is not None and last.phase == "drain" and last.lag <= _steady_lag(opts)

        await traffic.paced(opts.rate, opts.drain_timeout_s, until=drained)
        await asyncio.sleep(opts.sample_s * 2)
        for s in traffic.samples[:: max(1, len(traffic.samples) // 40)]:
            log(
                f"  {s.at_s:7.1f}s {s.phase:<6} RSS {s.rss_mib:6.0f} MiB  lag {s.lag:9,.0f} "
                f"(unread {s.raw_lag:9,.0f})  leads {s.leads:7,.0f}"
            )
        return {"options": opts.__dict__, **summarize(traffic.samples, lag_ok=_steady_lag(opts))}
    finally:
        if sampler is not None:
            sampler.cancel()
        await producer.stop()
        worker.stop()


def main() -> int:
    p = argparse.ArgumentParser(prog="python -m loadtest.burst", description=__doc__)
    p.add_argument("--rate", type=int, default=1_000, help="normal events/s")
    p.add_argument("--steady", type=float, default=20, help="s at the normal rate first")
    p.add_argument("--burst", type=float, default=10, help="s at factor x rate")
    p.add_argument("--factor", type=int, default=10)
    p.add_argument("--flood", type=int, default=0, help="events produced at once at the burst")
    p.add_argument("--leads", type=int, default=20_000, help="distinct people")
    p.add_argument("--store", choices=("memory", "rocksdb"), default="memory")
    p.add_argument("--drain-timeout", type=float, default=300)
    p.add_argument("--bootstrap", help="a running broker host:port (default: start Tansu)")
    p.add_argument("--flavor", choices=("tansu", "kafka"), help="default: tansu when embedded")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    a = p.parse_args()
    opts = BurstOptions(
        rate=a.rate,
        steady_s=a.steady,
        burst_s=a.burst,
        factor=a.factor,
        flood=a.flood,
        leads=a.leads,
        store=a.store,
        drain_timeout_s=a.drain_timeout,
    )
    workdir = Path("loadtest/results").resolve() / f"burst-{uuid.uuid4().hex[:6]}"
    workdir.mkdir(parents=True, exist_ok=True)
    if a.bootstrap:
        result = asyncio.run(
            run_burst(opts, bootstrap=a.bootstrap, flavor=a.flavor or "kafka", workdir=workdir)
        )
    else:
        with EmbeddedBroker(free_port(), log=workdir / "broker.log") as broker:
            log(f"embedded broker (Tansu) on {broker.bootstrap}")
            result = asyncio.run(
                run_burst(opts, bootstrap=broker.bootstrap, flavor="tansu", workdir=workdir)
            )
    if a.json:
        sys.stdout.write(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        print()
        for key, value in result.items():
            if key != "options":
                print(f"  {key:<16} {value}")
    return 0 if result["drained"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
