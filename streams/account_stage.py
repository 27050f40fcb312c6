"""The accounts stage: contact updates in, account roll-ups and buying-group alerts out."""

from __future__ import annotations

from collections.abc import Callable, Iterable
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
from streams.producer import BatchProducer, Record
from streams.settings import Settings
from streams.topics import ACCOUNTS_TABLE, Topics, account_partition

__all__ = ["add_account_stage", "contact_batches"]


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


def add_account_stage(
    app: faust.App,
    *,
    settings: Settings,
    topics: Topics,
    model: Callable[[], LeadModel],
    producer: BatchProducer,
    metrics: Metrics,
    clock: Callable[[], datetime],
    start_offset: StartOffset | None = None,
) -> Any:
    """Register the accounts agent and its table on `app`.

    Account state is small and updates are few (only score changes of contacts with a
    company domain), so this stage uses Faust's table as it comes: one changelog record
    per changed account per batch, and the input is acknowledged after the outputs are.
    Re-delivered updates change nothing (`apply_contact` is idempotent).
    """
    source = app.topic(
        topics.account_updates,
        key_serializer="raw",
        value_serializer="raw",
        partitions=settings.partitions,
        internal=True,
    )
    table = app.Table(
        ACCOUNTS_TABLE,
        default=None,
        key_type=bytes,
        value_type=bytes,
        partitions=settings.partitions,
    )

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

    @app.agent(source, name="accounts")
    async def accounts(stream: faust.StreamT) -> None:
        async for event in stream.noack().events():  # type: ignore[attr-defined]
            if not await in_order(app, order, event.message, rewinds, start_offset=start_offset):
                continue  # not acknowledged: read again after the seek
            batch = decode_contact_batch(event.value)
            keys = {u.account for u in batch.updates}
            current = {}
            for key in keys:
                raw = table.get(key.encode())
                if raw is not None:
                    current[key] = decode_account(raw)
            result = apply_contacts(current, batch.updates, model=model(), now=clock())
            await producer.send(_records(topics, result.decisions))
            for key, state in result.accounts.items():
                table[key.encode()] = encode(state)
            _count(metrics, result.decisions)
            event.ack()

    return table


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
