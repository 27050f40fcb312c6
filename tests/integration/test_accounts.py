"""Account roll-up on a real broker: contacts of one company add up, and a buying group
alerts the account's owner once."""

from __future__ import annotations

import signal
from typing import Any

import pytest

from tests.integration.segment import identify, page

pytestmark = pytest.mark.integration


def contact(n: int, domain: str, pricing_views: int) -> list[dict[str, Any]]:
    anon = f"anon-{domain}-{n}"
    return [
        identify(f"{domain}-{n}-id", anon=anon, email=f"c{n}@{domain}", country="US"),
        *(page(f"{domain}-{n}-p{i}", "/pricing", anon=anon) for i in range(pricing_views)),
    ]


def test_three_engaged_contacts_of_one_account_alert_its_owner_once(make_worker: Any) -> None:
    worker = make_worker()
    # Two contacts at 20 points (the buying group's min_score), one at 10: not a group yet.
    worker.send(
        *contact(1, "gears.example", 2),
        *contact(2, "gears.example", 2),
        *contact(3, "gears.example", 1),
    )
    accounts = worker.read(
        worker.topics.accounts_scored, lambda r: any(a["score"] == 50 for a in r)
    )
    latest = accounts[-1]
    assert latest["account"] == "gears.example"
    assert (latest["score"], latest["contacts"], latest["engaged_contacts"]) == (50, 3, 2)
    assert latest["buying_group"] is False
    assert latest["rep_id"] == "us-rep"  # the account's owner, as routing picks it

    # The third contact reaches 20: the account has a buying group; its owner hears once.
    worker.send(page("gears.example-3-p9", "/pricing", anon="anon-gears.example-3"))
    alerts = worker.read(
        worker.topics.alerts, lambda r: any(a["trigger"] == "buying-group" for a in r)
    )
    [group] = [a for a in alerts if a["trigger"] == "buying-group"]
    assert group["rep_id"] == "us-rep"
    assert group["message"] == "gears.example has a buying group: 3 engaged contacts"
    assert group["score"] == 60
    accounts = worker.read(
        worker.topics.accounts_scored, lambda r: any(a["score"] == 60 for a in r)
    )
    assert accounts[-1]["buying_group"] is True and accounts[-1]["engaged_contacts"] == 3

    # More engagement within the cooldown: the account score moves, no second alert (an
    # alert would have been sent with the roll-up, in the same acknowledged batch).
    worker.send(page("gears.example-1-p9", "/pricing", anon="anon-gears.example-1"))
    worker.read(worker.topics.accounts_scored, lambda r: any(a["score"] == 70 for a in r))
    seen = len(alerts)
    alerts = worker.read(worker.topics.alerts, lambda r: len(r) >= seen)
    assert [a["trigger"] for a in alerts].count("buying-group") == 1


def test_a_restarted_worker_recovers_the_accounts_it_had_rolled_up(make_worker: Any) -> None:
    """The accounts table's changelog (written by the worker's producer, in one batch per
    record) is what a restarted worker rebuilds the accounts from."""
    worker = make_worker()
    worker.send(*contact(1, "cogs.example", 2), *contact(2, "cogs.example", 1))
    worker.read(worker.topics.accounts_scored, lambda r: any(a["score"] == 30 for a in r))
    assert worker.kill(signal.SIGTERM, timeout_s=30) == 0

    restarted = make_worker()
    restarted.send(page("cogs.example-2-p9", "/pricing", anon="anon-cogs.example-2"))
    accounts = restarted.read(
        restarted.topics.accounts_scored, lambda r: any(a["score"] == 40 for a in r)
    )
    # Contact 1's 20 points came back with the table; contact 2 now has 20 too.
    assert (accounts[-1]["score"], accounts[-1]["contacts"]) == (40, 2)
