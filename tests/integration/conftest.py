"""Integration tier: a real Kafka-compatible broker and real worker processes.

Broker choice, in order: KAFKA_BOOTSTRAP_SERVERS if set; Kafka in testcontainers when a
Docker engine answers within a second; else the embedded Tansu broker, one per test module
(it starts in ~50 ms) and killed by its own PID.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest

from streams.broker import EmbeddedBroker, free_port, start_worker_process
from streams.kafka_io import create_topics, produce, read_until
from streams.settings import Settings
from streams.topics import Topics

MODEL = Path(__file__).parent / "lead_model.yaml"
PARTITIONS = 4


@dataclass(frozen=True)
class Broker:
    bootstrap: str
    flavor: str  # "kafka" or "tansu"

    @property
    def url(self) -> str:
        return f"kafka://{self.bootstrap}"


def _docker_answers() -> bool:
    """A Docker engine that answers a ping within a second (a hung one must not block)."""
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    if host.startswith("unix://") and not Path(host[len("unix://") :]).exists():
        return False
    try:
        import docker

        client = docker.DockerClient(base_url=host, timeout=1)
        return bool(client.ping())
    except Exception:
        return False


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    if os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        yield Broker(os.environ["KAFKA_BOOTSTRAP_SERVERS"], "kafka")
    elif _docker_answers():
        from testcontainers.kafka import KafkaContainer

        with KafkaContainer().with_kraft() as kafka:
            yield Broker(kafka.get_bootstrap_server(), "kafka")
    else:
        log = tmp_path_factory.mktemp("broker") / "tansu.log"
        with EmbeddedBroker(free_port(), log=log) as tansu:
            yield Broker(tansu.bootstrap, "tansu")


@dataclass
class Worker:
    """A `leadstream worker` process with its own app id and topic prefix."""

    broker: Broker
    topics: Topics
    app_id: str
    web_port: int
    log_path: Path
    env: dict[str, str]
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Worker:
        self.proc = start_worker_process(self.env, self.log_path)
        return self

    def kill(self, sig: int = signal.SIGKILL, timeout_s: float = 20) -> int | None:
        if self.proc is None:
            return None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, sig)
        try:
            self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=5)
        code = self.proc.returncode
        self.proc = None
        return code

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def metrics(self) -> str:
        import urllib.request

        with urllib.request.urlopen(f"http://127.0.0.1:{self.web_port}/metrics", timeout=5) as r:
            return str(r.read().decode())

    def get_json(self, path: str) -> tuple[int, dict[str, Any]] | None:
        """(status, JSON body) of one of the worker's pages, or None while nothing listens."""
        import urllib.error
        import urllib.request

        url = f"http://127.0.0.1:{self.web_port}{path}"
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                return r.status, orjson.loads(r.read())
        except urllib.error.HTTPError as exc:
            return exc.code, orjson.loads(exc.read())
        except OSError:
            return None

    def send(self, *messages: dict[str, Any] | bytes | None) -> None:
        """Produce to the raw topic; dict messages are keyed by person, as SDK pipelines do."""
        records: list[tuple[bytes | None, bytes | None]] = []
        for m in messages:
            if isinstance(m, dict):
                key = (m.get("anonymousId") or m.get("userId") or "").encode() or None
                records.append((key, orjson.dumps(m)))
            else:
                records.append((None, m))
        asyncio.run(produce(self.broker.bootstrap, self.topics.raw, records))

    def read(
        self,
        topic: str,
        done: Callable[[list[Any]], bool],
        *,
        timeout_s: float = 60,
    ) -> list[Any]:
        records = asyncio.run(
            read_until(
                self.broker.bootstrap,
                topic,
                lambda recs: done([orjson.loads(r.value) for r in recs]),
                timeout_s=timeout_s,
            )
        )
        return [orjson.loads(r.value) for r in records]


def worker_for(
    broker: Broker,
    topics: Topics,
    *,
    app_id: str,
    log_path: Path,
    data_dir: Path,
    model: Path = MODEL,
    env: dict[str, str] | None = None,
) -> Worker:
    """A worker (not started) with the test tier's settings; `env` overrides them."""
    web_port = free_port()
    return Worker(
        broker=broker,
        topics=topics,
        app_id=app_id,
        web_port=web_port,
        log_path=log_path,
        env={
            **os.environ,
            **Settings(
                broker=broker.url,
                broker_flavor=broker.flavor,  # type: ignore[arg-type]
                app_id=app_id,
                topic_prefix=topics.prefix,
                partitions=PARTITIONS,
                web_host="127.0.0.1",
                web_port=web_port,
                model_path=model,
                data_dir=data_dir,
                fetch_wait_ms=100,
                intake_fetch_wait_ms=100,
                session_timeout_s=2,
                heartbeat_interval_s=0.3,
                log_level="info",
            ).to_env(),
            **(env or {}),
        },
    )


@pytest.fixture
def make_worker(
    broker: Broker, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[Callable[..., Worker]]:
    workers: list[Worker] = []
    unique = f"t{uuid.uuid4().hex[:8]}"
    topics = Topics(prefix=f"{unique}.")
    asyncio.run(create_topics(broker.bootstrap, topics.all(), PARTITIONS))

    def make(*, model: Path = MODEL, start: bool = True, **env: str) -> Worker:
        worker = worker_for(
            broker,
            topics,
            app_id=f"leadstream-{unique}",
            log_path=tmp_path / f"worker-{len(workers)}.log",
            data_dir=tmp_path / "data",
            model=model,
            env=env,
        )
        workers.append(worker)
        return worker.start() if start else worker

    yield make
    failed = getattr(request.node, "rep_call", None)
    for worker in workers:
        worker.kill(signal.SIGTERM)
        if failed is not None and failed.failed:
            sys.stderr.write(f"\n----- {worker.log_path.name} -----\n{worker.log()[-6000:]}\n")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)


def wait_for(predicate: Callable[[], bool], *, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
