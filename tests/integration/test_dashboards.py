"""Every Grafana panel queries metrics that exist: the metric names of each PromQL expression
in deploy/grafana/dashboards are looked up on the /metrics of a running worker and notifier.

A metric renamed in streams/metrics.py (or a typo in a dashboard) leaves a panel silently
empty in production; here it fails with the panel's title.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from streams.broker import free_port, stop_process_group, wait_for_port
from streams.settings import Settings
from tests.integration.conftest import PARTITIONS, wait_for

ROOT = Path(__file__).resolve().parents[2]
GRAFANA = ROOT / "deploy" / "grafana"
DASHBOARDS = sorted((GRAFANA / "dashboards").glob("*.json"))

# Which processes' /metrics a dashboard may query. Prometheus adds `up` itself per target.
SOURCES = {
    "pipeline-health.json": ("worker", "notifier", "prometheus"),
    "funnel-and-sla.json": ("worker", "notifier"),
    "roi.json": ("worker",),
}
PROMETHEUS_OWN = frozenset({"up", "scrape_duration_seconds", "scrape_samples_scraped"})

# ---------------------------------------------------------------- a small PromQL tokenizer

_TOKEN = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<string>"(?:\\.|[^"\\])*"|'(?:\\.|[^'\\])*'|`[^`]*`)
  | (?P<range>\[[^\]]*\])
  | (?P<duration>(?:\d+(?:ms|s|m|h|d|w|y))+\b)
  | (?P<number>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
  | (?P<var>\$\{?\w+\}?)
  | (?P<ident>[A-Za-z_:][A-Za-z0-9_:]*)
  | (?P<op>[(){},]|[=!]~|[=!<>]=|[-+*/%^<>=])
    """,
    re.VERBOSE,
)
_KEYWORDS = frozenset(
    {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset"}
    | {"and", "or", "unless", "inf", "nan", "atan2"}
)
# Aggregation operators may be followed by `by (...)` before their `(`.
_AGGREGATIONS = frozenset(
    {"sum", "min", "max", "avg", "count", "group", "stddev", "stdvar", "topk", "bottomk"}
    | {"quantile", "count_values", "limitk", "limit_ratio"}
)
# Keywords followed by a parenthesised list of label names, not of expressions.
_LABEL_LISTS = frozenset({"by", "without", "on", "ignoring", "group_left", "group_right"})


def _tokens(expr: str) -> list[tuple[str, str]]:
    out, pos = [], 0
    while pos < len(expr):
        match = _TOKEN.match(expr, pos)
        assert match, f"cannot tokenize {expr[pos:]!r} in {expr!r}"
        pos = match.end()
        if match.lastgroup != "ws":
            out.append((match.lastgroup or "", match.group()))
    return out


def metric_names(expr: str) -> set[str]:
    """Metric names of a PromQL expression: identifiers that are not functions (followed by
    `(`), keywords, label names inside `{...}` or inside `by (...)`-style lists."""
    tokens = _tokens(expr)
    names: set[str] = set()
    in_braces = False
    i = 0
    while i < len(tokens):
        kind, text = tokens[i]
        following = tokens[i + 1][1] if i + 1 < len(tokens) else ""
        if text == "{":
            in_braces = True
        elif text == "}":
            in_braces = False
        elif kind == "ident" and not in_braces:
            lowered = text.lower()
            if lowered in _LABEL_LISTS and following == "(":
                close = next(j for j in range(i + 1, len(tokens)) if tokens[j][1] == ")")
                i = close
            elif lowered not in _KEYWORDS | _AGGREGATIONS and following != "(":
                names.add(text)
        i += 1
    return names


def _exposed(text: str) -> set[str]:
    """Every series name a /metrics page can hold: from the `# TYPE` lines (families without
    samples yet included) and the sample lines."""
    names: set[str] = set()
    suffixes = {
        "histogram": ("_bucket", "_sum", "_count", "_created"),
        "summary": ("_sum", "_count", "_created"),
        "counter": ("_total", "_created"),
    }
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            base = name.removesuffix("_total") if kind == "counter" else name
            names.update(base + s for s in suffixes.get(kind, ("",)))
        elif line and not line.startswith("#"):
            names.add(re.split(r"[{\s]", line, maxsplit=1)[0])
    return names


def _panels(doc: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in doc.get("panels", []):
        yield panel
        yield from panel.get("panels", [])  # collapsed rows


def _expressions(doc: dict[str, Any]) -> Iterator[tuple[str, str]]:
    for panel in _panels(doc):
        for target in panel.get("targets", []):
            if target.get("expr"):
                yield panel.get("title", "?"), target["expr"]


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        ("sum(rate(a_total[$__rate_interval]))", {"a_total"}),
        ('sum by (reason, le) (rate(b_bucket{le="300.0", x=~"a|b"}[5m])) > 0', {"b_bucket"}),
        (
            "histogram_quantile(0.9, sum by (le) (rate(c_bucket[1m]))) / on(x) group_left d",
            {
                "c_bucket",
                "d",
            },
        ),
        ("1000 * e / clamp_min(f, 1) offset 5m", {"e", "f"}),
        ('up{job="w"} and without (instance) g', {"up", "g"}),
    ],
)
def test_the_tokenizer_finds_metric_names_only(expr: str, names: set[str]) -> None:
    assert metric_names(expr) == names


def test_every_dashboard_is_provisioned_with_the_provisioned_datasource() -> None:
    assert {p.name for p in DASHBOARDS} == set(SOURCES), "a dashboard has no metric sources"
    (source,) = yaml.safe_load(
        (GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text()
    )["datasources"]
    assert source["type"] == "prometheus" and source["url"] == "http://prometheus:9090"
    provider = yaml.safe_load(
        (GRAFANA / "provisioning" / "dashboards" / "leadstream.yml").read_text()
    )["providers"][0]
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards"
    uids = set()
    for path in DASHBOARDS:
        doc = json.loads(path.read_text())
        assert doc["uid"] not in uids
        uids.add(doc["uid"])
        ids = [p["id"] for p in _panels(doc)]
        assert len(ids) == len(set(ids)), f"{path.name}: duplicate panel ids"
        for panel in _panels(doc):
            for target in panel.get("targets", []):
                assert target["datasource"]["uid"] == source["uid"], (path.name, panel["title"])
    assert any(True for path in DASHBOARDS for _ in _expressions(json.loads(path.read_text())))


@pytest.fixture
def notifier_metrics(make_worker: Any, tmp_path: Path) -> Iterator[str]:
    """The /metrics of a `leadstream notifier` on the test broker (the shipped channels file)."""
    worker = make_worker(start=False)  # for the broker, topics and app id only
    port = free_port()
    env = {
        **os.environ,
        **Settings(
            broker=worker.broker.url,
            broker_flavor=worker.broker.flavor,  # type: ignore[arg-type]
            app_id=worker.app_id,
            topic_prefix=worker.topics.prefix,
            partitions=PARTITIONS,
            web_host="127.0.0.1",
            session_timeout_s=2,
            heartbeat_interval_s=0.3,
        ).to_env(),
    }
    log = tmp_path / "notifier.log"
    channels = ROOT / "deploy" / "notifier" / "channels.yaml"
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [
                *(sys.executable, "-m", "streams", "notifier"),
                *("--channels", str(channels), "--web-port", str(port)),
            ],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_for(
            lambda: proc.poll() is not None or wait_for_port(port, timeout_s=0.1),
            timeout_s=30,
            what="the notifier to listen",
        )
        assert proc.poll() is None, log.read_text()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            yield r.read().decode()
    finally:
        stop_process_group(proc, timeout_s=20)


def test_every_panel_queries_metrics_the_processes_expose(
    make_worker: Any, notifier_metrics: str
) -> None:
    worker = make_worker(LEADSTREAM_WRITE_KEYS="wk_dashboards")
    wait_for(lambda: wait_for_port(worker.web_port, timeout_s=0.1), timeout_s=30, what="/metrics")
    exposed = {
        "worker": _exposed(worker.metrics()),
        "notifier": _exposed(notifier_metrics),
        "prometheus": set(PROMETHEUS_OWN),
    }
    assert "leadstream_event_to_alert_seconds_bucket" in exposed["worker"]
    assert "leadstream_notifier_deliveries_total" in exposed["notifier"]

    missing = []
    checked = 0
    for path in DASHBOARDS:
        allowed = set().union(*(exposed[s] for s in SOURCES[path.name]))
        for title, expr in _expressions(json.loads(path.read_text())):
            names = metric_names(expr)
            assert names, f"{path.name}: panel {title!r} queries no metric: {expr}"
            checked += len(names)
            missing += [f"{path.name}: {title!r}: {n}" for n in sorted(names - allowed)]
    assert not missing, "panels query metrics nothing exposes:\n" + "\n".join(missing)
    assert checked > 40
