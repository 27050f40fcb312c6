"""The shared KPIs counted live: a lead's first-touch UTM source, and the metrics the worker
counts from the records it emits (a fresh registry per test)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from prometheus_client import CollectorRegistry

from schemas.feedback import SalesFeedback
from schemas.internal import FeedbackIn, LeadState, PersonEvent, PersonEventBatch
from streams.codec import Rejection, _fast_path, decode_event
from streams.identity import LocalNetwork, apply_person_batch
from streams.leads import Decision, Limits, sla_tick
from streams.metrics import KpiMetrics, LabelValues
from streams.normalize import normalize
from tests.unit.test_sla import HANDED, MODEL, at, ev


def utm(source: Any, name: Any = None) -> dict[str, Any]:
    return {"campaign": {"source": source, "medium": "cpc", "name": name}}


def both_paths(context: Any) -> tuple[PersonEvent, PersonEvent]:
    raw = orjson.dumps(
        {
            "type": "page",
            "messageId": "m1",
            "anonymousId": "anon-1",
            "timestamp": "2026-11-20T09:00:00Z",
            "properties": {"path": "/pricing"},
            "context": context,
        }
    )
    fast = _fast_path(raw)
    slow = decode_event(raw)
    assert fast is not None and not isinstance(slow, Rejection)
    return fast, normalize(slow)


@pytest.mark.parametrize(
    ("context", "source", "campaign"),
    [
        (utm(" google ", "spring"), "google", "spring"),
        (utm("x" * 100, "y" * 65), "x" * 64, "y" * 64),
        (utm("", "  "), None, None),
        (utm(7, ["spring"]), None, None),
        ({"campaign": "google"}, None, None),
        ({}, None, None),
    ],
)
def test_the_utm_source_and_campaign_are_read_alike_on_both_paths(
    context: Any, source: str | None, campaign: str | None
) -> None:
    fast, slow = both_paths(context)
    assert fast == slow
    assert (fast.source, fast.campaign) == (source, campaign)


def lead_after(events: list[PersonEvent]) -> LeadState:
    net = LocalNetwork(model=MODEL, limits=Limits(), now=HANDED)
    net.send(events)
    lead = net.lead_of("anon-1")
    assert lead is not None
    return lead


def test_the_first_touch_wins_and_is_never_overwritten() -> None:
    lead = lead_after(
        [
            ev(0, type="identify", messageId="i", traits={"email": "p@acme.example"}),
            # No rule reads this page: the core's shortcut for such events keeps it too.
            ev(1, type="page", messageId="p", properties={"path": "/about"}, context=utm("bing")),
            ev(2, type="track", messageId="w", event="Whitepaper Downloaded", context=utm("li")),
        ]
    )
    assert (lead.source, lead.campaign) == ("bing", None)
    untouched = lead_after([ev(0, type="track", messageId="w", event="Whitepaper Downloaded")])
    assert (untouched.source, untouched.campaign) == (None, None)
    by_name = lead_after(
        [ev(0, type="page", messageId="p", properties={"path": "/x"}, context=utm(None, "abm"))]
    )
    assert (by_name.source, by_name.campaign) == (None, "abm")


@pytest.mark.parametrize(
    ("survivor_touch", "other_touch", "kept"),
    [
        (None, ("bing", "b"), ("bing", "b")),  # the survivor has none: the other's
        (("google", "g"), ("bing", "b"), ("google", "g")),  # the survivor's
        (None, None, (None, None)),
    ],
)
def test_a_merge_keeps_the_survivors_first_touch_unless_it_has_none(
    survivor_touch: tuple[str, str] | None,
    other_touch: tuple[str, str] | None,
    kept: tuple[str | None, str | None],
) -> None:
    def touch(value: tuple[str, str] | None) -> dict[str, Any]:
        return {"context": utm(*value)} if value else {}

    net = LocalNetwork(model=MODEL, limits=Limits(), now=HANDED)
    # B is seen first, but A sorts first: A survives.
    net.send([ev(0, type="page", messageId="b", anonymousId="B", **touch(other_touch))])
    net.send([ev(1, type="page", messageId="a", anonymousId="A", **touch(survivor_touch))])
    for mid, anon in (("b2", "B"), ("a2", "A")):
        net.send(
            [ev(2, type="identify", messageId=mid, anonymousId=anon, traits={"email": "k@z.ex"})]
        )
    survivor = net.lead_of("B")
    assert survivor is not None and survivor.pk == "A" and survivor.merged
    assert (survivor.source, survivor.campaign) == kept


def test_label_values_are_bounded() -> None:
    first = LabelValues(limit=2)
    seen = [first(v) for v in ("a", "b", "c", "a", None, "")]
    assert seen == ["a", "b", "other", "a", "(none)", "(none)"]
    allowed = LabelValues(allowed=frozenset({"google"}))
    assert [allowed(v) for v in ("google", "bing", None)] == ["google", "other", "(none)"]


def feedback_batch(
    leads: dict[str, LeadState], pk: str, fid: str, status: str, minutes: float, **extra: Any
) -> Any:
    lead = leads[pk]
    fb = SalesFeedback(
        feedback_id=fid,
        lead_id=lead.lead_id,
        status=status,
        occurred_at=at(minutes),
        **extra,
    )
    return apply_person_batch(
        leads,
        PersonEventBatch(events=(), feedback=(FeedbackIn(to=pk, feedback=fb),)),
        model=MODEL,
        rotation={},
        limits=Limits(),
        now=at(minutes),
    )


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


def test_the_kpi_metrics_count_funnel_entries_revenue_speed_breaches_and_rejections() -> None:
    registry = CollectorRegistry()
    kpis = KpiMetrics.create(registry, sources=("google",))
    net = LocalNetwork(model=MODEL, limits=Limits(), now=HANDED)

    # A demo request (100 points) makes an MQL, handed off with an SLA clock.
    out: list[Decision] = []
    for anon, source in (("g", "google"), ("b", "bing"), ("n", None)):
        out += net.send(
            [
                ev(
                    0,
                    type="identify",
                    messageId=f"{anon}-i",
                    anonymousId=anon,
                    traits={"email": f"{anon}@acme.example", "country": "US"},
                    **({"context": utm(source, "spring")} if source else {}),
                ),
                ev(
                    1, type="track", messageId=f"{anon}-d", anonymousId=anon, event="Demo Requested"
                ),
            ]
        )
    kpis.count(out, leads=net.entries)
    for source in ("google", "other", "(none)"):
        assert (
            sample(registry, "leadstream_funnel_entries_total", stage="mql", source=source) == 1
        ), source
    assert sample(registry, "leadstream_funnel_entries_total", stage="sal", source="google") == 0

    # Sales: g accepted after 2 minutes, then won twice over (two deals); b rejected.
    for pk, fid, status, minutes, extra in (
        ("g", "f1", "accepted", 2, {}),
        ("g", "f2", "won", 30, {"amount": 1200.5, "currency": "EUR"}),
        ("b", "f3", "rejected", 3, {"reason": "no_budget"}),
        ("n", "f4", "won", 40, {"amount": 99}),
    ):
        result = feedback_batch(net.entries, pk, fid, status, minutes, **extra)
        net.entries.update(result.leads)
        kpis.count(result.decisions, leads=result.leads, feedback=result.feedback)

    funnel = "leadstream_funnel_entries_total"
    assert sample(registry, funnel, stage="sal", source="google") == 1
    assert sample(registry, funnel, stage="won", source="google") == 1
    assert sample(registry, funnel, stage="recycled", source="other") == 1
    assert sample(registry, funnel, stage="won", source="(none)") == 1
    revenue = "leadstream_revenue_won_total"
    assert sample(registry, revenue, source="google", currency="EUR") == 1200.5
    assert sample(registry, revenue, source="(none)", currency="XXX") == 99
    assert sample(registry, "leadstream_rejections_total", reason="no_budget") == 1
    assert sample(registry, "leadstream_rejections_total", reason="bad_data") == 0
    speed = "leadstream_speed_to_lead_seconds"
    assert sample(registry, f"{speed}_count", priority="mql") == 1
    assert sample(registry, f"{speed}_bucket", priority="mql", le="60.0") == 0
    assert sample(registry, f"{speed}_bucket", priority="mql", le="300.0") == 1
    # Replaying a delivered feedback counts nothing twice.
    again = feedback_batch(net.entries, "g", "f2", "won", 30, amount=1200.5, currency="EUR")
    kpis.count(again.decisions, leads=again.leads, feedback=again.feedback)
    assert sample(registry, revenue, source="google", currency="EUR") == 1200.5


def test_sla_breaches_by_priority() -> None:
    registry = CollectorRegistry()
    kpis = KpiMetrics.create(registry)
    net = LocalNetwork(model=MODEL, limits=Limits(), now=HANDED)
    net.send(
        [
            ev(0, type="identify", messageId="i", traits={"email": "p@a.ex", "country": "US"}),
            ev(1, type="track", messageId="w", event="Whitepaper Downloaded"),
        ]
    )
    lead = net.lead_of("anon-1")
    assert lead is not None and lead.sla is not None
    for minutes in (4, 6, 16):
        ticked = sla_tick(lead, model=MODEL, rotation={}, limits=Limits(), now=at(minutes))
        assert ticked is not None
        lead = ticked.lead
        kpis.count(ticked.decisions, leads={lead.pk: lead})
    assert sample(registry, "leadstream_sla_breaches_total", priority="hot") == 2
    assert sample(registry, "leadstream_sla_breaches_total", priority="mql") == 0


def test_the_kpi_sources_setting_is_a_comma_separated_list(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from streams.settings import Settings

    monkeypatch.setenv("LEADSTREAM_KPI_SOURCES", " google, ,bing ")
    settings = Settings()
    assert settings.kpi_sources == ("google", "bing")
    assert settings.to_env()["LEADSTREAM_KPI_SOURCES"] == "google,bing"
