"""A TLS-terminating TCP proxy in front of the embedded broker, for the Kafka TLS tests.

Tansu 0.6 cannot serve TLS itself (its `--cert` and `--key` options exclude each other), so
the tests put real TLS (Python's OpenSSL) in front of it, as a load balancer or a sidecar
does in front of Kafka. The broker advertises the proxy's port, so every connection a client
opens (bootstrap and the partition leader) goes through TLS.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import threading

__all__ = ["TlsProxy"]


class TlsProxy:
    """Accepts TLS on 127.0.0.1:`port` and forwards the plain bytes to `target_port`."""

    def __init__(self, *, port: int, target_port: int, context: ssl.SSLContext) -> None:
        self.port = port
        self._target = target_port
        self._context = context
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None

    def start(self) -> TlsProxy:
        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(self._start(), self._loop)
        self._server = future.result(timeout=5)
        return self

    async def _start(self) -> asyncio.Server:
        return await asyncio.start_server(
            self._serve, "127.0.0.1", self.port, ssl=self._context, ssl_handshake_timeout=5
        )

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self._target)
        except OSError:
            writer.close()
            return
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))

    def stop(self) -> None:
        async def close() -> None:
            if self._server is not None:
                self._server.close()

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(timeout=5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)

    def __enter__(self) -> TlsProxy:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (OSError, ssl.SSLError):
        pass
    finally:
        with contextlib.suppress(OSError, RuntimeError):
            writer.close()
