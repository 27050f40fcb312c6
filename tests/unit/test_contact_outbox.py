"""The leads stage's outbox for contact updates: held from every partition, sent together,
and a flush returns only once the updates it waits for are acknowledged."""

from __future__ import annotations

import asyncio

import pytest

from schemas.internal import ContactUpdate
from streams.account_stage import ContactOutbox, ContactsNotSent


def update(lead: str, score: int = 10) -> ContactUpdate:
    return ContactUpdate(
        account="gears.example",
        lead_id=lead,
        score=score,
        ts_ms=1_700_000_000_000,
        rep=None,
        mid=f"m-{lead}-{score}",
        model="v1",
    )


class Sends:
    """A fake send: records each call; held until `release` when `gated`."""

    def __init__(self, *, gated: bool = False, fail: BaseException | None = None) -> None:
        self.calls: list[list[str]] = []
        self.gate = asyncio.Event()
        if not gated:
            self.gate.set()
        self.fail = fail

    async def __call__(self, updates: list[ContactUpdate]) -> None:
        self.calls.append([u.lead_id for u in updates])
        await self.gate.wait()
        if self.fail is not None:
            raise self.fail


async def two_flushes_at_once(sends: Sends) -> list[asyncio.Future[None]]:
    """Partitions 0 and 1 hold an update each; both flush while the send is under way."""
    box = ContactOutbox(sends, every_s=0.0)
    box.hold(0, [update("a")])
    box.hold(1, [update("b")])
    flushes = [asyncio.ensure_future(box.sent(p)) for p in (0, 1)]
    await asyncio.sleep(0.01)
    sends.gate.set()
    return flushes


async def test_one_send_takes_what_every_partition_held() -> None:
    sends = Sends()
    box = ContactOutbox(sends, every_s=0.0)
    box.hold(0, [update("a"), update("b")])
    box.hold(3, [update("c")])
    assert len(box) == 3
    await box.sent(0)
    await box.sent(3)  # already sent with partition 0's: no second send
    assert sends.calls == [["a", "b", "c"]]
    assert len(box) == 0


async def test_a_flush_returns_only_once_the_send_is_acknowledged() -> None:
    sends = Sends(gated=True)
    box = ContactOutbox(sends, every_s=0.0)
    box.hold(1, [update("a")])
    flush = asyncio.ensure_future(box.sent(1))
    await asyncio.sleep(0.05)
    assert sends.calls == [["a"]] and not flush.done()
    sends.gate.set()
    await asyncio.wait_for(flush, 1)


async def test_a_partition_that_held_nothing_does_not_wait_or_send() -> None:
    sends = Sends()
    box = ContactOutbox(sends, every_s=10.0)
    box.hold(1, [update("a")])
    await asyncio.wait_for(box.sent(2), 0.5)
    assert sends.calls == []


async def test_sends_are_every_s_apart_and_take_what_came_meanwhile() -> None:
    sends = Sends()
    box = ContactOutbox(sends, every_s=0.3)
    box.hold(0, [update("a")])
    await box.sent(0)  # the first send goes at once
    box.hold(0, [update("b")])
    later = asyncio.ensure_future(box.sent(0))
    await asyncio.sleep(0.1)
    box.hold(5, [update("c")])
    assert sends.calls == [["a"]] and not later.done()
    await asyncio.wait_for(later, 1)
    await asyncio.wait_for(box.sent(5), 0.1)  # went with "b"
    assert sends.calls == [["a"], ["b", "c"]]


async def test_a_failed_send_fails_every_flush_waiting_for_it() -> None:
    sends = Sends(gated=True, fail=ConnectionError("broker gone"))
    for flush in await two_flushes_at_once(sends):
        with pytest.raises(ContactsNotSent, match="broker gone") as raised:
            await flush
        assert isinstance(raised.value.__cause__, ConnectionError)


async def test_a_flush_cancelled_while_it_waits_leaves_the_updates_for_the_next_send() -> None:
    sends = Sends()
    box = ContactOutbox(sends, every_s=0.2)
    box.hold(0, [update("a")])
    await box.sent(0)
    box.hold(0, [update("b")])
    cancelled = asyncio.ensure_future(box.sent(0))
    await asyncio.sleep(0.05)
    cancelled.cancel()
    box.hold(2, [update("c")])
    await asyncio.wait_for(box.sent(2), 1)
    assert sends.calls == [["a"], ["b", "c"]]


async def test_flushes_waiting_at_once_make_one_send() -> None:
    sends = Sends(gated=True)
    await asyncio.wait_for(asyncio.gather(*await two_flushes_at_once(sends)), 1)
    assert sends.calls == [["a", "b"]]
