"""deploy/k8s: every manifest is valid against the Kubernetes JSON schemas (kubernetes-validate,
which bundles them: no network), and agrees with the code it deploys (settings, ports,
probes, the image's user, the data dir, the lead model)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from streams.cli import _parser
from streams.lead_model import parse_model
from streams.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
KUBERNETES_VERSION = "1.30.0"


def _docs() -> list[tuple[str, dict[str, Any]]]:
    out = []
    for path in sorted(K8S.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                out.append((path.name, doc))
    return out


DOCS = _docs()


def _one(kind: str, name: str) -> dict[str, Any]:
    (doc,) = [d for _, d in DOCS if d["kind"] == kind and d["metadata"]["name"] == name]
    return doc


@pytest.fixture
def settings(monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Settings as a pod computes them from the ConfigMap."""
    import os

    for key in list(os.environ):
        if key.upper().startswith("LEADSTREAM_"):
            monkeypatch.delenv(key)
    for key, value in _one("ConfigMap", "leadstream-settings")["data"].items():
        monkeypatch.setenv(key, value)
    return Settings()


@pytest.mark.parametrize(
    ("file", "doc"), DOCS, ids=[f"{f}:{d['kind']}/{d['metadata']['name']}" for f, d in DOCS]
)
def test_every_manifest_is_valid_against_the_kubernetes_schema(
    file: str, doc: dict[str, Any]
) -> None:
    # strict: unknown fields (a typo'd `livenesProbe`) fail too.
    kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
    if doc["kind"] != "Namespace":
        assert doc["metadata"]["namespace"] == "leadstream", file


def test_the_validator_catches_a_misspelt_field() -> None:
    bad = yaml.safe_load((K8S / "worker-statefulset.yaml").read_text())
    container = bad["spec"]["template"]["spec"]["containers"][0]
    container["livenesProbe"] = container.pop("livenessProbe")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, KUBERNETES_VERSION, strict=True)


def test_the_kinds_the_issue_asks_for_are_there() -> None:
    kinds = {(d["kind"], d["metadata"]["name"]) for _, d in DOCS}
    assert kinds >= {
        ("Namespace", "leadstream"),
        ("ConfigMap", "leadstream-settings"),
        ("ConfigMap", "leadstream-model"),
        ("StatefulSet", "leadstream-worker"),
        ("Service", "leadstream-worker"),
        ("PodDisruptionBudget", "leadstream-worker"),
        ("Deployment", "leadstream-notifier"),
    }
    assert (K8S / "README.md").exists()


def test_the_configmap_gives_valid_settings_and_a_valid_model(settings: Settings) -> None:
    assert settings.broker_flavor == "kafka"
    model_text = _one("ConfigMap", "leadstream-model")["data"][settings.model_path.name]
    parse_model(model_text, source="leadstream-model")  # raises ModelError with the line


def _worker_pod() -> dict[str, Any]:
    spec: dict[str, Any] = _one("StatefulSet", "leadstream-worker")["spec"]["template"]["spec"]
    return spec


def test_worker_probes_hit_health_endpoints_on_the_web_port(settings: Settings) -> None:
    (container,) = _worker_pod()["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports["http"] == settings.web_port
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    health = (ROOT / "streams" / "health.py").read_text()
    for path in ("/readyz", "/healthz"):
        assert re.search(rf'page\("{path}"\)', health), f"the worker serves no {path}"
    args = _parser().parse_args(container["args"])
    assert args.handler.__name__ == "_cmd_worker"


def test_worker_keeps_its_table_store_on_a_claimed_volume(settings: Settings) -> None:
    sts = _one("StatefulSet", "leadstream-worker")
    (claim,) = sts["spec"]["volumeClaimTemplates"]
    (container,) = _worker_pod()["containers"]
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert mounts[claim["metadata"]["name"]] == str(settings.data_dir)
    # The claim is what makes RocksDB worth it: state that outlives the pod.
    assert settings.store == "rocksdb"
    assert mounts["model"] == str(settings.model_path.parent)
    assert sts["spec"]["serviceName"] == _one("Service", "leadstream-worker")["metadata"]["name"]
    assert _one("Service", "leadstream-worker")["spec"]["clusterIP"] == "None"
    # More workers than partitions would sit idle.
    assert sts["spec"]["replicas"] <= settings.partitions


def test_pods_run_as_the_images_non_root_user_with_resources() -> None:
    user = re.search(r"^USER (\d+):(\d+)", (ROOT / "Dockerfile").read_text(), re.M)
    assert user
    for kind, name in (("StatefulSet", "leadstream-worker"), ("Deployment", "leadstream-notifier")):
        pod = _one(kind, name)["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] == int(user[1])
        assert pod["terminationGracePeriodSeconds"] >= 30
        for container in pod["containers"]:
            assert container["securityContext"]["allowPrivilegeEscalation"] is False
            assert container["resources"]["requests"]["cpu"]
            assert container["resources"]["limits"]["memory"]


def test_selectors_match_their_pods() -> None:
    labels = _one("StatefulSet", "leadstream-worker")["spec"]["template"]["metadata"]["labels"]
    for kind in ("PodDisruptionBudget", "StatefulSet"):
        selector = _one(kind, "leadstream-worker")["spec"]["selector"]["matchLabels"]
        assert selector.items() <= labels.items(), kind
    assert _one("Service", "leadstream-worker")["spec"]["selector"].items() <= labels.items()
    assert _one("PodDisruptionBudget", "leadstream-worker")["spec"]["maxUnavailable"] == 1
    notifier = _one("Deployment", "leadstream-notifier")
    assert (
        notifier["spec"]["selector"]["matchLabels"].items()
        <= notifier["spec"]["template"]["metadata"]["labels"].items()
    )
    (container,) = notifier["spec"]["template"]["spec"]["containers"]
    assert _parser().parse_args(container["args"]).handler.__name__ == "_cmd_notifier"


def test_kafka_secrets_are_mounted_where_the_example_settings_read_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = (K8S / "configmap.yaml").read_text()
    example = dict(re.findall(r"^  # (LEADSTREAM_KAFKA_[A-Z_]+): (\S+)$", text, re.MULTILINE))
    files = {k: v for k, v in example.items() if v.startswith("/")}
    assert set(files) == {"LEADSTREAM_KAFKA_SASL_PASSWORD_FILE", "LEADSTREAM_KAFKA_SSL_CAFILE"}
    (mount_dir,) = {str(Path(v).parent) for v in files.values()}
    for kind, name in (("StatefulSet", "leadstream-worker"), ("Deployment", "leadstream-notifier")):
        pod = _one(kind, name)["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        mounts = {m["name"]: m for m in container["volumeMounts"]}
        volumes = {v["name"]: v for v in pod["volumes"]}
        assert mounts["kafka-secrets"]["mountPath"] == mount_dir, name
        assert mounts["kafka-secrets"]["readOnly"] is True
        secret = volumes["kafka-secrets"]["secret"]
        assert secret["secretName"] == "leadstream-kafka"
        assert secret["optional"] is True  # PLAINTEXT clusters need no Secret

    # The example, uncommented, gives valid settings once the Secret's files are there.
    import trustme

    for key, value in example.items():
        if key in files:
            local = tmp_path / Path(value).name
            value = str(local)
            if key.endswith("CAFILE"):
                trustme.CA().cert_pem.write_to_path(value)
            else:
                local.write_text("a-password\n")
        monkeypatch.setenv(key, value)
    for key, value in _one("ConfigMap", "leadstream-settings")["data"].items():
        monkeypatch.setenv(key, value)
    settings = Settings()
    assert settings.kafka_security_protocol == "SASL_SSL"
    assert settings.kafka_sasl_password is not None
    assert settings.kafka_sasl_password.get_secret_value() == "a-password"
