"""Faust transport that lets the consumer's fetch wait be configured.

Faust hard-codes `fetch_max_wait_ms=1500` for the worker consumer. On Apache Kafka a fetch
returns as soon as data arrives, so that only bounds idle polling; on brokers that do not
wake a waiting fetch (Tansu) it adds up to 1.5 s to every hop. This is the one place that
reaches into Faust for it; faust-streaming is pinned to a minor version for that reason.
"""

from __future__ import annotations

from typing import Any

import aiokafka
from faust.transport.drivers import aiokafka as faust_aiokafka

__all__ = ["transport_class"]


def transport_class(fetch_wait_ms: int) -> type[faust_aiokafka.Transport]:
    """A Faust aiokafka Transport whose worker consumer waits at most `fetch_wait_ms`."""

    class _ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
        def _create_worker_consumer(self, transport: Any) -> aiokafka.AIOKafkaConsumer:
            consumer = super()._create_worker_consumer(transport)
            # Read by AIOKafkaConsumer.start() when it builds its Fetcher.
            consumer._fetch_max_wait_ms = fetch_wait_ms
            return consumer

    class _Consumer(faust_aiokafka.Consumer):
        def _new_consumer_thread(self) -> faust_aiokafka.AIOKafkaConsumerThread:
            return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)

    class _Transport(faust_aiokafka.Transport):
        Consumer = _Consumer

    return _Transport
