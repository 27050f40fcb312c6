"""`leadstream import` against a real broker and a running worker: CRM accounts, offline events."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

from streams.kafka_io import produce, read_until
from streams.topics import Topics
from tests.integration.conftest import MODEL, Broker, wait_for

pytestmark = pytest.mark.integration


def leadstream(*args: str, broker: Broker, topics: Topics) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "streams", *args],
        capture_output=True,
        text=True,
        env={
            **os.environ,
            "LEADSTREAM_BROKER": broker.url,
            "LEADSTREAM_TOPIC_PREFIX": topics.prefix,
        },
        timeout=60,
    )


def value(worker: Any, name: str) -> float:
    """The sample `name` on /metrics."""
    for line in worker.metrics().splitlines():
        if line.startswith(f"{name} "):
            return float(line.split()[1])
    raise AssertionError(f"no {name} on /metrics")


def metric(worker: Any, line: str) -> bool:
    """/metrics has exactly this sample line (False until the worker serves)."""
    try:
        return line in worker.metrics().splitlines()
    except OSError:
        return False


ACCOUNTS_CSV = (
    "取引先ID,会社名,ドメイン,従業員数,国,担当営業\n"
    "A-001,トヨタ自動車株式会社,toyota.co.jp,70000,JP,jp-rep\n"
    "A-002,Acme Robotics Inc.,acme-robotics.com,120,US,us-rep\n"
    "\n"
    "A-003,株式会社メルカリ,mercari.com,2000,JP,\n"
    "A-004,,nameless.example\n"
)


def test_imported_accounts_reach_a_worker_at_start_up_and_changes_follow(
    make_worker: Any, tmp_path: Path
) -> None:
    worker = make_worker(start=False, LEADSTREAM_ACCOUNTS_FETCH_WAIT_MS="100")
    csv = tmp_path / "accounts.csv"
    csv.write_bytes(ACCOUNTS_CSV.encode("cp932"))

    done = leadstream("import", "accounts", str(csv), broker=worker.broker, topics=worker.topics)

    assert done.returncode == 1, done.stderr  # one row rejected; the rest produced
    assert f"{csv}:6: empty_required: '会社名' (name) is empty" in done.stderr
    assert done.stdout.splitlines()[-1] == (
        f"produced 3 account(s) to {worker.topics.crm_accounts}; "
        "rejected 1 row(s): empty_required 1"
    )
    # A worker started afterwards reads them before it processes anything.
    worker.start()
    wait_for(
        lambda: metric(worker, "leadstream_accounts_loaded 3.0"),
        timeout_s=30,
        what="the worker to load 3 accounts",
    )
    assert f"accounts: 3 accounts from {worker.topics.crm_accounts}" in worker.log()

    # While it runs: a tombstone deletes, a bad record is counted and skipped.
    asyncio.run(
        produce(
            worker.broker.bootstrap,
            worker.topics.crm_accounts,
            [(b"A-002", None), (b"A-009", b'{"account_id": "A-009"}')],
        )
    )
    wait_for(
        lambda: metric(worker, "leadstream_accounts_loaded 2.0"),
        timeout_s=10,
        what="the tombstone to delete A-002",
    )
    assert metric(worker, "leadstream_account_records_rejected_total 1.0")
    assert "accounts: record" in worker.log() and "rejected: missing_field" in worker.log()
    assert worker.proc is not None and worker.proc.poll() is None


VISITORS_CSV = (
    "来場日,氏名,会社名,メールアドレス,役職,従業員数\r\n"
    "2026/11/20,山田 太郎,株式会社アクメ,Taro.Yamada@acme.example.jp,部長,120\r\n"
    "\r\n"
    "2026/11/20,佐藤 花子,ベータ,hanako@beta.example.jp,,80\r\n"
    "2026/11/21,鈴木\r\n"
)


def test_imported_trade_show_visitors_are_scored_once_and_a_dry_run_sends_nothing(
    make_worker: Any, tmp_path: Path
) -> None:
    model = tmp_path / "model.yaml"
    model.write_text(
        MODEL.read_text().replace(
            "      - {id: pricing-view,",
            "      - {id: trade-show, event: Trade Show Visited, points: 40}\n"
            "      - {id: pricing-view,",
        )
    )
    worker = make_worker(model=model)
    rehearsal = tmp_path / "rehearsal.csv"
    rehearsal.write_text("email,date\nrehearsal@never.example,2026-11-19\n")
    visitors = tmp_path / "visitors.csv"
    visitors.write_bytes(VISITORS_CSV.encode("cp932"))
    topics = worker.topics

    dry = leadstream(
        "import", "events", str(rehearsal), "--source", "trade_show", "--dry-run",
        broker=worker.broker, topics=topics,
    )  # fmt: skip
    real = leadstream(
        "import", "events", str(visitors), "--source", "trade_show",
        broker=worker.broker, topics=topics,
    )  # fmt: skip

    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.splitlines()[-1].endswith("dry run: nothing was sent")
    assert real.returncode == 1, real.stderr
    assert f"{visitors}:5: missing_column" in real.stderr
    assert real.stdout.splitlines()[-1] == (
        f"produced 2 row(s) as 4 messages to {topics.raw}; rejected 1 row(s): missing_column 1"
    )
    emails = {"taro.yamada@acme.example.jp", "hanako@beta.example.jp"}

    def trade_show_scores(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [
            r
            for r in records
            if any(line["rule"] == "engagement:trade-show" for line in r.get("breakdown", []))
        ]

    scored = worker.read(topics.scored, lambda recs: len(trade_show_scores(recs)) >= 2)
    visits = trade_show_scores(scored)
    assert len(visits) == 2 and {r["score"] for r in visits} == {40}

    # The same file again: same messageIds, so the worker skips all four messages (the
    # counters of a batch move together, so no score change means none was emitted).
    changes = value(worker, "leadstream_score_changes_total")
    again = leadstream(
        "import", "events", str(visitors), "--source", "trade_show",
        broker=worker.broker, topics=topics,
    )  # fmt: skip
    assert again.returncode == 1, again.stderr
    wait_for(
        lambda: metric(worker, "leadstream_events_deduplicated_total 4.0"),
        timeout_s=20,
        what="the re-imported messages to be deduplicated",
    )
    assert value(worker, "leadstream_score_changes_total") == changes

    raw = asyncio.run(
        read_until(worker.broker.bootstrap, topics.raw, lambda r: len(r) >= 8, timeout_s=10)
    )
    sent = [orjson.loads(r.value) for r in raw]
    assert len(sent) == 8
    assert {m["userId"] for m in sent} == emails  # the dry run's row never reached the topic
    assert {r.key for r in raw} == {e.encode() for e in emails}


def test_a_lead_of_an_imported_account_goes_to_the_crm_owner(
    make_worker: Any, tmp_path: Path
) -> None:
    from tests.integration.segment import identify, track

    worker = make_worker(start=False, LEADSTREAM_ACCOUNTS_FETCH_WAIT_MS="100")
    csv = tmp_path / "accounts.csv"
    # A US company the CRM gives to the Japan rep: routing must follow the CRM.
    csv.write_text(
        "account_id,name,domains,employees,country,owner_rep\n"
        "G-1,Gears Incorporated,gears-inc.example,150,US,jp-rep\n",
        encoding="utf-8",
    )
    assert (
        leadstream(
            "import", "accounts", str(csv), broker=worker.broker, topics=worker.topics
        ).returncode
        == 0
    )
    worker.start()
    worker.send(
        identify("g-1", anon="anon-g", email="ann@gears-inc.example", country="US"),
        track("g-2", "Whitepaper Downloaded", anon="anon-g"),
    )

    (handoff,) = worker.read(worker.topics.routed, lambda r: len(r) >= 1)
    assert (handoff["rep_id"], handoff["routing_rule"]) == ("jp-rep", "account_owner")
    assert (handoff["account_id"], handoff["account_match"]) == ("G-1", "domain")
    assert handoff["fit"] == 20  # size-core, from the CRM's 150 employees
