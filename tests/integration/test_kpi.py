"""`leadstream report kpi` against the topics a running worker wrote, with UTM touches on the
events and sales feedback on sfa.feedback."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from streams.kafka_io import produce
from tests.integration.conftest import MODEL, wait_for
from tests.integration.segment import identify, page, track

pytestmark = pytest.mark.integration


def utm(message: dict[str, Any], source: str, name: str) -> dict[str, Any]:
    return message | {"context": {"campaign": {"source": source, "medium": "cpc", "name": name}}}


def test_the_kpi_report_reads_funnel_revenue_and_attribution(
    make_worker: Any, tmp_path: Path
) -> None:
    worker = make_worker()
    worker.send(
        # k1: two touches from two sources, handed off hot by the whitepaper.
        utm(page("k1-1", "/pricing", anon="anon-k1", days_ago=2), "google", "spring"),
        identify("k1-2", anon="anon-k1", email="kim@kpi.example", country="US"),
        utm(track("k1-3", "Whitepaper Downloaded", anon="anon-k1"), "linkedin", "abm"),
        # k2: one touch, handed off hot, then rejected.
        identify("k2-1", anon="anon-k2", email="ray@kpi.example", country="US"),
        utm(track("k2-2", "Whitepaper Downloaded", anon="anon-k2"), "google", "spring"),
    )
    handoffs = worker.read(worker.topics.routed, lambda r: len({h["lead_id"] for h in r}) >= 2)
    by_email = {h["email"]: h["lead_id"] for h in handoffs}
    k1, k2 = by_email["kim@kpi.example"], by_email["ray@kpi.example"]

    at = datetime.now(UTC)
    feedback = [
        {"feedback_id": "k-1", "lead_id": k1, "rep_id": "us-rep", "status": "accepted"},
        {"feedback_id": "k-2", "lead_id": k1, "status": "opportunity", "amount": 10000},
        {"feedback_id": "k-3", "lead_id": k1, "status": "won", "amount": 12000, "currency": "USD"},
        {"feedback_id": "k-4", "lead_id": k2, "rep_id": "us-rep", "status": "rejected"}
        | {"reason": "no_budget"},
    ]
    records = [
        (f["lead_id"].encode(), orjson.dumps(f | {"occurred_at": at + timedelta(seconds=i)}))
        for i, f in enumerate(feedback)
    ]
    asyncio.run(produce(worker.broker.bootstrap, worker.topics.feedback, records))
    worker.read(
        worker.topics.scored,
        lambda r: {(s["lead_id"], s["stage"]) for s in r} >= {(k1, "won"), (k2, "recycled")},
    )

    yesterday = (at - timedelta(days=1)).date().isoformat()
    costs = tmp_path / "costs.csv"
    costs.write_text(
        "source,campaign,period,amount\n"
        f"google,spring,{yesterday}..{yesterday},1000\n"
        "linkedin,abm,2026-13,500\n",
        encoding="utf-8",
    )
    html = tmp_path / "kpi.html"
    done = subprocess.run(
        [
            *(sys.executable, "-m", "streams", "report", "kpi", "--since", "30d"),
            *("--until", (at + timedelta(minutes=1)).isoformat(), "--by", "source"),
            *("--costs", str(costs), "--html", str(html)),
        ],
        capture_output=True,
        text=True,
        env={
            **os.environ,
            "LEADSTREAM_BROKER": worker.broker.url,
            "LEADSTREAM_TOPIC_PREFIX": worker.topics.prefix,
        },
        timeout=60,
    )

    assert done.returncode == 0, done.stderr
    out = done.stdout
    for line in (
        "  MQL                2",
        "  accepted           1   50% of MQLs",
        "  opportunity        1  100% of accepted",
        "  won                1  100% of opportunities",
        "revenue won    12,000 USD",
        "rejections     no_budget 1",
        # k1's won amount: first touch google, last touch linkedin, linear half each.
        "  google                 12,000 USD / 0 / 6,000 USD",
        "  linkedin               0 / 12,000 USD / 6,000 USD",
        "  google                 revenue      6,000 USD  cost        1,000  ROI +500%",
    ):
        assert line in out, (line, out)
    # By first touch, both leads came from google.
    assert "google                  2     50%   100%   100%       12,000 USD" in out
    assert f"{costs}:3: period '2026-13' is not a real date" in done.stderr

    class Page(HTMLParser):
        svgs = 0
        text = ""

        def handle_starttag(self, tag: str, attrs: Any) -> None:
            self.svgs += tag == "svg"

        def handle_data(self, data: str) -> None:
            self.text += data

    page_ = Page()
    page_.feed(html.read_text(encoding="utf-8"))
    assert page_.svgs >= 3
    assert "12,000 USD" in page_.text and "50%" in page_.text and "+500%" in page_.text


def test_the_worker_counts_the_kpis_live_on_its_metrics(make_worker: Any, tmp_path: Path) -> None:
    """Funnel entries and won revenue by first-touch source, and speed to lead, on /metrics."""
    model = tmp_path / "model.yaml"
    model.write_text(
        MODEL.read_text()
        + "\nsla:\n  hot: {remind_after_minutes: 60, escalate_after_minutes: 120}\n",
        encoding="utf-8",
    )
    worker = make_worker(model=model, LEADSTREAM_KPI_SOURCES="google,bing")
    worker.send(
        utm(identify("m1-1", anon="anon-m1", email="mo@kpi.example", country="US"), "google", "s"),
        utm(track("m1-2", "Whitepaper Downloaded", anon="anon-m1"), "linkedin", "abm"),
    )
    (handoff,) = worker.read(worker.topics.routed, lambda r: len(r) >= 1)
    lead_id = handoff["lead_id"]
    at = datetime.now(UTC)
    feedback = [
        {"feedback_id": "m-1", "lead_id": lead_id, "status": "accepted"},
        {"feedback_id": "m-2", "lead_id": lead_id, "status": "won", "amount": 12000.5}
        | {"currency": "USD"},
    ]
    asyncio.run(
        produce(
            worker.broker.bootstrap,
            worker.topics.feedback,
            [
                (lead_id.encode(), orjson.dumps(f | {"occurred_at": at + timedelta(seconds=i)}))
                for i, f in enumerate(feedback)
            ],
        )
    )

    def samples() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        return {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(worker.metrics())
            for s in family.samples
        }

    revenue = ("leadstream_revenue_won_total", (("currency", "USD"), ("source", "google")))
    wait_for(lambda: revenue in samples(), timeout_s=60, what="won revenue on /metrics")
    found = samples()
    assert found[revenue] == 12000.5

    def funnel(stage: str, source: str) -> float:
        key = (("source", source), ("stage", stage))
        return found[("leadstream_funnel_entries_total", key)]

    # The first touch (google) labels the lead, not the later linkedin one.
    assert funnel("sal", "google") == 1 and funnel("won", "google") == 1
    assert funnel("won", "other") == 0 and funnel("won", "(none)") == 0
    assert found[("leadstream_speed_to_lead_seconds_count", (("priority", "hot"),))] == 1
    assert found[("leadstream_sla_breaches_total", (("priority", "hot"),))] == 0
