"""`python -m loadtest.cpu_bench`: the worker's CPU per event, by stage, without a broker.

Runs one worker's pure work on seeded traffic in process: the intake (decode, validate,
dedupe, normalize), the encoding of the person-events micro-batches, scoring them into the
lead store, encoding the outputs, and writing the changed leads. It prints microseconds of
CPU per event for each stage. Broker I/O (aiokafka fetch and produce) is not in it: that is
what `python -m loadtest --baseline` measures. Use it to see where a change moves the cost;
`--profile` prints the top functions.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from itertools import islice
from typing import Any, TypeVar

from loadtest.generator import DEFAULT_PAYLOAD, PAYLOADS, Generator, Payload
from loadtest.harness import MODEL
from streams import CORE
from streams.app import _records
from streams.cli import tune_process
from streams.identity import apply_person_batch, keys_of
from streams.intake import RawRecord, intake_batch
from streams.intake_service import forward_batches
from streams.lead_model import load_model
from streams.lead_store import LeadStore
from streams.leads import Limits
from streams.table_store import DictTable
from streams.topics import Topics

__all__ = ["main", "run"]

_T = TypeVar("_T")
_STAGES = ("intake", "forward", "score", "outputs", "state")


def run(
    *,
    events: int,
    leads: int,
    seed: int,
    batch: int,
    partitions: int,
    now: datetime | None = None,
    bad_rate: float = 0.0,
    payload: Payload = DEFAULT_PAYLOAD,
    observe: Callable[[str, Any], None] | None = None,
) -> dict[str, float]:
    """Microseconds of CPU per event, by stage, over `events` events.

    `observe(what, value)`, untimed, sees what the stages make: each forwarded record
    (`forward`), each scored batch (`scored`, a BatchResult) and its output records
    (`outputs`). The test of the compiled core compares them between cores."""
    now = now or datetime.now(UTC)
    gen = Generator(leads=leads, seed=seed, bad_rate=bad_rate, payload=payload)
    now_ms = int(now.timestamp() * 1000)
    raw = [
        RawRecord(m.value, m.key, "engagement.raw", 0, i)
        for i, m in enumerate(islice(gen.messages(now_ms=now_ms), events))
    ]
    topics = Topics()
    model = load_model(MODEL)
    limits = Limits()
    store = LeadStore(DictTable(), cache_size=20_000)
    spent = dict.fromkeys(_STAGES, 0.0)

    def timed(stage: str, fn: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
        start = time.process_time()
        value = fn(*args, **kwargs)
        spent[stage] += time.process_time() - start
        return value

    for start in range(0, len(raw), batch):
        result = timed(
            "intake",
            intake_batch,
            raw[start : start + batch],
            partitions=partitions,
            now=now,
            feedback_topic=topics.feedback,
            erasure_topic=topics.erasure,
        )
        for record, person_batch in timed("forward", forward_batches, result, topics):
            if observe is not None:
                observe("forward", record)
            if person_batch is None or record.partition is None:
                continue
            p = record.partition
            entries = timed("score", store.leads, p, keys_of(person_batch))
            scored = timed(
                "score",
                apply_person_batch,
                entries,
                person_batch,
                model=model,
                rotation=store.rotation(p),
                limits=limits,
                now=now,
            )
            records = timed("outputs", _records, topics, scored.decisions, partitions)
            if observe is not None:
                observe("scored", scored)
                observe("outputs", records)
            timed("state", store.update, p, scored.leads, scored.rotation)
        for p in range(partitions):
            entries_out = timed("state", store.take_dirty, p)
            timed("state", store.written, p, entries_out, offset=None)
    per_event = {stage: round(s / events * 1e6, 2) for stage, s in spent.items()}
    per_event["total"] = round(sum(spent.values()) / events * 1e6, 2)
    return per_event


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--leads", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--batch", type=int, default=5000, help="records per intake batch")
    parser.add_argument("--partitions", type=int, default=8)
    parser.add_argument(
        "--payload",
        choices=PAYLOADS,
        default=DEFAULT_PAYLOAD,
        help="loadtest/generator.py's messages",
    )
    parser.add_argument("--repeat", type=int, default=3, help="runs; the fastest is shown")
    parser.add_argument("--profile", action="store_true", help="print the top functions")
    args = parser.parse_args(argv)
    tune_process()  # as the worker does
    kwargs = {
        "events": args.events,
        "leads": args.leads,
        "seed": args.seed,
        "batch": args.batch,
        "partitions": args.partitions,
        "payload": args.payload,
    }
    if args.profile:
        profiler = cProfile.Profile()
        profiler.enable()
        run(**kwargs)
        profiler.disable()
        pstats.Stats(profiler, stream=sys.stdout).sort_stats("tottime").print_stats(35)
        return 0
    runs = [run(**kwargs) for _ in range(max(1, args.repeat))]
    figures = min(runs, key=lambda r: r["total"])
    width = max(len(k) for k in figures)
    sys.stdout.write(
        f"CPU per event ({args.events:,} events, {args.leads:,} leads; "
        f"fastest of {len(runs)}; core: {CORE}), us:\n"
    )
    for stage, us in figures.items():
        sys.stdout.write(f"  {stage:<{width}}  {us:7.2f}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
