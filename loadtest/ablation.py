"""`python -m loadtest.ablation --drop PART [options of python -m loadtest]`: the load test
with one part of the worker's work taken out, to measure what that part costs.

py-spy samples say where the worker's CPU is spent, but its costs are spread over many small
functions and partly land in other code (an output record costs its encoding, its produce,
and the stage that consumes it). Taking a part out and timing the same run measures what it
costs in all. The workers this starts are patched at start-up (a `sitecustomize` on their
PYTHONPATH, `loadtest/ablation_site/`); the load test and its baseline loops are not.

Parts (`--drop`):

- `core`: the scoring core applies nothing: no lead state, no output records. What is left is
  the intake, its forwards and the Kafka and Faust machinery around them: the ceiling of the
  pipeline around a core that costs nothing.
- `outputs`: the core runs, and none of its records are written (output topics, the accounts
  stage's input, identity messages between partitions).
- `accounts`: the contact updates for the accounts stage are not written.
- `links`: the identity messages between partitions are not written (so fewer leads form).
- `scored`: the score changes (`leads.scored`) are not written; nothing in the worker reads
  them, so this is their encoding and produce alone.

A benchmark tool: the patched worker is wrong on purpose. Never point it at real data.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

__all__ = ["DROPS", "ENV", "install", "main"]

#: What `--drop` can take out.
DROPS = ("core", "outputs", "accounts", "links", "scored")
#: Names the part to take out, for the `sitecustomize` of the workers.
ENV = "LEADSTREAM_ABLATE"
_SITE = Path(__file__).resolve().parent / "ablation_site"


def install(drop: str) -> None:
    """Patch the worker's modules in this process so that `drop` does nothing."""
    if drop not in DROPS:
        raise ValueError(f"{ENV}={drop!r}: expected one of {', '.join(DROPS)}")
    if drop == "core":
        import streams.identity
        from streams.leads import BatchResult, as_state

        def apply_nothing(leads: Any, events: Any, *, rotation: Any, **_: Any) -> BatchResult:
            return BatchResult(rotation=as_state(rotation))

        streams.identity.apply_batch = apply_nothing
        return

    import streams.app
    from streams.account_stage import ContactOutbox
    from streams.producer import Record
    from streams.topics import Topics

    if drop in ("outputs", "accounts"):  # the leads stage holds them for the accounts stage

        def hold_nothing(self: ContactOutbox, partition: int, updates: Any) -> None:
            return None

        ContactOutbox.hold = hold_nothing  # type: ignore[method-assign]

    records = streams.app._records

    def records_kept(
        topics: Topics, decisions: Iterable[Any], partitions: int, **held: Any
    ) -> list[Record]:
        if drop == "outputs":
            return []
        gone = {
            "accounts": topics.account_updates,
            "links": topics.person_events,
            "scored": topics.scored,
        }[drop]
        return [r for r in records(topics, decisions, partitions, **held) if r.topic != gone]

    streams.app._records = records_kept


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) < 2 or args[0] != "--drop" or args[1] not in DROPS:
        sys.stderr.write(
            f"usage: python -m loadtest.ablation --drop {{{','.join(DROPS)}}} "
            "[options of python -m loadtest]\n"
        )
        return 2
    os.environ[ENV] = args[1]
    # The workers import the sitecustomize first; it imports this module from the checkout.
    root = str(Path(__file__).resolve().parent.parent)
    os.environ["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(_SITE), root, os.environ.get("PYTHONPATH")) if p
    )
    sys.stderr.write(f"ablation: the workers run without {args[1]} (see loadtest/ablation.py)\n")
    from loadtest.__main__ import main as loadtest_main

    sys.argv = ["python -m loadtest", *args[2:]]
    return loadtest_main()


if __name__ == "__main__":
    raise SystemExit(main())
