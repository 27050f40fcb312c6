"""Topic names and the person partition invariant."""

from __future__ import annotations

import pytest

from streams.topics import ACCOUNTS_TABLE, LEADS_TABLE, Topics, account_partition, person_partition


def test_documented_topic_names() -> None:
    topics = Topics()

    assert topics.all() == (
        "engagement.raw",
        "engagement.dlq",
        "leadstream.person-events",
        "leads.scored",
        "leads.routed",
        "rep.alerts",
        "leads.merged",
        "leads.sla",
        "sfa.feedback",
        "leadstream.account-updates",
        "accounts.scored",
    )
    assert LEADS_TABLE == "leads"
    assert ACCOUNTS_TABLE == "accounts"


def test_prefix_isolates_every_topic() -> None:
    topics = Topics(prefix="t-42.")

    assert topics.raw == "t-42.engagement.raw"
    assert topics.alerts == "t-42.rep.alerts"
    assert all(name.startswith("t-42.") for name in topics.all())
    assert {name.removeprefix("t-42.") for name in topics.all()} == set(Topics().all())
    assert len(set(topics.all())) == 11


@pytest.mark.parametrize(
    ("key", "partitions", "expected"),
    [
        ("anon-jane", 12, 9),
        ("crm-1001", 12, 11),
        ("anon-kenji", 3, 2),
        ("anon-jane", 1, 0),
        ("", 12, 0),
    ],
)
def test_person_partition_never_changes(key: str, partitions: int, expected: int) -> None:
    # Pinned: a different hash would scatter every lead's existing state.
    assert person_partition(key, partitions) == expected


@pytest.mark.parametrize("partitions", [1, 2, 7, 12, 64])
def test_person_partition_is_in_range_and_spreads_keys(partitions: int) -> None:
    used = {person_partition(f"anon-{n}", partitions) for n in range(2000)}

    assert used == set(range(partitions))


def test_person_partition_hashes_utf8_bytes() -> None:
    assert person_partition("ユーザー-1", 12) == 5
    assert person_partition("josé", 7) == 0


@pytest.mark.parametrize(
    ("account", "partitions"), [("acme.example", 8), ("gears.example", 4), ("x.co.jp", 1)]
)
def test_account_partition_is_the_crc32_of_the_domain(account: str, partitions: int) -> None:
    # Pinned like person_partition: a different hash would scatter account state.
    import zlib

    assert account_partition(account, partitions) == zlib.crc32(account.encode()) % partitions
