"""Identity on a real broker: a person's server-side events, two browsers and an email end
in one lead, and the merge is announced on leads.merged."""

from __future__ import annotations

from typing import Any

import pytest

from tests.integration.segment import identify, page, track

pytestmark = pytest.mark.integration


def test_a_userid_and_a_second_browser_merge_into_one_lead(make_worker: Any) -> None:
    worker = make_worker()
    # Server-side events by userId only, and a laptop browsing anonymously: two leads.
    worker.send(
        page("id-a1", "/pricing", anon="anon-a", days_ago=3),
        track("id-s1", "Demo Requested", user="crm-42", days_ago=2),
    )
    worker.read(worker.topics.scored, lambda r: len({s["lead_id"] for s in r}) >= 2)
    # The laptop identifies as that user: one person.
    worker.send(
        identify("id-a2", anon="anon-a", user="crm-42", email="kim@gears.example", days_ago=1)
    )
    merged = worker.read(worker.topics.merged, lambda r: len(r) >= 1)
    (first,) = merged
    assert first["why"] == "userId"
    assert first["score"] == 70  # pricing 10 + demo request 60, each once

    # A phone identifies with the same email (different case): the same person again.
    worker.send(
        page("id-b1", "/pricing/plans", anon="anon-b", days_ago=1),
        identify("id-b2", anon="anon-b", email=" KIM@gears.example"),
    )
    merged = worker.read(worker.topics.merged, lambda r: len(r) >= 2)
    second = merged[1]
    assert second["why"] == "email"
    assert second["lead_id"] == first["lead_id"]
    assert second["score"] == 80

    # Later server-side events land on the surviving lead.
    worker.send(track("id-s2", "Whitepaper Downloaded", user="crm-42"))
    alerts = worker.read(
        worker.topics.alerts, lambda r: any(a["trigger"] == "whitepaper-download" for a in r)
    )
    (alert,) = [a for a in alerts if a["trigger"] == "whitepaper-download"]
    assert alert["lead_id"] == first["lead_id"]
    assert alert["score"] == 110
    assert set(first["merged_lead_ids"]).isdisjoint({first["lead_id"]})
