"""`python -m loadtest.ablation`: a worker started with a part dropped really runs without it,
and without a drop it is the worker as it is (else the figures it gives would be wrong)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from loadtest.ablation import ENV, install, main

ROOT = Path(__file__).resolve().parents[2]

#: What a worker's leads stage does with its input, on seeded traffic: the leads it keeps
#: and the records it writes, by topic. Run in a fresh interpreter started the way the
#: ablation starts workers (the patch is made at start-up, by the sitecustomize).
_WORK = """
import asyncio
import collections
from datetime import UTC, datetime
from itertools import islice

import orjson

from loadtest.generator import Generator
from loadtest.harness import MODEL
from schemas.internal import ContactUpdate
from streams.account_stage import ContactOutbox
from streams.app import _records
from streams.identity import apply_person_batch, keys_of
from streams.intake import RawRecord, intake_batch
from streams.intake_service import forward_batches
from streams.lead_model import load_model
from streams.lead_store import LeadStore
from streams.leads import Limits
from streams.table_store import DictTable
from streams.topics import Topics

now = datetime.now(UTC)
messages = Generator(leads=50, seed=1).messages(now_ms=int(now.timestamp() * 1000))
raw = [RawRecord(m.value, m.key, "engagement.raw", 0, i) for i, m in enumerate(islice(messages, 3000))]
topics, model, store = Topics(), load_model(MODEL), LeadStore(DictTable(), cache_size=100)
written, leads, contacts = collections.Counter(), set(), []
for start in range(0, len(raw), 500):
    fetched = intake_batch(
        raw[start : start + 500], partitions=4, now=now,
        feedback_topic=topics.feedback, erasure_topic=topics.erasure,
    )
    for record, batch in forward_batches(fetched, topics):
        if batch is None or record.partition is None:
            continue
        p = record.partition
        scored = apply_person_batch(
            store.leads(p, keys_of(batch)), batch,
            model=model, rotation=store.rotation(p), limits=Limits(), now=now,
        )
        written.update(r.topic for r in _records(topics, scored.decisions, 4))
        store.update(p, scored.leads, scored.rotation)
        leads.update(scored.leads)
        contacts += [d for d in scored.decisions if isinstance(d, ContactUpdate)]


async def held():  # the leads stage holds contact updates for the accounts stage
    outbox = ContactOutbox(lambda updates: asyncio.sleep(0), every_s=0)
    outbox.hold(0, contacts)
    return len(outbox)


print(orjson.dumps({"leads": len(leads), "records": written, "held": asyncio.run(held())}).decode())
"""


def _worker_work(drop: str | None) -> dict[str, object]:
    env = {k: v for k, v in os.environ.items() if k != ENV}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "loadtest" / "ablation_site"), str(ROOT)])
    if drop is not None:
        env[ENV] = drop
    done = subprocess.run(
        [sys.executable, "-c", _WORK], env=env, cwd=ROOT, capture_output=True, check=True
    )
    result: dict[str, object] = orjson.loads(done.stdout)
    return result


def test_without_a_drop_the_worker_scores_and_writes_every_kind_of_record() -> None:
    work = _worker_work(None)
    assert work["leads"] == 50
    assert work["held"] > 0  # type: ignore[operator]
    assert set(work["records"]) >= {  # type: ignore[arg-type]
        "leads.scored",
        "rep.alerts",
        "leadstream.account-updates",
        "leadstream.person-events",
    }


@pytest.mark.parametrize(
    ("drop", "leads", "gone", "kept", "held"),
    [
        ("core", 0, {"leads.scored", "leadstream.account-updates"}, set(), False),
        ("outputs", 50, {"leads.scored", "leadstream.person-events"}, set(), False),
        ("accounts", 50, {"leadstream.account-updates"}, {"leads.scored"}, False),
        ("links", 50, {"leadstream.person-events"}, {"leads.scored"}, True),
    ],
)
def test_a_dropped_part_does_nothing_and_the_rest_runs(
    drop: str, leads: int, gone: set[str], kept: set[str], held: bool
) -> None:
    work = _worker_work(drop)
    records: dict[str, int] = work["records"]  # type: ignore[assignment]
    assert work["leads"] == leads
    assert bool(work["held"]) is held
    assert not gone & set(records)
    assert kept <= set(records)


def test_an_unknown_part_is_refused_with_the_ones_there_are() -> None:
    with pytest.raises(ValueError, match="expected one of core, outputs, accounts, links"):
        install("scoring")


def test_the_command_says_how_to_use_it_when_the_drop_is_missing(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["--events", "1000"]) == 2
    assert "usage: python -m loadtest.ablation --drop" in capsys.readouterr().err
