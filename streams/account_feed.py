"""The CRM accounts a worker matches leads against, and the `crm.accounts` feed that keeps them.

Pure part: `AccountsHolder` (the current `AccountDirectory`) and `account_change` (what a
`crm.accounts` record means). Adapter: `AccountFeed`, the worker's reader of `crm.accounts`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping

import mode
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from schemas.crm import CrmAccount
from streams.codec import Rejection, decode_crm_account
from streams.kafka_connection import KafkaConnection
from streams.kafka_io import open_partition
from streams.matching import DEFAULT_MIN_CONFIDENCE, AccountDirectory
from streams.metrics import Metrics

__all__ = ["AccountFeed", "AccountsHolder", "account_change"]

log = logging.getLogger(__name__)


class AccountsHolder:
    """The account directory a worker matches with now.

    Readers take `current` once per unit of work; `apply` swaps in a new directory, so a
    reader never sees one half-updated.
    """

    def __init__(
        self,
        directory: AccountDirectory | None = None,
        *,
        min_confidence: float = DEFAULT_MIN_CONFIDENCE,
    ) -> None:
        self._current = directory or AccountDirectory.build((), min_confidence=min_confidence)

    @property
    def current(self) -> AccountDirectory:
        return self._current

    def apply(self, changes: Mapping[str, CrmAccount | None]) -> None:
        """account_id -> the account now, or None: deleted."""
        if changes:
            self._current = self._current.updated(changes)


def account_change(
    key: bytes | None, value: bytes | None
) -> tuple[str, CrmAccount | None] | Rejection:
    """What a `crm.accounts` record means: (account_id, the account or None for a tombstone),
    or why it cannot be used. Anyone who can produce there can write anything: never raises."""
    if key is None or not key.strip():
        return Rejection("missing_field", "the record has no key (the account_id)")
    try:
        account_id = key.decode("utf-8").strip()
    except UnicodeDecodeError as exc:
        return Rejection("not_utf8", f"the key is not UTF-8 text ({exc.reason})")
    if value is None:
        return account_id, None
    account = decode_crm_account(value)
    if isinstance(account, Rejection):
        return account
    if account.account_id != account_id:
        return Rejection(
            "invalid_value",
            f"account_id {account.account_id!r} differs from the record key {account_id!r}",
        )
    return account_id, account


class AccountFeed(mode.Service):
    """Keeps a worker's AccountsHolder on what `crm.accounts` says.

    No consumer group: every worker reads all of partition 0 from the beginning. `catch_up`
    reads up to the end as it was at start-up before the worker processes events (one new
    directory at the end, not one per record); the task then applies each fetch as it comes.
    Unusable records are logged and counted, never fatal.
    """

    def __init__(
        self,
        *,
        topic: str,
        kafka: KafkaConnection,
        holder: AccountsHolder,
        metrics: Metrics,
        fetch_wait_ms: int,
        catch_up_timeout_s: float,
        **kwargs: object,
    ) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self._topic = topic
        self._tp = TopicPartition(topic, 0)
        self._kafka = kafka
        self._holder = holder
        self._metrics = metrics
        self._fetch_wait_ms = fetch_wait_ms
        self._timeout_s = catch_up_timeout_s
        self._consumer: AIOKafkaConsumer | None = None
        self._live_from = 0  # the end offset at connection: what catch_up reads up to
        self._pending: dict[str, CrmAccount | None] = {}
        metrics.accounts_loaded.set(len(holder.current))

    async def catch_up(self) -> None:
        """Read `crm.accounts` up to its current end, or give up after the timeout and start
        with what was read (the task goes on reading)."""
        try:
            await asyncio.wait_for(self._catch_up(), self._timeout_s)
        except Exception as exc:
            log.warning(
                "accounts: %s not read within %.0f s (%r); starting with %d accounts, "
                "the rest follow",
                self._topic,
                self._timeout_s,
                exc,
                len(self._holder.current) + sum(v is not None for v in self._pending.values()),
            )
            return
        log.info("accounts: %d accounts from %s", len(self._holder.current), self._topic)

    async def _catch_up(self) -> None:
        consumer = self._consumer or await self._connect()
        while await consumer.position(self._tp) < self._live_from:
            self.read(await self._fetch(consumer, timeout_ms=200))
        self.flush()

    async def _connect(self) -> AIOKafkaConsumer:
        consumer, end = await open_partition(
            self._kafka,
            self._topic,
            partition=self._tp.partition,
            fetch_wait_ms=self._fetch_wait_ms,
        )
        self._consumer, self._live_from = consumer, end
        return consumer

    async def _fetch(self, consumer: AIOKafkaConsumer, *, timeout_ms: int) -> list[ConsumerRecord]:
        fetched = await consumer.getmany(self._tp, timeout_ms=timeout_ms)
        return fetched.get(self._tp, [])

    def read(self, records: list[ConsumerRecord]) -> None:
        """Take in records of `crm.accounts` (applied by `flush`); log and count bad ones."""
        for record in records:
            change = account_change(record.key, record.value)
            if isinstance(change, Rejection):
                self._metrics.account_records_rejected.inc()
                log.error(
                    "accounts: record %s@%d rejected: %s: %s",
                    self._topic,
                    record.offset,
                    change.reason,
                    change.message,
                )
                continue
            account_id, account = change
            self._pending[account_id] = account

    def flush(self) -> None:
        """Make what `read` took in the current directory, in one swap."""
        pending, self._pending = self._pending, {}
        self._holder.apply(pending)
        self._metrics.accounts_loaded.set(len(self._holder.current))

    @mode.Service.task
    async def _run(self) -> None:
        while not self.should_stop:
            try:
                consumer = self._consumer
                if consumer is None:
                    consumer = await asyncio.wait_for(self._connect(), self._timeout_s)
                self.read(await self._fetch(consumer, timeout_ms=1000))
                self.flush()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if self.should_stop:
                    return
                # The feed must never stop the worker: it keeps matching with what it has.
                log.warning("accounts: reading %s failed (%r); retrying", self._topic, exc)
                await self.sleep(2.0)

    async def on_shutdown(self) -> None:
        # After the task is cancelled (mode stops tasks before on_shutdown).
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            await consumer.stop()
