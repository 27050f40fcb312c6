"""The accounts stage: contact updates in, account roll-ups and buying-group alerts out."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import datetime
from typing import Any

import faust
from faust.types import TP

from schemas.decisions import AccountScored, RepAlert
from schemas.internal import ContactUpdate, ContactUpdateBatch
from streams.accounts import AccountDecision, apply_contacts
from streams.codec import decode_account, decode_contact_batch, encode
from streams.faust_transport import (
    PASSED_OVER_CHECK_S,
    StartOffset,
    in_order,
    reread_passed_over,
)
from streams.lead_model import LeadModel
from streams.metrics import Metrics
from streams.offset_guard import OffsetGuard
from streams.producer import BatchProducer, Record, resume_at
from streams.settings import Settings
from streams.table_store import FaustLocalTable
from streams.topics import ACCOUNTS_TABLE, Topics, account_partition

__all__ = [
    "ContactOutbox",
    "ContactsNotSent",
    "accounts_table",
    "add_account_stage",
    "contact_batches",
]


def contact_batches(
    topics: Topics, updates: Iterable[ContactUpdate], partitions: int
) -> list[Record]:
    """Contact updates as one record per partition of `leadstream.account-updates`."""
    by_partition: dict[int, list[ContactUpdate]] = {}
    for update in updates:
        by_partition.setdefault(account_partition(update.account, partitions), []).append(update)
    return [
        Record(
            topics.account_updates,
            str(partition).encode(),
            encode(ContactUpdateBatch(updates=tuple(batch))),
            partition=partition,
        )
        for partition, batch in sorted(by_partition.items())
    ]


class ContactsNotSent(RuntimeError):
    """Held contact updates could not be written: the state flushes waiting for them fail."""


class ContactOutbox:
    """Contact updates on their way to the accounts stage, sent together.

    The leads stage holds them (`hold`) instead of writing a record for each batch it
    scores. A partition's state flush first waits until the updates held for it are
    acknowledged (`sent`): they are outputs, and go out before the state that made them.
    One send takes every update held by then, from every partition, as one record per
    account partition, and sends are at least `every_s` apart. The accounts stage is a
    Faust agent, which pays its cost per record: with its changelog written in batches too,
    this took ~8 µs of the worker's CPU per event off a backlog (README, Performance). In
    exchange an update reaches its account up to `every_s` later.
    """

    def __init__(
        self,
        send: Callable[[list[ContactUpdate]], Awaitable[object]],
        *,
        every_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._send = send
        self._every_s = every_s
        self._clock = clock
        self._held: list[ContactUpdate] = []
        # Resolves when the send that takes the updates held now is done: to None, or to
        # what it raised (each flush waiting raises its own error from it).
        self._next: asyncio.Future[BaseException | None] | None = None
        self._waiting: dict[int, asyncio.Future[BaseException | None]] = {}  # by partition
        self._last_s = -math.inf
        self._sending: asyncio.Future[None] | None = None  # the last send (kept referenced)

    def __len__(self) -> int:
        """Updates held, not yet sent."""
        return len(self._held)

    def hold(self, partition: int, updates: Sequence[ContactUpdate]) -> None:
        """Updates the leads stage made for lead `partition`, to go with the next send."""
        if not updates:
            return
        if self._next is None:
            self._next = asyncio.get_running_loop().create_future()
        self._held.extend(updates)
        self._waiting[partition] = self._next

    async def sent(self, partition: int) -> None:
        """Return once the updates held for `partition` so far are acknowledged (sending
        them when the last send is `every_s` old); raises `ContactsNotSent` if it failed."""
        future = self._waiting.pop(partition, None)
        if future is None:
            return
        if future is self._next:
            wait_s = self._last_s + self._every_s - self._clock()
            if wait_s > 0:
                await asyncio.sleep(wait_s)
            if future is self._next:  # no other flush sent them meanwhile
                held, self._held, self._next = self._held, [], None
                self._last_s = self._clock()
                # A task: a flush cancelled while it waits must not leave them half sent.
                self._sending = asyncio.ensure_future(self._send_held(held, future))
        failed = await asyncio.shield(future)
        if failed is not None:
            raise ContactsNotSent(f"contact updates for the accounts stage: {failed!r}") from failed

    async def _send_held(
        self, held: list[ContactUpdate], future: asyncio.Future[BaseException | None]
    ) -> None:
        try:
            await self._send(held)
        except Exception as exc:
            future.set_result(exc)
        else:
            future.set_result(None)


def accounts_table(app: faust.App, settings: Settings) -> Any:
    """The accounts table (account domain -> `AccountState` bytes), registered on `app`."""
    return app.Table(
        ACCOUNTS_TABLE,
        default=None,
        key_type=bytes,
        value_type=bytes,
        partitions=settings.partitions,
    )


def add_account_stage(
    app: faust.App,
    *,
    table: Any,
    settings: Settings,
    topics: Topics,
    model: Callable[[], LeadModel],
    producer: BatchProducer,
    metrics: Metrics,
    clock: Callable[[], datetime],
    on_error: Callable[[BaseException], None],
    start_offset: StartOffset | None = None,
) -> Callable[[], Awaitable[None]]:
    """Register the accounts agent on `app`, over `table` (`accounts_table`); return a
    coroutine function a stop awaits before it commits: the account writes under way then
    are acknowledged, and so are the records that made them.

    Account state is small and updates are few (only score changes of contacts with a
    company domain). For each record the agent reads the accounts from the local table,
    applies the updates, waits until its outputs are acknowledged, then writes the changed
    accounts: into the local table at once, and in one batch to the table's changelog
    through the worker's producer (Faust's table would send one changelog message per
    account). The record is acknowledged once the changelog has them; a write that fails
    calls `on_error`. Re-delivered updates change nothing (`apply_contact` is idempotent).
    """
    source = app.topic(
        topics.account_updates,
        key_serializer="raw",
        value_serializer="raw",
        partitions=settings.partitions,
        internal=True,
    )
    local = FaustLocalTable(table)
    changelog = table.changelog_topic.get_topic_name()
    writing: set[asyncio.Future[None]] = set()

    order = OffsetGuard()  # no update skipped by the consumer (streams/offset_guard.py)
    rewinds = metrics.input_rewinds.labels(stage="accounts")
    owned: set[int] = set()  # account-updates partitions this worker holds now

    @app.on_partitions_revoked.connect  # type: ignore[arg-type]
    async def on_revoked(app: faust.App, revoked: set[TP], **_: Any) -> None:
        owned.difference_update(
            tp.partition for tp in revoked if tp.topic == topics.account_updates
        )

    @app.on_partitions_assigned.connect  # type: ignore[arg-type]
    async def on_assigned(app: faust.App, assigned: set[TP], **_: Any) -> None:
        mine = {tp.partition for tp in assigned if tp.topic == topics.account_updates}
        order.keep_only(mine)
        owned.clear()
        owned.update(mine)

    @app.timer(PASSED_OVER_CHECK_S)
    async def accounts_passed_over_check() -> None:
        """Records the consumer moved past without delivering them (OffsetGuard)."""
        if not app.rebalancing:
            await reread_passed_over(
                app,
                order,
                topics.account_updates,
                set(owned),
                rewinds,
                start_offset=start_offset,
                still_mine=owned.__contains__,
            )

    async def written(event: Any, partition: int, acked: asyncio.Future[Any]) -> None:
        offset = resume_at(await acked).get((changelog, partition))
        if offset is not None:
            local.persisted(partition, offset)
        event.ack()

    def _done(task: asyncio.Future[None]) -> None:
        writing.discard(task)
        exc = None if task.cancelled() else task.exception()
        if exc is not None:
            on_error(exc)

    @app.agent(source, name="accounts")
    async def accounts(stream: faust.StreamT) -> None:
        async for event in stream.noack().events():  # type: ignore[attr-defined]
            if not await in_order(app, order, event.message, rewinds, start_offset=start_offset):
                continue  # not acknowledged: read again after the seek
            partition = event.message.partition
            batch = decode_contact_batch(event.value)
            current = {}
            for key in {u.account for u in batch.updates}:
                raw = local.get(partition, key.encode())
                if raw is not None:
                    current[key] = decode_account(raw)
            result = apply_contacts(current, batch.updates, model=model(), now=clock())
            await producer.send(_records(topics, result.decisions))
            entries = [(key.encode(), encode(state)) for key, state in result.accounts.items()]
            local.write(partition, entries, offset=None)
            acked = await producer.enqueue(
                Record(changelog, key, value, partition=partition) for key, value in entries
            )
            writing.add(task := asyncio.ensure_future(written(event, partition, acked)))
            task.add_done_callback(_done)
            _count(metrics, result.decisions)

    async def written_all() -> None:
        # Failures go to `on_error` (`_done`); their records stay unacknowledged.
        await asyncio.gather(*writing, return_exceptions=True)

    return written_all


def _records(topics: Topics, decisions: Iterable[AccountDecision]) -> list[Record]:
    out = []
    for d in decisions:
        if isinstance(d, RepAlert):
            out.append(Record(topics.alerts, d.rep_id.encode(), encode(d)))
        else:
            out.append(Record(topics.accounts_scored, d.account.encode(), encode(d)))
    return out


def _count(metrics: Metrics, decisions: Iterable[AccountDecision]) -> None:
    for d in decisions:
        if isinstance(d, RepAlert):
            metrics.account_alerts.inc()
        elif isinstance(d, AccountScored):
            metrics.accounts_scored.inc()
