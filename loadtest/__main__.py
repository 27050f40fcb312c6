"""`python -m loadtest`: throughput, latency and memory of the pipeline, with the baseline."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import orjson

from loadtest.generator import DEFAULT_PAYLOAD, PAYLOADS
from loadtest.harness import Options, run


def options(argv: list[str] | None = None) -> Options:
    """The run's options from the command line."""
    p = argparse.ArgumentParser(prog="python -m loadtest", description=__doc__)
    p.add_argument("--bootstrap", help="a running broker host:port (default: start Tansu)")
    p.add_argument("--flavor", choices=("tansu", "kafka"), help="default: tansu when embedded")
    p.add_argument(
        "--events",
        type=int,
        default=200_000,
        help="throughput phase: events preloaded then drained (0 to skip)",
    )
    p.add_argument(
        "--rate", type=int, default=1000, help="latency phase: events/s produced (0 to skip)"
    )
    p.add_argument("--duration", type=float, default=30, help="latency phase length, s")
    p.add_argument("--leads", type=int, default=2000, help="distinct people in the traffic")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument(
        "--cover",
        action="store_true",
        help="the first --leads events visit every person once (memory runs)",
    )
    p.add_argument("--bad-rate", type=float, default=0.0, help="share of invalid messages")
    p.add_argument(
        "--payload",
        choices=PAYLOADS,
        default=DEFAULT_PAYLOAD,
        help="browser: messages as analytics.js sends them (~880 bytes, the default); "
        "server: as @segment/analytics-node sends them through the ingest (~470 bytes); lean: "
        "only the fields Leadstream reads (~210 bytes, the traffic of the figures before "
        "stop 28)",
    )
    p.add_argument(
        "--baseline",
        action="store_true",
        help="also run the raw aiokafka loops: tuned (`ratio`) and plain (`ratio_plain`)",
    )
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--partitions", type=int, default=8)
    p.add_argument(
        "--fetch-wait-ms",
        type=int,
        default=100,
        help="fetch wait of the input hop, both systems (and of every hop by default)",
    )
    p.add_argument(
        "--repartition-fetch-wait-ms",
        type=int,
        help="fetch wait of the pipeline's second hop (leadstream.person-events)",
    )
    p.add_argument(
        "--handover",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="LEADSTREAM_HANDOVER (the worker's default: on): records skip the consumer hop "
        "inside a worker; --no-handover sends every record through the consumer",
    )
    p.add_argument(
        "--intake-process",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="LEADSTREAM_INTAKE_PROCESS (the worker's default: auto, on from 2 CPUs): the "
        "intake runs in a child process of each worker, on another core (its CPU and memory "
        "are counted)",
    )
    p.add_argument(
        "--json", type=Path, help="where to write the results (default: loadtest/results/)"
    )
    a = p.parse_args(argv)
    return Options(
        bootstrap=a.bootstrap,
        flavor=a.flavor or ("kafka" if a.bootstrap else "tansu"),
        events=a.events,
        rate=a.rate,
        duration_s=a.duration,
        leads=a.leads,
        seed=a.seed,
        bad_rate=a.bad_rate,
        baseline=a.baseline,
        workers=a.workers,
        partitions=a.partitions,
        fetch_wait_ms=a.fetch_wait_ms,
        json_path=a.json,
        repartition_fetch_wait_ms=a.repartition_fetch_wait_ms,
        cover=a.cover,
        handover=a.handover,
        intake_process=a.intake_process,
        payload=a.payload,
    )


def main() -> int:
    opts = options()
    report = run(opts)
    print_table(report.results)
    path = opts.json_path or Path("loadtest/results") / f"run-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(
        orjson.dumps(
            {"options": report.options, "results": report.results}, option=orjson.OPT_INDENT_2
        )
    )
    print(f"\nwrote {path}")
    return 0


def print_table(results: dict[str, object]) -> None:
    print()
    for section, values in results.items():
        if isinstance(values, dict):
            print(f"{section}")
            for key, value in values.items():
                if isinstance(value, dict) and all(isinstance(v, dict) for v in value.values()):
                    _print_rows(key, value)
                    continue
                shown = f"{value:,}" if isinstance(value, int | float) else str(value)
                print(f"  {key:<24} {shown}")
        else:
            print(f"{section:<26} {values}")


def _print_rows(name: str, rows: dict[str, dict[str, object]]) -> None:
    """A table in a section: one line per row, a column per field of the first row."""
    columns = list(next(iter(rows.values()), {}))
    print(f"  {name:<34}" + "".join(f"{c:>24}" for c in columns))
    for row, values in rows.items():
        cells = (values.get(c) for c in columns)
        print(
            f"    {row:<32}"
            + "".join(f"{v:>24,}" if isinstance(v, int | float) else f"{v!s:>24}" for v in cells)
        )


if __name__ == "__main__":
    raise SystemExit(main())
