"""Prometheus config, alert rules and Alertmanager routing: valid for promtool, tested by
their own rule unit tests, and about metrics the code really exports.

promtool is Debian's prometheus package (`make promtool`, a dependency of `make test`).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry

from streams.metrics import IngestMetrics, Metrics, NotifierMetrics, state_gauges

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS_DIR = ROOT / "deploy" / "prometheus"
ALERTMANAGER_FILE = ROOT / "deploy" / "alertmanager" / "alertmanager.yml"
COMPOSE_FILE = ROOT / "docker-compose.yml"


def promtool(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run promtool in deploy/prometheus (where the config's relative paths resolve)."""
    tool = shutil.which("promtool") or "/usr/bin/promtool"
    assert Path(tool).exists(), "promtool is missing: `make promtool` installs Debian's prometheus"
    return subprocess.run(
        [tool, *args], cwd=PROMETHEUS_DIR, input=stdin, capture_output=True, text=True, timeout=60
    )


def _rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load((PROMETHEUS_DIR / "rules.yml").read_text())
    return [rule for group in doc["groups"] for rule in group["rules"]]


def test_promtool_accepts_the_prometheus_config_and_the_rules_it_loads() -> None:
    done = promtool("check", "config", "prometheus.yml")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 rule files found" in done.stdout, done.stdout


def test_promtool_accepts_the_rules() -> None:
    done = promtool("check", "rules", "rules.yml")
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_rule_unit_tests_pass() -> None:
    done = promtool("test", "rules", "rules_test.yml")
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_rule_unit_tests_fail_when_an_alert_is_broken(tmp_path: Path) -> None:
    # A test file that passed whatever the rules say would prove nothing.
    broken = (PROMETHEUS_DIR / "rules.yml").read_text().replace("> 0.05", "> 0.5")
    (tmp_path / "rules.yml").write_text(broken)
    (tmp_path / "rules_test.yml").write_text((PROMETHEUS_DIR / "rules_test.yml").read_text())
    done = promtool("test", "rules", str(tmp_path / "rules_test.yml"))
    assert done.returncode != 0
    assert "LeadstreamDeadLetterRateHigh" in done.stdout + done.stderr


def test_every_alert_has_a_unit_test_a_severity_and_annotations() -> None:
    tests = yaml.safe_load((PROMETHEUS_DIR / "rules_test.yml").read_text())["tests"]
    firing = {
        case["alertname"]
        for test in tests
        for case in test.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }
    for rule in _rules():
        name = rule["alert"]
        assert name in firing, f"no test makes {name} fire"
        assert rule["labels"]["severity"] in {"critical", "warning"}, name
        assert rule.get("for"), f"{name} has no `for:`; a single bad scrape would page"
        assert {"summary", "description", "runbook"} <= set(rule["annotations"]), name


def test_the_rules_use_only_metrics_the_code_exports() -> None:
    registry = CollectorRegistry()
    Metrics.create(registry)
    IngestMetrics.create(registry)
    NotifierMetrics.create(registry)
    state_gauges(registry, leads=lambda: 0.0, state_bytes=lambda: 0.0, clock=lambda: 0.0)
    exported = {sample.name for family in registry.collect() for sample in family.samples} | {
        family.name for family in registry.collect()
    }
    used = {m for rule in _rules() for m in re.findall(r"\bleadstream_\w+", rule["expr"])}
    assert used, "the rules read no leadstream metric"
    assert used <= exported, f"the rules read metrics nobody exports: {sorted(used - exported)}"


def test_alertmanager_pages_critical_chats_warnings_and_inhibits_on_worker_down() -> None:
    config = yaml.safe_load(ALERTMANAGER_FILE.read_text())
    receivers = {r["name"]: r for r in config["receivers"]}
    route = config["route"]
    assert route["receiver"] in receivers
    critical = [r for r in route["routes"] if 'severity="critical"' in r["matchers"]]
    assert len(critical) == 1 and critical[0]["receiver"] in receivers
    assert critical[0]["receiver"] != route["receiver"], "critical alerts must not go to chat"
    assert {"alertname", "job"} <= set(route["group_by"])
    names = {rule["alert"] for rule in _rules()}
    (inhibit,) = config["inhibit_rules"]
    (source,) = inhibit["source_matchers"]
    assert re.fullmatch(r'alertname="(\w+)"', source)[1] in names  # type: ignore[index]
    assert inhibit["target_matchers"] == ['severity="warning"']
    assert inhibit["equal"] == ["job"]
    # Equal on job only works if every warning keeps its job label.
    for rule in _rules():
        if rule["labels"]["severity"] == "warning" and "by (" in rule["expr"]:
            for by in re.findall(r"by \(([^)]*)\)", rule["expr"]):
                assert "job" in by, f"{rule['alert']} drops the job label: {by}"


def test_compose_mounts_the_rules_and_runs_a_pinned_alertmanager() -> None:
    services = yaml.safe_load(COMPOSE_FILE.read_text())["services"]
    mounts = dict(reversed(str(v).split(":")[:2]) for v in services["prometheus"]["volumes"])
    prometheus = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    for rule_file in prometheus["rule_files"]:
        source = mounts.get(f"/etc/prometheus/{rule_file}")
        assert source, f"compose does not mount {rule_file} next to prometheus.yml"
        assert (ROOT / source).resolve() == (PROMETHEUS_DIR / rule_file).resolve()
    alertmanager = services["alertmanager"]
    assert re.fullmatch(r"prom/alertmanager:v\d+\.\d+\.\d+", alertmanager["image"])
    am_mounts = dict(reversed(str(v).split(":")[:2]) for v in alertmanager["volumes"])
    source = am_mounts["/etc/alertmanager/alertmanager.yml"]
    assert (ROOT / source).resolve() == ALERTMANAGER_FILE.resolve()
    targets = [
        t
        for am in prometheus["alerting"]["alertmanagers"]
        for group in am["static_configs"]
        for t in group["targets"]
    ]
    assert targets == ["alertmanager:9093"]


@pytest.mark.parametrize("step", ["escalated", "reassigned"])
def test_sla_breach_steps_exist(step: str) -> None:
    from typing import get_args

    from schemas.decisions import SlaEvent

    assert step in get_args(SlaEvent.model_fields["step"].annotation)
