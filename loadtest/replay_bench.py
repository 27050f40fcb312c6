"""`python -m loadtest.replay_bench`: how fast `leadstream model replay` runs on one core.

Generates a seeded Segment log with loadtest/generator.py (spread evenly over `--weeks` of
event time), then times the pure replay (decode, sort, apply, report) with the bundled
model alone and compared with a stricter copy of it (the engagement threshold raised).
`--write DIR` also writes the log, a synthetic sales-feedback file and the stricter model,
to try the command itself on them.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import random
import re
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import orjson

from loadtest.generator import Generator
from streams.codec import decode_person_event
from streams.lead_model import DEFAULT_MODEL_PATH, LeadModel, parse_model
from streams.leads import lead_id_for
from streams.replay import replay

__all__ = ["feedback_lines", "generate", "main", "stricter"]

#: Monday 2026-08-03 00:00 UTC: the first event time of every generated log.
_START_MS = 1_785_715_200_000
_DAY_MS = 86_400_000


def generate(*, events: int, leads: int, seed: int, weeks: int) -> tuple[list[bytes], set[int]]:
    """The log's lines, and the people who identified in it (sales could know them)."""
    gen = Generator(leads=leads, seed=seed)
    span_ms = weeks * 7 * _DAY_MS
    lines = []
    identified: set[int] = set()
    for i in range(events):
        message = gen.next(now_ms=_START_MS + i * span_ms // max(events, 1))
        # A compact copy: orjson's output keeps a ~4 KiB buffer (800 MB for 200k lines).
        lines.append(bytes(memoryview(message.value)))
        if b'"type":"identify"' in message.value and message.key is not None:
            identified.add(int(message.key.rsplit(b"-", 1)[1]))
    return lines, identified


def feedback_lines(*, identified: set[int], leads: int, seed: int, weeks: int) -> list[bytes]:
    """Synthetic sales outcomes for identified people, likelier for the generator's hot
    buyers than for its nurture readers: what a CRM export would hold, seeded."""
    gen = Generator(leads=leads, seed=seed)  # only for its personas
    rng = random.Random(seed * 7 + 1)
    chance = {"hot": 0.35, "nurture": 0.04, "casual": 0.0}
    out: list[dict[str, object]] = []
    for person in sorted(identified):
        if rng.random() >= chance[gen.persona(person)]:
            continue
        lead_id = lead_id_for(f"anon-{seed}-{person}")
        at_ms = _START_MS + rng.randrange(weeks * 7 * _DAY_MS)
        out.append(
            {
                "feedback_id": f"{lead_id}-opportunity",
                "lead_id": lead_id,
                "status": "opportunity",
                "occurred_at": _iso(at_ms),
            }
        )
        roll = rng.random()
        if roll < 0.4:
            amount = float(rng.randrange(10, 121) * 1000)
            won_ms = at_ms + rng.randrange(30 * _DAY_MS)
            out.append(
                {
                    "feedback_id": f"{lead_id}-won",
                    "lead_id": lead_id,
                    "status": "won",
                    "occurred_at": _iso(won_ms),
                    "amount": amount,
                }
            )
        elif roll < 0.7:
            out.append(
                {
                    "feedback_id": f"{lead_id}-lost",
                    "lead_id": lead_id,
                    "status": "lost",
                    "occurred_at": _iso(at_ms + rng.randrange(30 * _DAY_MS)),
                    "reason": "no budget",
                }
            )
    return [orjson.dumps(o) for o in out]


def stricter(text: str, *, threshold: int) -> str:
    """The model text with the first score's threshold set to `threshold`, version marked."""
    text, n = re.subn(r"threshold: \d+", f"threshold: {threshold}", text, count=1)
    text, m = re.subn(r'^version: "?([^"\n]+)"?', r'version: "\1-strict"', text, count=1, flags=8)
    if not (n and m):
        raise SystemExit("replay_bench: cannot find threshold/version in the bundled model")
    return text


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat().replace("+00:00", "Z")


def _time(lines: Sequence[bytes], models: list[LeadModel], *, profile: bool) -> tuple[float, float]:
    """Wall and CPU seconds of one replay (CPU is the steadier figure on a busy machine)."""
    now = datetime.now(UTC)
    profiler = cProfile.Profile() if profile else None
    started, cpu = time.perf_counter(), time.process_time()
    if profiler:
        profiler.enable()
    report = replay(lines, models=models, now=now)
    if profiler:
        profiler.disable()
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    if profiler:
        pstats.Stats(profiler, stream=sys.stdout).sort_stats("tottime").print_stats(18)
    assert report.events == len(lines), "every generated line is valid"
    return elapsed, cpu


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m loadtest.replay_bench", description=__doc__)
    p.add_argument("--events", type=int, default=200_000)
    p.add_argument("--leads", type=int, default=20_000)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--weeks", type=int, default=12, help="event time the log spans")
    p.add_argument("--threshold", type=int, default=130, help="the stricter model's threshold")
    p.add_argument("--write", type=Path, metavar="DIR", help="also write the files here")
    p.add_argument("--profile", action="store_true", help="cProfile each run (slower)")
    args = p.parse_args(argv)

    base_text = DEFAULT_MODEL_PATH.read_text(encoding="utf-8")
    strict_text = stricter(base_text, threshold=args.threshold)
    base = parse_model(base_text, source=str(DEFAULT_MODEL_PATH))
    strict = parse_model(strict_text, source="stricter.yaml")
    started = time.perf_counter()
    lines, identified = generate(
        events=args.events, leads=args.leads, seed=args.seed, weeks=args.weeks
    )
    print(
        f"generated {len(lines):,} events, {args.leads:,} people, {args.weeks} weeks "
        f"(seed {args.seed}) in {time.perf_counter() - started:.1f} s"
    )
    if args.write:
        args.write.mkdir(parents=True, exist_ok=True)
        (args.write / "events.jsonl").write_bytes(b"\n".join(lines) + b"\n")
        feedback = feedback_lines(
            identified=identified, leads=args.leads, seed=args.seed, weeks=args.weeks
        )
        (args.write / "feedback.jsonl").write_bytes(b"\n".join(feedback) + b"\n")
        (args.write / "stricter.yaml").write_text(strict_text, encoding="utf-8")
        print(f"wrote events.jsonl, feedback.jsonl ({len(feedback):,} outcomes), stricter.yaml")
        print(f"  to {args.write}")

    started = time.process_time()
    for line in lines:
        decode_person_event(line)
    decode_s = time.process_time() - started
    print(f"decode alone           {len(lines) / decode_s:>10,.0f} events/s of CPU")
    for label, models in (("one model", [base]), ("compare (two)", [base, strict])):
        elapsed, cpu = _time(lines, models, profile=args.profile)
        print(
            f"replay, {label:<15}{len(lines) / elapsed:>10,.0f} events/s  ({elapsed:.2f} s wall; "
            f"{len(lines) / cpu:,.0f} events/s of CPU, {cpu / len(lines) * 1e6:.1f} µs/event)"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
