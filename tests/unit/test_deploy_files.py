"""The deployment files agree with the code they deploy.

docker-compose.yml, deploy/prometheus/prometheus.yml and the Dockerfile are read as data and
checked against streams.settings, streams.topics and the CLI, so a topic renamed, a partition
count or a port changed on one side only fails here instead of in production.
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from streams.cli import _parser
from streams.kafka_io import bootstrap_servers
from streams.settings import Settings
from streams.topics import (
    CRM_ACCOUNTS_TOPIC_CONFIG,
    CRM_ACCOUNTS_TOPIC_PARTITIONS,
    DELIVERED_TOPIC_CONFIG,
    DELIVERED_TOPIC_PARTITIONS,
    MODEL_TOPIC_CONFIG,
    MODEL_TOPIC_PARTITIONS,
    Topics,
)

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
PROMETHEUS_FILE = ROOT / "deploy" / "prometheus" / "prometheus.yml"
DOCKERFILE = ROOT / "Dockerfile"

# Compose service names.
KAFKA, TOPIC_INIT, WORKER, PROMETHEUS = "kafka", "topic-init", "worker", "prometheus"
PROMETHEUS_JOB = "leadstream-worker"
NOTIFIER, NOTIFIER_JOB = "notifier", "leadstream-notifier"


# ---------------------------------------------------------------- helpers


@dataclass(frozen=True)
class Listener:
    name: str
    host: str
    port: int


def _listeners(value: str) -> dict[str, Listener]:
    """'INTERNAL://kafka:9092,CONTROLLER://:9093' -> {name: Listener}."""
    out = {}
    for item in value.split(","):
        match = re.fullmatch(r"\s*([A-Za-z0-9_-]+)://([^:,]*):(\d+)\s*", item)
        assert match, f"unparsable listener {item!r} in {value!r}"
        name, host, port = match.groups()
        out[name] = Listener(name, host, int(port))
    return out


def _env(service: dict[str, Any]) -> dict[str, str]:
    """A service's environment as strings, from the map or the list form."""
    raw = service.get("environment") or {}
    if isinstance(raw, list):
        raw = dict(item.split("=", 1) for item in raw)
    return {k: "" if v is None else str(v) for k, v in raw.items()}


def _published_ports(service: dict[str, Any]) -> dict[int, tuple[str, int]]:
    """Container port -> (host ip, host port) for every published port of a service."""
    out = {}
    for port in service.get("ports", []):
        if isinstance(port, dict):
            container, host_ip, host = port["target"], port.get("host_ip", ""), port["published"]
        else:
            parts = str(port).split("/")[0].split(":")
            container, host = parts[-1], parts[-2] if len(parts) > 1 else parts[-1]
            host_ip = ":".join(parts[:-2])
        out[int(container)] = (host_ip, int(host))
    return out


def _depends_on(service: dict[str, Any]) -> dict[str, str]:
    raw = service.get("depends_on") or {}
    if isinstance(raw, list):
        return dict.fromkeys(raw, "service_started")
    return {name: spec.get("condition", "service_started") for name, spec in raw.items()}


def _uncompose(text: str) -> str:
    """Undo compose's `$$` escape: the text the container actually receives."""
    return text.replace("$$", "$")


@dataclass(frozen=True)
class Instruction:
    keyword: str
    args: str


def _dockerfile_stages() -> list[list[Instruction]]:
    """Instructions grouped by stage (continuations joined, comments dropped), global
    ARG defaults substituted into FROM lines."""
    lines: list[str] = []
    pending = ""
    for raw in DOCKERFILE.read_text().splitlines():
        stripped = raw.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):  # a comment inside a continued instruction
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        lines.append(pending + stripped)
        pending = ""
    global_args: dict[str, str] = {}
    stages: list[list[Instruction]] = []
    for line in lines:
        keyword, _, args = line.partition(" ")
        keyword, args = keyword.upper(), args.strip()
        if keyword == "ARG" and not stages and "=" in args:
            name, _, default = args.partition("=")
            global_args[name] = default
        if keyword == "FROM":
            args = re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: global_args[m[1] or m[2]], args)
            stages.append([])
        if stages:
            stages[-1].append(Instruction(keyword, args))
    assert stages, "the Dockerfile has no FROM"
    return stages


def _final_stage() -> list[Instruction]:
    return _dockerfile_stages()[-1]


def _json_form(stage: list[Instruction], keyword: str) -> list[str]:
    values = [i.args for i in stage if i.keyword == keyword]
    assert values, f"the final stage has no {keyword}"
    parsed = json.loads(values[-1])  # exec (JSON) form; shell form would not parse
    assert isinstance(parsed, list)
    return parsed


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    doc = yaml.safe_load(COMPOSE_FILE.read_text())
    assert isinstance(doc, dict)
    for name in (KAFKA, TOPIC_INIT, WORKER, PROMETHEUS):
        assert name in doc["services"], f"docker-compose.yml has no `{name}` service"
    return doc


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, Any]:
    services: dict[str, Any] = compose["services"]
    return services


@pytest.fixture(scope="module")
def kafka_env(services: dict[str, Any]) -> dict[str, str]:
    return _env(services[KAFKA])


@pytest.fixture
def worker_settings(services: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Settings exactly as the worker container computes them, defaults included."""
    import os

    for key in list(os.environ):
        if key.upper().startswith("LEADSTREAM_"):
            monkeypatch.delenv(key)
    for key, value in _env(services[WORKER]).items():
        monkeypatch.setenv(key, value)
    return Settings()


@pytest.fixture(scope="module")
def topic_init_script(services: dict[str, Any]) -> str:
    service = services[TOPIC_INIT]
    parts = [*(service.get("entrypoint") or []), *(service.get("command") or [])]
    return _uncompose("\n".join(str(p) for p in parts))


def _ensured_topics(script: str) -> dict[str, int]:
    """`ensure_topic NAME PARTITIONS [CONFIGS]` lines of the topic-init script."""
    topics: dict[str, int] = {}
    for match in re.finditer(r"^\s*ensure_topic\s+(\S+)\s+(\d+)\b", script, re.MULTILINE):
        name, partitions = match[1], int(match[2])
        assert name not in topics, f"topic-init ensures {name} twice"
        topics[name] = partitions
    return topics


def _worker_bootstrap(settings: Settings) -> Iterator[tuple[str, int]]:
    for hostport in bootstrap_servers(settings.broker).split(","):
        host, _, port = hostport.rpartition(":")
        yield host, int(port)


# ---------------------------------------------------------------- topics


def test_topic_init_creates_every_topic_with_the_workers_partition_count(
    topic_init_script: str, worker_settings: Settings
) -> None:
    ensured = _ensured_topics(topic_init_script)
    expected = Topics(worker_settings.topic_prefix).all()
    missing = [t for t in expected if t not in ensured]
    assert not missing, f"topic-init does not create {missing} (ensures {sorted(ensured)})"
    # Persons are routed to crc32(key) % LEADSTREAM_PARTITIONS: every topic needs that count.
    wrong = {t: ensured[t] for t in expected if ensured[t] != worker_settings.partitions}
    assert not wrong, (
        f"partition counts {wrong} differ from the worker's {worker_settings.partitions}"
    )


def test_topic_init_creates_lead_model_with_one_partition_compacted(
    topic_init_script: str, worker_settings: Settings
) -> None:
    name = Topics(worker_settings.topic_prefix).model
    assert _ensured_topics(topic_init_script).get(name) == MODEL_TOPIC_PARTITIONS
    configs = re.search(
        rf"^\s*ensure_topic\s+{re.escape(name)}\s+\d+\s+(\S+)", topic_init_script, re.M
    )
    assert configs, f"topic-init gives {name} no configs"
    assert dict(kv.split("=", 1) for kv in configs[1].split(",")) == dict(MODEL_TOPIC_CONFIG)


def test_topic_init_creates_crm_accounts_with_one_partition_compacted(
    topic_init_script: str, worker_settings: Settings
) -> None:
    name = Topics(worker_settings.topic_prefix).crm_accounts
    assert _ensured_topics(topic_init_script).get(name) == CRM_ACCOUNTS_TOPIC_PARTITIONS
    configs = re.search(
        rf"^\s*ensure_topic\s+{re.escape(name)}\s+\d+\s+(\S+)", topic_init_script, re.M
    )
    assert configs, f"topic-init gives {name} no configs"
    assert dict(kv.split("=", 1) for kv in configs[1].split(",")) == dict(CRM_ACCOUNTS_TOPIC_CONFIG)


def test_topic_init_creates_idempotently_and_checks_existing_counts(
    topic_init_script: str,
) -> None:
    helper = re.search(r"ensure_topic\(\)\s*\{(.*?)^\s*\}", topic_init_script, re.S | re.M)
    assert helper, "topic-init defines no ensure_topic helper"
    body = helper[1]
    assert "--create" in body and "--if-not-exists" in body, "re-running topic-init must succeed"
    assert '--partitions "$partitions"' in body, "ensure_topic ignores its PARTITIONS argument"
    assert "--replication-factor 1" in body, "a single broker cannot hold more than 1 replica"
    # The partition count of topics that already existed is verified, not assumed.
    assert "--describe" in topic_init_script and "PartitionCount" in topic_init_script


def test_topic_init_runs_once_between_kafka_healthy_and_the_worker(
    services: dict[str, Any],
) -> None:
    assert services[KAFKA].get("healthcheck", {}).get("test"), "kafka has no healthcheck"
    assert _depends_on(services[TOPIC_INIT]).get(KAFKA) == "service_healthy"
    assert _depends_on(services[WORKER]).get(TOPIC_INIT) == "service_completed_successfully"
    # A restarting one-shot never "completes": the worker would wait forever.
    assert str(services[TOPIC_INIT].get("restart", "no")) in {"no", "on-failure"}
    assert services[TOPIC_INIT].get("image") == services[KAFKA].get("image")


# ---------------------------------------------------------------- broker wiring


def test_worker_broker_points_at_the_kafka_service(worker_settings: Settings) -> None:
    assert worker_settings.broker_flavor == "kafka", "Tansu workarounds must stay off on Kafka"
    hosts = [host for host, _ in _worker_bootstrap(worker_settings)]
    assert hosts == [KAFKA], (
        f"LEADSTREAM_BROKER {worker_settings.broker!r} is not the kafka service"
    )


def test_kafka_advertises_the_internal_listener_the_worker_uses(
    kafka_env: dict[str, str], worker_settings: Settings
) -> None:
    advertised = _listeners(kafka_env["KAFKA_ADVERTISED_LISTENERS"])
    bound = _listeners(kafka_env["KAFKA_LISTENERS"])
    protocols = dict(
        p.split(":") for p in kafka_env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(",")
    )
    controllers = set(kafka_env["KAFKA_CONTROLLER_LISTENER_NAMES"].split(","))
    for host, port in _worker_bootstrap(worker_settings):
        # After bootstrapping a client connects to what is advertised for that listener, so
        # the worker's address must itself be an advertised one, reachable from containers.
        same = [lst for lst in advertised.values() if (lst.host, lst.port) == (host, port)]
        assert same, f"{host}:{port} is not among the advertised listeners {sorted(advertised)}"
        listener = same[0]
        assert listener.name in bound and bound[listener.name].port == port, (
            f"listener {listener.name} is advertised on {port} but not bound there"
        )
        assert listener.name not in controllers
        # The worker speaks plaintext (no TLS/SASL settings exist).
        assert protocols.get(listener.name) == "PLAINTEXT"


def test_kafka_advertises_a_published_listener_for_host_clients(
    services: dict[str, Any], kafka_env: dict[str, str]
) -> None:
    advertised = _listeners(kafka_env["KAFKA_ADVERTISED_LISTENERS"])
    bound = _listeners(kafka_env["KAFKA_LISTENERS"])
    published = _published_ports(services[KAFKA])
    external = [lst for lst in advertised.values() if lst.host in {"localhost", "127.0.0.1"}]
    assert external, "no listener is advertised for clients on the host"
    for listener in external:
        container_port = bound[listener.name].port
        assert container_port in published, f"{listener.name} is not published to the host"
        assert published[container_port][1] == listener.port, (
            f"{listener.name} advertises localhost:{listener.port} but is published elsewhere"
        )


def test_kafka_is_one_kraft_node_in_combined_mode(kafka_env: dict[str, str]) -> None:
    roles = {r.strip() for r in kafka_env["KAFKA_PROCESS_ROLES"].split(",")}
    assert roles == {"broker", "controller"}
    bound = _listeners(kafka_env["KAFKA_LISTENERS"])
    advertised = _listeners(kafka_env["KAFKA_ADVERTISED_LISTENERS"])
    (controller,) = kafka_env["KAFKA_CONTROLLER_LISTENER_NAMES"].split(",")
    assert controller in bound and controller not in advertised
    voters = kafka_env["KAFKA_CONTROLLER_QUORUM_VOTERS"].split(",")
    assert voters == [f"{kafka_env['KAFKA_NODE_ID']}@{KAFKA}:{bound[controller].port}"]
    assert kafka_env.get("KAFKA_INTER_BROKER_LISTENER_NAME") in bound
    assert kafka_env.get("CLUSTER_ID"), "KRaft storage is formatted with CLUSTER_ID"
    # Defaults of 3 replicas cannot be met by one broker; consumer groups would never work.
    for key in (
        "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR",
        "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR",
        "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR",
    ):
        assert kafka_env.get(key) == "1", f"{key} must be 1 on a single node"


# ---------------------------------------------------------------- worker and Prometheus


def test_worker_publishes_its_web_port(services: dict[str, Any], worker_settings: Settings) -> None:
    assert worker_settings.web_port in _published_ports(services[WORKER])
    assert services[WORKER].get("build") is not None, "the worker runs the image built here"
    command = services[WORKER].get("command") or _json_form(_final_stage(), "CMD")
    _parser().parse_args(command)  # a real `leadstream` subcommand (SystemExit otherwise)
    assert command[0] == "worker"


def test_prometheus_scrapes_the_worker_metrics(worker_settings: Settings) -> None:
    config = yaml.safe_load(PROMETHEUS_FILE.read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert PROMETHEUS_JOB in jobs, f"no `{PROMETHEUS_JOB}` job in {sorted(jobs)}"
    job = jobs[PROMETHEUS_JOB]
    assert job.get("metrics_path", "/metrics") == "/metrics"
    assert job.get("scheme", "http") == "http"
    targets = [t for group in job["static_configs"] for t in group["targets"]]
    assert f"{WORKER}:{worker_settings.web_port}" in targets, targets
    interval = job.get("scrape_interval") or config.get("global", {}).get("scrape_interval")
    assert interval == "15s"


def test_prometheus_service_mounts_this_config(services: dict[str, Any]) -> None:
    mounts: dict[str, str] = {}
    for volume in services[PROMETHEUS].get("volumes", []):
        source, target = str(volume).split(":")[:2]
        mounts[target] = source
    config = mounts.get("/etc/prometheus/prometheus.yml")
    assert config, "prometheus does not mount a config at /etc/prometheus/prometheus.yml"
    assert (COMPOSE_FILE.parent / config).resolve() == PROMETHEUS_FILE.resolve()


# ---------------------------------------------------------------- Dockerfile


def test_dockerfile_runs_as_a_non_root_user() -> None:
    users = [i.args for i in _final_stage() if i.keyword == "USER"]
    assert users, "the final stage runs as root (no USER)"
    user = users[-1].split(":")[0]
    assert user not in {"root", "0"}, f"USER {users[-1]} is root"


def test_dockerfile_entrypoint_is_the_leadstream_command() -> None:
    stage = _final_stage()
    assert _json_form(stage, "ENTRYPOINT") == ["leadstream"]
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert "leadstream" in scripts, "pyproject.toml no longer installs a `leadstream` command"
    cmd = _json_form(stage, "CMD")
    assert cmd == ["worker"]
    _parser().parse_args(cmd)
    exposed = {p.split("/")[0] for i in stage if i.keyword == "EXPOSE" for p in i.args.split()}
    assert str(Settings.model_fields["web_port"].default) in exposed


def test_dockerfile_installs_a_pinned_python_non_editably() -> None:
    stages = _dockerfile_stages()
    for stage in stages:
        image = stage[0].args.split()[0]
        assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm", image), image
    runs = " ".join(i.args for stage in stages for i in stage if i.keyword == "RUN")
    assert "pip install" in runs
    # /src is not copied into the runtime stage; an editable install would point at nothing.
    assert not re.search(r"(^|\s)(-e|--editable)(\s|=)", runs)


def test_dockerfile_compiles_the_scoring_core_into_the_package_the_runtime_copies() -> None:
    build, runtime = _dockerfile_stages()[0], _final_stage()
    runs = [i.args for i in build if i.keyword == "RUN"]
    installed = next(n for n, run in enumerate(runs) if "pip install --no-deps ." in run)
    compiled = next(n for n, run in enumerate(runs) if "leadstream core build" in run)
    # Built into the installed package (after its install), and the build fails unless the
    # core loads compiled once mypy is gone.
    assert compiled > installed
    step = runs[compiled]
    assert step.index("pip uninstall -y mypy") < step.index("assert streams.CORE.compiled")
    assert any(i.keyword == "COPY" and "/opt/venv /opt/venv" in i.args for i in runtime)


# ---------------------------------------------------------------- notifier


def _kafka_configs(text: str) -> dict[str, str]:
    """`a=1,b=[x,y]` (kafka-configs.sh --add-config) -> {a: 1, b: x,y}."""
    return {
        k: v.strip("[]")
        for k, v in (kv.split("=", 1) for kv in re.findall(r"[^,=]+=(?:\[[^\]]*\]|[^,]*)", text))
    }


def test_topic_init_creates_the_notifier_topics(
    topic_init_script: str, worker_settings: Settings
) -> None:
    topics = Topics(worker_settings.topic_prefix)
    ensured = _ensured_topics(topic_init_script)
    assert ensured.get(topics.alerts_dlq) == worker_settings.partitions
    assert ensured.get(topics.alerts_delivered) == DELIVERED_TOPIC_PARTITIONS
    configs = re.search(
        rf"^\s*ensure_topic\s+{re.escape(topics.alerts_delivered)}\s+\d+\s+(\S+)",
        topic_init_script,
        re.M,
    )
    assert configs, f"topic-init gives {topics.alerts_delivered} no configs"
    assert _kafka_configs(configs[1]) == dict(DELIVERED_TOPIC_CONFIG)


@pytest.fixture
def notifier_settings(services: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Settings exactly as the notifier container computes them, defaults included."""
    import os

    assert NOTIFIER in services, "docker-compose.yml has no `notifier` service"
    for key in list(os.environ):
        if key.upper().startswith("LEADSTREAM_"):
            monkeypatch.delenv(key)
    for key, value in _env(services[NOTIFIER]).items():
        monkeypatch.setenv(key, value)
    return Settings()


def test_notifier_runs_the_image_on_the_workers_broker_with_a_valid_channels_file(
    services: dict[str, Any], notifier_settings: Settings, worker_settings: Settings
) -> None:
    from streams.notify import load_channels

    service = services[NOTIFIER]
    assert service.get("build") == services[WORKER].get("build")
    command = service["command"]
    args = _parser().parse_args(command)
    assert command[0] == "notifier" and args.handler.__name__ == "_cmd_notifier"
    assert notifier_settings.broker == worker_settings.broker
    assert notifier_settings.topic_prefix == worker_settings.topic_prefix
    assert notifier_settings.app_id == worker_settings.app_id
    assert _depends_on(service).get(TOPIC_INIT) == "service_completed_successfully"
    mounts = {}
    for volume in service.get("volumes", []):
        source, target = str(volume).split(":")[:2]
        mounts[target] = source
    channels = notifier_settings.channels_file
    assert channels is not None and str(channels) in mounts, "the channels file is not mounted"
    # The file shipped for it loads (no ${NAME} reference may be left unset in it).
    load_channels(COMPOSE_FILE.parent / mounts[str(channels)], env={})
    assert notifier_settings.notifier_web_port in _published_ports(service)


def test_prometheus_scrapes_the_notifier_metrics(notifier_settings: Settings) -> None:
    config = yaml.safe_load(PROMETHEUS_FILE.read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert NOTIFIER_JOB in jobs, f"no `{NOTIFIER_JOB}` job in {sorted(jobs)}"
    targets = [t for group in jobs[NOTIFIER_JOB]["static_configs"] for t in group["targets"]]
    assert f"{NOTIFIER}:{notifier_settings.notifier_web_port}" in targets, targets


# ---------------------------------------------------------------- second worker, Grafana


def test_a_second_worker_joins_the_same_group_on_another_host_port(
    services: dict[str, Any], worker_settings: Settings
) -> None:
    second = services["worker-2"]
    first = services[WORKER]
    # Same image, command, settings and start order: one consumer group splitting partitions.
    for key in ("build", "command", "environment", "depends_on", "stop_grace_period"):
        assert second.get(key) == first.get(key), key
    ports = _published_ports(second)
    assert worker_settings.web_port in ports
    assert (
        ports[worker_settings.web_port][1] != _published_ports(first)[worker_settings.web_port][1]
    )
    config = yaml.safe_load(PROMETHEUS_FILE.read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    targets = [t for group in jobs[PROMETHEUS_JOB]["static_configs"] for t in group["targets"]]
    assert f"worker-2:{worker_settings.web_port}" in targets, targets


def test_grafana_is_provisioned_with_the_dashboards_and_the_prometheus_service(
    services: dict[str, Any],
) -> None:
    grafana = services["grafana"]
    assert re.fullmatch(r"grafana/grafana:\d+\.\d+\.\d+", grafana["image"]), "pin Grafana"
    mounts = {}
    for volume in grafana.get("volumes", []):
        source, target = str(volume).split(":")[:2]
        mounts[target] = source
    provisioning = ROOT / "deploy" / "grafana" / "provisioning"
    assert (ROOT / mounts["/etc/grafana/provisioning"]).resolve() == provisioning.resolve()
    (provider,) = yaml.safe_load((provisioning / "dashboards" / "leadstream.yml").read_text())[
        "providers"
    ]
    dashboards = ROOT / mounts[provider["options"]["path"]]
    assert dashboards.resolve() == (ROOT / "deploy" / "grafana" / "dashboards").resolve()
    assert sorted(p.name for p in dashboards.glob("*.json")), "no dashboards to provision"
    (source,) = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())[
        "datasources"
    ]
    host, port = source["url"].removeprefix("http://").split(":")
    assert host == PROMETHEUS and int(port) in _published_ports(services[host])


def test_each_compose_worker_keeps_rocksdb_state_on_a_volume_of_its_own(
    services: dict[str, Any],
) -> None:
    image_data_dir = re.search(r"LEADSTREAM_DATA_DIR=(\S+)", DOCKERFILE.read_text())
    assert image_data_dir is not None, "the image sets no LEADSTREAM_DATA_DIR"
    workers = [n for n, s in services.items() if (s.get("command") or []) == ["worker"]]
    assert len(workers) == 2, workers
    volumes = []
    for name in workers:
        assert _env(services[name]).get("LEADSTREAM_STORE") == "rocksdb", name
        mounts = dict(str(v).split(":")[1::-1] for v in services[name].get("volumes", []))
        volume = mounts.get(image_data_dir.group(1))
        assert volume is not None, f"{name}: no volume at the data dir"
        volumes.append(volume.split()[0])
    # Two processes cannot open one RocksDB store: each worker needs its own volume.
    assert len(set(volumes)) == len(volumes), volumes
