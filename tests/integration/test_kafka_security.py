"""Kafka TLS and SASL against a real broker: our client helpers, the worker end to end, and
the errors a user sees when a certificate or a password is wrong.

What Tansu 0.6 (the embedded broker) can and cannot do is in README, "Kafka authentication
and TLS": TLS is served by a TLS proxy in front of it (tests/integration/tls_proxy.py), and its
`--authentication` mode is used for the SASL failure paths only, because it cannot keep a
SCRAM user (a successful SCRAM login is unit-tested and needs Apache Kafka to be proven).
"""

from __future__ import annotations

import asyncio
import os
import ssl
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
import trustme
from pydantic import SecretStr

from streams.broker import EmbeddedBroker, free_port, start_worker_process, stop_process_group
from streams.kafka_connection import KafkaConnection, kafka_connection
from streams.kafka_io import create_topics, produce, read_until
from streams.settings import Settings
from streams.topics import Topics
from tests.integration.segment import identify, page
from tests.integration.tls_proxy import TlsProxy

pytestmark = pytest.mark.integration

MODEL = Path(__file__).parent / "lead_model.yaml"
PASSWORD = "s3cret-Pa55word"


class TlsBroker:
    """Tansu behind a TLS proxy, and the PEM files a client needs."""

    def __init__(self, tmp: Path, *, client_certs: bool) -> None:
        self.ca = trustme.CA()
        self.cafile = tmp / "ca.pem"
        self.ca.cert_pem.write_to_path(str(self.cafile))
        server = self.ca.issue_cert("127.0.0.1", "localhost")
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        server.configure_cert(context)
        if client_certs:  # mutual TLS: the proxy wants a client certificate from our CA
            context.verify_mode = ssl.CERT_REQUIRED
            self.ca.configure_trust(context)
        client = self.ca.issue_cert("leadstream-client")
        self.certfile, self.keyfile = tmp / "client.pem", tmp / "client.key"
        client.cert_chain_pems[0].write_to_path(str(self.certfile))
        client.private_key_pem.write_to_path(str(self.keyfile))
        self.port = free_port()
        self.tansu = EmbeddedBroker(free_port(), advertised_port=self.port, log=tmp / "tansu.log")
        self.proxy = TlsProxy(port=self.port, target_port=self.tansu.port, context=context)

    @property
    def url(self) -> str:
        return f"kafka://127.0.0.1:{self.port}"

    def settings(self, **overrides: object) -> Settings:
        values: dict[str, object] = {
            "broker": self.url,
            "kafka_security_protocol": "SSL",
            "kafka_ssl_cafile": self.cafile,
            **overrides,
        }
        return Settings(**values)  # type: ignore[arg-type]

    def __enter__(self) -> TlsBroker:
        self.tansu.start()
        self.proxy.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.proxy.stop()
        self.tansu.stop()


@pytest.fixture(scope="module")
def tls_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsBroker]:
    with TlsBroker(tmp_path_factory.mktemp("tls"), client_certs=False) as broker:
        yield broker


def _roundtrip(kafka: KafkaConnection, topic: str) -> list[bytes]:
    async def go() -> list[bytes]:
        await create_topics(kafka, [topic], 1)
        await produce(kafka, topic, [(b"k", b"over-tls-1"), (b"k", b"over-tls-2")])
        records = await read_until(kafka, topic, lambda r: len(r) >= 2, timeout_s=10)
        return [r.value for r in records]

    return asyncio.run(go())


def _cli(
    *args: str, settings: Settings, tmp: Path, timeout_s: float = 30
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEADSTREAM_")}
    return subprocess.run(
        [sys.executable, "-m", "streams", *args],
        env={**env, **settings.to_env()},
        cwd=tmp,
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )


def test_ssl_produce_and_read_back_through_our_helpers(tls_broker: TlsBroker) -> None:
    kafka = kafka_connection(tls_broker.settings())
    assert _roundtrip(kafka, f"tls-{uuid.uuid4().hex[:8]}") == [b"over-tls-1", b"over-tls-2"]


def test_the_worker_scores_a_lead_over_tls_end_to_end(
    tls_broker: TlsBroker, tmp_path: Path
) -> None:
    unique = f"s{uuid.uuid4().hex[:8]}"
    topics = Topics(prefix=f"{unique}.")
    settings = tls_broker.settings(
        app_id=f"leadstream-{unique}",
        topic_prefix=topics.prefix,
        partitions=2,
        broker_flavor="tansu",
        web_host="127.0.0.1",
        web_port=free_port(),
        model_path=MODEL,
        data_dir=tmp_path / "data",
        fetch_wait_ms=100,
        intake_fetch_wait_ms=100,
        session_timeout_s=2,
        heartbeat_interval_s=0.3,
    )
    kafka = kafka_connection(settings)
    asyncio.run(create_topics(kafka, topics.all(), 2))
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEADSTREAM_")}
    worker = start_worker_process({**env, **settings.to_env()}, tmp_path / "worker.log")
    try:
        message = page("tls-1", "/pricing", anon="anon-tls", days_ago=0)
        asyncio.run(produce(kafka, topics.raw, [(b"anon-tls", orjson.dumps(message))]))
        records = asyncio.run(read_until(kafka, topics.scored, lambda r: len(r) >= 1, timeout_s=40))
    finally:
        stop_process_group(worker, timeout_s=20)
    log = (tmp_path / "worker.log").read_text(errors="replace")
    assert records, f"nothing on leads.scored; worker log:\n{log[-4000:]}"
    scored = orjson.loads(records[0].value)
    assert (scored["score"], scored["model_version"]) == (10, "test-1")  # pricing page: 10
    assert f"broker 127.0.0.1:{tls_broker.port} (SSL)" in log


def test_an_untrusted_broker_certificate_is_a_clear_error_not_a_hang(
    tls_broker: TlsBroker, tmp_path: Path
) -> None:
    other_ca = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other_ca))
    events = tmp_path / "events.jsonl"
    events.write_bytes(orjson.dumps(identify("m-1", anon="a-1", email="x@example.com")) + b"\n")
    started = time.monotonic()
    done = _cli(
        "send",
        str(events),
        settings=tls_broker.settings(kafka_ssl_cafile=other_ca),
        tmp=tmp_path,
    )
    assert done.returncode == 1, done.stderr
    assert time.monotonic() - started < 25
    assert f"leadstream: cannot send to {tls_broker.url}" in done.stderr
    assert "certificate verify failed" in done.stderr


def test_mutual_tls_needs_the_client_certificate(tmp_path: Path) -> None:
    with TlsBroker(tmp_path, client_certs=True) as broker:
        with_cert = kafka_connection(
            broker.settings(kafka_ssl_certfile=broker.certfile, kafka_ssl_keyfile=broker.keyfile)
        )
        assert _roundtrip(with_cert, "mtls") == [b"over-tls-1", b"over-tls-2"]

        without = kafka_connection(broker.settings())
        with pytest.raises(Exception, match="Unable to bootstrap"):
            asyncio.run(asyncio.wait_for(create_topics(without, ["mtls-2"], 1), 20))


# --- SASL on Tansu's --authentication: the failure paths -------------------------------------


@pytest.fixture(scope="module")
def sasl_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    log = tmp_path_factory.mktemp("sasl") / "tansu.log"
    with EmbeddedBroker(free_port(), log=log, authentication=True) as tansu:
        yield tansu


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-512", "SCRAM-SHA-256"])
def test_a_wrong_password_is_a_clear_error_not_a_hang(
    sasl_broker: EmbeddedBroker, mechanism: str, tmp_path: Path
) -> None:
    events = tmp_path / "events.jsonl"
    events.write_bytes(orjson.dumps(identify("m-1", anon="a-1", email="x@example.com")) + b"\n")
    settings = Settings(
        broker=sasl_broker.url,
        kafka_security_protocol="SASL_PLAINTEXT",
        kafka_sasl_mechanism=mechanism,  # type: ignore[arg-type]
        kafka_sasl_username="leadstream",
        kafka_sasl_password=SecretStr(PASSWORD),
    )
    started = time.monotonic()
    done = _cli("send", str(events), settings=settings, tmp=tmp_path)
    assert done.returncode == 1, done.stderr
    assert time.monotonic() - started < 25
    (first,) = [line for line in done.stderr.splitlines() if line.startswith("leadstream:")]
    assert first.startswith(f"leadstream: cannot send to {sasl_broker.url}")
    assert f"SASL_PLAINTEXT, {mechanism} as 'leadstream'" in first
    assert "authentication failed" in first
    assert PASSWORD not in done.stderr + done.stdout


def test_a_client_without_credentials_is_refused_by_an_authenticating_broker(
    sasl_broker: EmbeddedBroker,
) -> None:
    plain = KafkaConnection(bootstrap=sasl_broker.bootstrap)
    with pytest.raises(Exception, match="Unable to bootstrap"):
        asyncio.run(asyncio.wait_for(create_topics(plain, ["refused"], 1), 20))
