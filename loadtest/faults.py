"""Crash-safety harness: one seeded stream through a clean worker and a SIGKILLed one, compared.

    python -m loadtest.faults --events 20000 --kills 10 --seed 1 [--store rocksdb] [--json]

Run 1 (reference): the stream through a worker that is never killed; the alert ids, hand-off
ids and the latest `leads.scored` record per lead are what the stream must produce. Run 2:
the same stream in chunks, the worker's process group SIGKILLed at seeded moments (during
start-up and recovery, or while it scores) and restarted each time. Pass: every reference
alert_id and handoff_id is on the topics at least once, and every lead's final score, grade
and stage equal the reference's. Re-deliveries (the same id more than once) are counted, not
failed: the pipeline is at-least-once with idempotent ids. `--store rocksdb`: the killed
worker keeps its table in RocksDB and is restarted on the same data dir and web port (so it
resumes from its local state); the reference run always uses memory.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import signal
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from aiokafka import ConsumerRecord

from loadtest.generator import Generator, Message
from loadtest.harness import Options, Worker, log, preload, start_workers, wait_processed
from streams.broker import EmbeddedBroker, free_port
from streams.kafka_io import create_topics, read_to_end
from streams.topics import Topics

__all__ = [
    "FaultOptions",
    "Kill",
    "Outcome",
    "Verdict",
    "compare",
    "kill_plan",
    "outcome",
    "run_faults",
]

#: A lead's final state as its latest `leads.scored` record shows it: (score, grade, stage).
Final = tuple[int, str, str]


@dataclass(frozen=True)
class FaultOptions:
    events: int = 20_000
    kills: int = 10
    seed: int = 1
    leads: int = 2_000
    partitions: int = 4
    bootstrap: str | None = None  # None: start the embedded broker
    flavor: str = "tansu"
    fetch_wait_ms: int = 100
    settle_timeout_s: float = 120  # after the last kill, for the outputs to match
    workers: int = 1  # with 2, each kill takes one of them (seeded); the other runs on
    store: str = "memory"  # the killed worker's table store (the reference run uses memory)
    handover: bool = True  # LEADSTREAM_HANDOVER of both runs' workers


@dataclass(frozen=True)
class Kill:
    """Where the stream is cut and how the worker dies there.

    `after_events`: the records produced before this kill. `early`: killed `delay_s` after
    it was started (start-up, group join, table recovery); else `delay_s` after it has
    scored something in this life (mid-batch, or between the outputs and the state write).
    """

    after_events: int
    delay_s: float
    early: bool
    worker: int = 0  # which worker dies


def kill_plan(*, events: int, kills: int, seed: int, workers: int = 1) -> list[Kill]:
    """Seeded kill moments: `kills` distinct cut points across the stream, in order."""
    rng = random.Random(seed * 7919 + kills)
    cuts = sorted(rng.sample(range(1, events), min(kills, max(events - 1, 0))))
    plan = []
    for cut in cuts:
        early = rng.random() < 0.25
        delay = rng.uniform(0.0, 3.0) if early else rng.uniform(0.0, 1.0)
        victim = rng.randrange(workers) if workers > 1 else 0
        plan.append(Kill(cut, round(delay, 3), early, victim))
    return plan


@dataclass(frozen=True)
class Outcome:
    """What a run left on the output topics."""

    finals: dict[str, Final]
    alerts: Counter[str]  # alert_id -> records seen
    handoffs: Counter[str]  # handoff_id -> records seen
    scored_records: int


def outcome(
    *, scored: Iterable[bytes], alerts: Iterable[bytes], routed: Iterable[bytes]
) -> Outcome:
    """Values in topic order per partition; a lead's records share a partition (keyed by
    lead_id), so the last one read is its latest."""
    finals: dict[str, Final] = {}
    n = 0
    for value in scored:
        doc = orjson.loads(value)
        finals[doc["lead_id"]] = (doc["score"], doc["grade"], doc["stage"])
        n += 1
    return Outcome(
        finals=finals,
        alerts=Counter(orjson.loads(v)["alert_id"] for v in alerts),
        handoffs=Counter(orjson.loads(v)["handoff_id"] for v in routed),
        scored_records=n,
    )


@dataclass(frozen=True)
class Verdict:
    missing_alerts: list[str]
    missing_handoffs: list[str]
    unexpected_alerts: list[str]  # not in the reference: a crash changed a decision
    unexpected_handoffs: list[str]
    score_mismatches: dict[str, tuple[Final | None, Final | None]]  # lead -> (want, got)
    duplicate_alerts: int  # records beyond the first per id
    duplicate_handoffs: int
    extra_scored_records: int

    @property
    def ok(self) -> bool:
        return not (
            self.missing_alerts
            or self.missing_handoffs
            or self.unexpected_alerts
            or self.unexpected_handoffs
            or self.score_mismatches
        )


def compare(expected: Outcome, got: Outcome) -> Verdict:
    leads = expected.finals.keys() | got.finals.keys()
    return Verdict(
        missing_alerts=sorted(expected.alerts.keys() - got.alerts.keys()),
        missing_handoffs=sorted(expected.handoffs.keys() - got.handoffs.keys()),
        unexpected_alerts=sorted(got.alerts.keys() - expected.alerts.keys()),
        unexpected_handoffs=sorted(got.handoffs.keys() - expected.handoffs.keys()),
        score_mismatches={
            lead: (expected.finals.get(lead), got.finals.get(lead))
            for lead in sorted(leads)
            if expected.finals.get(lead) != got.finals.get(lead)
        },
        duplicate_alerts=sum(got.alerts.values()) - len(got.alerts),
        duplicate_handoffs=sum(got.handoffs.values()) - len(got.handoffs),
        extra_scored_records=got.scored_records - expected.scored_records,
    )


# --- the runs --------------------------------------------------------------------------------


@dataclass
class _Run:
    opts: FaultOptions
    bootstrap: str
    workdir: Path
    messages: list[Message]
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:6])
    ports: dict[str, list[int]] = field(default_factory=dict)  # app id -> web ports, kept

    def worker_options(self, store: str) -> Options:
        return Options(
            bootstrap=self.bootstrap,
            flavor=self.opts.flavor,
            events=self.opts.events,
            rate=0,
            duration_s=0,
            leads=self.opts.leads,
            seed=self.opts.seed,
            bad_rate=0.0,
            baseline=False,
            workers=self.opts.workers,
            partitions=self.opts.partitions,
            fetch_wait_ms=self.opts.fetch_wait_ms,
            json_path=None,
            # A SIGKILLed member holds its partitions until its session expires.
            session_timeout_s=2,
            heartbeat_interval_s=0.3,
            store=store,
            handover=self.opts.handover,
        )

    async def topics(self, kind: str) -> Topics:
        topics = Topics(prefix=f"ft{self.run_id}{kind}.")
        await create_topics(self.bootstrap, topics.all(), self.opts.partitions)
        return topics

    def start(
        self, topics: Topics, app_id: str, *, store: str, only: int | None = None
    ) -> list[Worker]:
        """All workers, or only worker `only` (a restart keeps its web port and data dir:
        with RocksDB, its local state too)."""
        ports = self.ports.setdefault(app_id, [free_port() for _ in range(self.opts.workers)])
        opts = self.worker_options(store)
        return start_workers(
            opts, self.bootstrap, topics, app_id, self.workdir, only=only, ports=ports
        )

    async def read(self, topics: Topics) -> Outcome:
        async def values(topic: str) -> list[bytes]:
            records: list[ConsumerRecord] = await read_to_end(self.bootstrap, topic, timeout_s=60)
            return [r.value for r in records if r.value]

        scored, alerts, routed = await asyncio.gather(
            values(topics.scored), values(topics.alerts), values(topics.routed)
        )
        return outcome(scored=scored, alerts=alerts, routed=routed)

    async def reference(self) -> Outcome:
        topics = await self.topics("c")
        await preload(self.bootstrap, topics.raw, self.messages)
        workers = self.start(topics, f"ft{self.run_id}c", store="memory")
        try:
            await wait_processed(workers, len(self.messages), label="reference", timeout_s=300)
            # Internal hops (identity links) may still be in flight: settled when two reads
            # a second apart agree.
            last = await self.read(topics)
            while True:
                await asyncio.sleep(1)
                now = await self.read(topics)
                if now == last:
                    return now
                last = now
        finally:
            for worker in workers:
                worker.stop()

    async def with_kills(self, expected: Outcome) -> tuple[Verdict, int, float]:
        topics = await self.topics("f")
        app_id = f"ft{self.run_id}f"
        workers = self.start(topics, app_id, store=self.opts.store)
        started_at = [time.monotonic()] * len(workers)
        kills = 0
        sent = 0
        try:
            for kill in kill_plan(
                events=len(self.messages),
                kills=self.opts.kills,
                seed=self.opts.seed,
                workers=len(workers),
            ):
                await preload(self.bootstrap, topics.raw, self.messages[sent : kill.after_events])
                sent = kill.after_events
                victim = workers[kill.worker]
                if kill.early:
                    elapsed = time.monotonic() - started_at[kill.worker]
                    await asyncio.sleep(max(0.0, kill.delay_s - elapsed))
                else:
                    # With two workers the victim may hold no partition with work: then it
                    # dies after a while regardless.
                    await _until_scoring(victim, timeout_s=60 if len(workers) == 1 else 10)
                    await asyncio.sleep(kill.delay_s)
                _sigkill(victim)
                kills += 1
                when = "early" if kill.early else "while scoring"
                which = f"worker {kill.worker} " if len(workers) > 1 else ""
                log(f"  [faults] kill {kills}: {which}after {sent:,} events ({when})")
                workers[kill.worker] = self.start(
                    topics, app_id, store=self.opts.store, only=kill.worker
                )[0]
                started_at[kill.worker] = time.monotonic()
            await preload(self.bootstrap, topics.raw, self.messages[sent:])
            settle_started = time.monotonic()
            deadline = settle_started + self.opts.settle_timeout_s
            while True:
                verdict = compare(expected, await self.read(topics))
                if verdict.ok or time.monotonic() > deadline:
                    return verdict, kills, time.monotonic() - settle_started
                for worker in workers:
                    if worker.proc.poll() is not None:
                        raise RuntimeError(f"a worker exited; see {worker.log_path}")
                await asyncio.sleep(1)
        finally:
            for worker in workers:
                worker.stop()


async def _until_scoring(worker: Worker, *, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while worker.metrics().get("leadstream_events_processed_total", 0.0) <= 0:
        if time.monotonic() > deadline:
            if timeout_s < 60:
                return  # one of several workers, idle: kill it idle
            raise TimeoutError(f"the worker scored nothing in {timeout_s:g} s: {worker.log_path}")
        if worker.proc.poll() is not None:
            raise RuntimeError(f"the worker exited; see {worker.log_path}")
        await asyncio.sleep(0.05)


def _sigkill(worker: Worker) -> None:
    """The whole process group, no warning: no flush, no commit."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(worker.proc.pid, signal.SIGKILL)
    worker.proc.wait(timeout=10)


async def run_faults(opts: FaultOptions, *, bootstrap: str, workdir: Path) -> dict[str, Any]:
    """Both runs against `bootstrap`; the figures and the verdict as a JSON-able dict."""
    gen = Generator(leads=opts.leads, seed=opts.seed)
    # One event time for the whole stream, so both runs score exactly the same input.
    now_ms = int(time.time() * 1000)
    messages = [gen.next(now_ms=now_ms) for _ in range(opts.events)]
    run = _Run(opts, bootstrap, workdir, messages)
    started = time.monotonic()
    log(f"faults: reference run, {opts.events:,} events, {opts.leads:,} people ...")
    expected = await run.reference()
    reference_s = time.monotonic() - started
    log(f"faults: run with {opts.kills} SIGKILLs, {opts.workers} worker(s) ...")
    started = time.monotonic()
    verdict, kills, settle_s = await run.with_kills(expected)
    return {
        "workers": opts.workers,
        "events": opts.events,
        "seed": opts.seed,
        "store": opts.store,
        "kills": kills,
        "leads_scored": len(expected.finals),
        "expected_alerts": len(expected.alerts),
        "expected_handoffs": len(expected.handoffs),
        "missing_alerts": len(verdict.missing_alerts),
        "missing_handoffs": len(verdict.missing_handoffs),
        "unexpected_alerts": len(verdict.unexpected_alerts),
        "unexpected_handoffs": len(verdict.unexpected_handoffs),
        "score_mismatches": len(verdict.score_mismatches),
        "duplicate_alerts": verdict.duplicate_alerts,
        "duplicate_handoffs": verdict.duplicate_handoffs,
        "extra_scored_records": verdict.extra_scored_records,
        "reference_run_s": round(reference_s, 1),
        "fault_run_s": round(time.monotonic() - started, 1),
        "settle_s": round(settle_s, 1),
        "examples": {
            "missing_alerts": verdict.missing_alerts[:5],
            "missing_handoffs": verdict.missing_handoffs[:5],
            "score_mismatches": {
                k: [list(v) if v else None for v in pair]
                for k, pair in list(verdict.score_mismatches.items())[:5]
            },
        },
        "result": "ok" if verdict.ok else "FAILED",
    }


def main() -> int:
    p = argparse.ArgumentParser(prog="python -m loadtest.faults", description=__doc__)
    p.add_argument("--events", type=int, default=20_000)
    p.add_argument("--kills", type=int, default=10)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--leads", type=int, default=2_000, help="distinct people in the stream")
    p.add_argument("--partitions", type=int, default=4)
    p.add_argument(
        "--workers", type=int, default=1, choices=(1, 2), help="2: kills take one of two"
    )
    p.add_argument("--bootstrap", help="a running broker host:port (default: start Tansu)")
    p.add_argument("--flavor", choices=("tansu", "kafka"), help="default: tansu when embedded")
    p.add_argument(
        "--settle-timeout", type=float, default=120, help="s after the last kill to match"
    )
    p.add_argument(
        "--store", choices=("memory", "rocksdb"), default="memory", help="the killed worker's"
    )
    p.add_argument(
        "--handover",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="LEADSTREAM_HANDOVER of the workers (default: on, as the worker's own default)",
    )
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    a = p.parse_args()
    opts = FaultOptions(
        events=a.events,
        kills=a.kills,
        seed=a.seed,
        leads=a.leads,
        partitions=a.partitions,
        workers=a.workers,
        bootstrap=a.bootstrap,
        flavor=a.flavor or ("kafka" if a.bootstrap else "tansu"),
        settle_timeout_s=a.settle_timeout,
        store=a.store,
        handover=a.handover,
    )
    workdir = Path("loadtest/results").resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    if opts.bootstrap:
        result = asyncio.run(run_faults(opts, bootstrap=opts.bootstrap, workdir=workdir))
    else:
        with EmbeddedBroker(free_port(), log=workdir / "broker.log") as broker:
            log(f"embedded broker (Tansu) on {broker.bootstrap}")
            result = asyncio.run(run_faults(opts, bootstrap=broker.bootstrap, workdir=workdir))
    if a.json:
        sys.stdout.write(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        print()
        for key, value in result.items():
            if key != "examples":
                print(
                    f"  {key:<22} {value:,}" if isinstance(value, int) else f"  {key:<22} {value}"
                )
        if result["result"] != "ok":
            print(f"  examples               {result['examples']}")
    return 0 if result["result"] == "ok" else 1


if __name__ == "__main__":
    raise SystemExit(main())
