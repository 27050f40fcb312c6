"""Recovery after a kill: how long a SIGKILLed worker takes to serve again, memory vs RocksDB.

    python -m loadtest.recovery --leads 100000 [--store memory|rocksdb|both] [--bootstrap H:P]

Per store: a worker builds the state of `--leads` people (each person's events once, the
same seeded stream for each store), its state is left to reach the changelog, then its
process group is SIGKILLed and it is restarted on the same data dir and web port. Measured
from the restart: the time until `/readyz` answers 200 (table recovered, partitions held),
and the time until a new event sent at the restart is applied. With memory the restarted
worker reads the leads table's whole changelog again; with RocksDB it reads only what was
written after its local state's offset. A benchmark, not a test: it prints figures.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from loadtest.generator import Generator
from loadtest.harness import Options, Worker, log, preload, start_workers, wait_processed
from streams.broker import EmbeddedBroker, free_port
from streams.kafka_connection import as_connection
from streams.kafka_io import create_topics
from streams.topics import LEADS_TABLE, Topics

__all__ = ["main", "measure"]


def _options(bootstrap: str, *, flavor: str, leads: int, store: str) -> Options:
    return Options(
        bootstrap=bootstrap,
        flavor=flavor,
        events=leads,
        rate=0,
        duration_s=0,
        leads=leads,
        seed=1,
        bad_rate=0.0,
        baseline=False,
        workers=1,
        partitions=4,
        fetch_wait_ms=100,
        json_path=None,
        cover=True,
        # A SIGKILLed member holds its partitions until its session expires: short, so the
        # figure is the recovery, not the broker's wait for the dead member.
        session_timeout_s=2,
        heartbeat_interval_s=0.3,
        store=store,
    )


def _ready(worker: Worker) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{worker.web_port}/readyz", timeout=2):
            return True
    except (urllib.error.URLError, OSError):
        return False


async def _records_in(bootstrap: str, topic: str) -> int:
    consumer = AIOKafkaConsumer(**as_connection(bootstrap).client_kwargs())
    await consumer.start()
    try:
        partitions = await consumer._client.fetch_all_metadata()
        tps = [TopicPartition(topic, p) for p in partitions.partitions_for_topic(topic) or ()]
        return sum((await consumer.end_offsets(tps)).values())
    finally:
        await consumer.stop()


async def _until(predicate: Any, worker: Worker, *, timeout_s: float, what: str) -> float:
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout_s:
            raise TimeoutError(f"{what}: not within {timeout_s:g} s; see {worker.log_path}")
        if worker.proc.poll() is not None:
            raise RuntimeError(f"the worker exited; see {worker.log_path}")
        await asyncio.sleep(0.05)
    return time.monotonic() - started


async def measure(
    *, bootstrap: str, flavor: str, leads: int, store: str, workdir: Path
) -> dict[str, Any]:
    """One store's figures."""
    run = uuid.uuid4().hex[:6]
    app_id = f"rc{run}{store[0]}"
    topics = Topics(prefix=f"{app_id}.")
    await create_topics(bootstrap, topics.all(), 4)
    opts = _options(bootstrap, flavor=flavor, leads=leads, store=store)
    gen = Generator(leads=leads, seed=1, cover=True)
    now_ms = int(time.time() * 1000)
    await preload(bootstrap, topics.raw, [gen.next(now_ms=now_ms) for _ in range(leads)])
    port = free_port()
    worker = start_workers(opts, bootstrap, topics, app_id, workdir, ports=[port])[0]
    try:
        await wait_processed([worker], leads, label=f"{store}: build", timeout_s=900)
        # Every changed lead in the changelog (write-behind flushes every 200 ms; internal
        # identity messages may follow the last input event): settled when the changelog's
        # end stops moving for a second.
        changelog = f"{app_id}-{LEADS_TABLE}-changelog"
        last = -1
        while (now := await _records_in(bootstrap, changelog)) != last:
            last = now
            await asyncio.sleep(1.0)
        stored = worker.metrics().get("leadstream_leads_stored", 0.0)
        changelog_records = last
        rss_before = worker.rss_mib()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(worker.proc.pid, signal.SIGKILL)
        worker.proc.wait(timeout=10)
        log(f"  [{store}] SIGKILLed with {stored:,.0f} leads stored; restarting")
        restarted_at = time.monotonic()
        worker = start_workers(opts, bootstrap, topics, app_id, workdir, ports=[port])[0]
        probe = Generator(leads=1, seed=99)
        await preload(bootstrap, topics.raw, [probe.next(now_ms=int(time.time() * 1000))])
        await _until(lambda: _ready(worker), worker, timeout_s=600, what="/readyz after restart")
        ready_s = time.monotonic() - restarted_at
        await _until(
            lambda: worker.metrics().get("leadstream_events_processed_total", 0.0) >= 1,
            worker,
            timeout_s=600,
            what="a new event applied after the restart",
        )
        first_event_s = time.monotonic() - restarted_at
        return {
            "store": store,
            "leads": leads,
            "leads_stored": int(stored),
            "changelog_records": changelog_records,
            "ready_s": round(ready_s, 1),
            "first_event_s": round(first_event_s, 1),
            "rss_mib_before_kill": round(rss_before),
            "rss_mib_after_restart": round(worker.rss_mib()),
        }
    finally:
        worker.stop()


def main() -> int:
    p = argparse.ArgumentParser(prog="python -m loadtest.recovery", description=__doc__)
    p.add_argument("--leads", type=int, default=100_000, help="people whose state is built")
    p.add_argument("--store", choices=("memory", "rocksdb", "both"), default="both")
    p.add_argument("--bootstrap", help="a running broker host:port (default: start Tansu)")
    p.add_argument("--flavor", choices=("tansu", "kafka"), help="default: tansu when embedded")
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    a = p.parse_args()
    stores = ["memory", "rocksdb"] if a.store == "both" else [a.store]
    workdir = Path("loadtest/results").resolve() / f"recovery-{uuid.uuid4().hex[:6]}"
    workdir.mkdir(parents=True, exist_ok=True)

    async def run_all(bootstrap: str, flavor: str) -> list[dict[str, Any]]:
        return [
            await measure(
                bootstrap=bootstrap, flavor=flavor, leads=a.leads, store=s, workdir=workdir
            )
            for s in stores
        ]

    if a.bootstrap:
        results = asyncio.run(run_all(a.bootstrap, a.flavor or "kafka"))
    else:
        with EmbeddedBroker(free_port(), log=workdir / "broker.log") as broker:
            log(f"embedded broker (Tansu) on {broker.bootstrap}")
            results = asyncio.run(run_all(broker.bootstrap, "tansu"))
    if a.json:
        sys.stdout.write(orjson.dumps(results, option=orjson.OPT_INDENT_2).decode() + "\n")
        return 0
    print()
    print(f"{'store':<8} {'leads':>9} {'changelog':>10} {'ready':>8} {'1st event':>10} {'RSS':>14}")
    for r in results:
        print(
            f"{r['store']:<8} {r['leads_stored']:>9,} {r['changelog_records']:>10,} "
            f"{r['ready_s']:>7}s {r['first_event_s']:>9}s "
            f"{r['rss_mib_before_kill']:>5} -> {r['rss_mib_after_restart']:>4} MiB"
        )
    print("ready: restart to /readyz 200; 1st event: restart to a new event applied")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
