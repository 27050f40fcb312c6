"""The crm.accounts record and feed: upserts, tombstones, and bad records that never crash."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime

import orjson
import pytest
from prometheus_client import CollectorRegistry

from schemas.crm import CrmAccount
from streams.account_feed import AccountFeed, AccountsHolder, account_change
from streams.codec import Rejection, decode_crm_account, encode
from streams.kafka_connection import KafkaConnection
from streams.matching import free_mail_domains
from streams.metrics import Metrics

AT = datetime(2026, 11, 1, 9, 30, tzinfo=UTC)
FREE = free_mail_domains()


def value(**fields: object) -> bytes:
    doc: dict[str, object] = {
        "account_id": "acc-1",
        "name": "Acme Robotics, Inc.",
        "domains": ["acme-robotics.com"],
        "updated_at": AT.isoformat(),
        **fields,
    }
    return orjson.dumps(doc)


def test_a_crm_account_decodes_normalized() -> None:
    decoded = decode_crm_account(
        value(
            domains=["https://www.Acme-Robotics.com/", "ACME.co.jp", "acme-robotics.com"],
            country=" jp ",
            employees=120,
            industry="",
            owner_rep="carla",
            updated_at="2026-11-01T18:30:00+09:00",
        )
    )

    assert isinstance(decoded, CrmAccount)
    assert decoded.domains == ("acme-robotics.com", "acme.co.jp")
    assert decoded.country == "JP" and decoded.industry is None
    assert decoded.updated_at == AT
    assert decode_crm_account(encode(decoded)) == decoded  # round trip through the one codec


@pytest.mark.parametrize(
    ("raw", "reason", "words"),
    [
        (None, "empty_value", "no value"),
        (b"{not json", "invalid_json", "not JSON"),
        (b"[]", "not_object", "not an object"),
        (value(name=""), "invalid_value", "name"),
        (value(domains=["not a domain"]), "invalid_value", "not a domain name"),
        (value(country="Japan"), "invalid_value", "country"),
        (value(employees=-3), "invalid_value", "employees"),
        (value(colour="red"), "invalid_value", "colour"),  # extra fields are refused
        (orjson.dumps({"account_id": "acc-1", "name": "x"}), "missing_field", "updated_at"),
    ],
)
def test_bad_crm_records_are_rejected_with_a_reason(
    raw: bytes | None, reason: str, words: str
) -> None:
    decoded = decode_crm_account(raw)

    assert isinstance(decoded, Rejection)
    assert decoded.reason == reason
    assert words in decoded.message


def test_a_record_means_an_upsert_or_a_tombstone_keyed_by_account_id() -> None:
    upsert = account_change(b"acc-1", value())
    assert not isinstance(upsert, Rejection)
    assert upsert[0] == "acc-1" and upsert[1] is not None and upsert[1].name.startswith("Acme")

    assert account_change(b"acc-1", None) == ("acc-1", None)

    mismatch = account_change(b"acc-2", value())
    assert isinstance(mismatch, Rejection) and "differs from the record key" in mismatch.message
    keyless = account_change(None, value())
    assert isinstance(keyless, Rejection) and keyless.reason == "missing_field"


@dataclass
class FakeRecord:
    key: bytes | None
    value: bytes | None
    offset: int


def feed(holder: AccountsHolder, registry: CollectorRegistry) -> AccountFeed:
    return AccountFeed(
        topic="crm.accounts",
        kafka=KafkaConnection(bootstrap="unused:9092"),
        holder=holder,
        metrics=Metrics.create(registry),
        fetch_wait_ms=100,
        catch_up_timeout_s=1.0,
    )


def test_the_feed_applies_upserts_and_tombstones_and_counts_bad_records(
    caplog: pytest.LogCaptureFixture,
) -> None:
    registry = CollectorRegistry()
    holder = AccountsHolder(min_confidence=0.9)
    accounts = feed(holder, registry)
    records = [
        FakeRecord(b"acc-1", value(), 0),
        FakeRecord(b"acc-2", value(account_id="acc-2", name="株式会社メルカリ", domains=[]), 1),
        FakeRecord(b"acc-3", b"{oops", 2),
        FakeRecord(b"acc-1", None, 3),  # deleted
        FakeRecord(b"acc-4", value(account_id="acc-4", name="Siemens AG", domains=[]), 4),
    ]

    with caplog.at_level(logging.ERROR, logger="streams.account_feed"):
        accounts.read(records)
        before_flush = holder.current
        accounts.flush()

    directory = holder.current
    assert len(before_flush) == 0  # nothing half-applied: one swap at flush
    assert sorted(a.account_id for a in directory.accounts()) == ["acc-2", "acc-4"]
    found = directory.match(email_domain=None, company="メルカリ", free_mail=FREE)
    assert found is not None and found.account.account_id == "acc-2"
    assert directory.match(email_domain="acme-robotics.com", company=None, free_mail=FREE) is None
    assert registry.get_sample_value("leadstream_accounts_loaded") == 2
    assert registry.get_sample_value("leadstream_account_records_rejected_total") == 1
    assert "record crm.accounts@2 rejected: invalid_json" in caplog.text


def test_the_holder_uses_the_configured_threshold() -> None:
    holder = AccountsHolder(min_confidence=0.5)
    holder.apply({"acc-8": CrmAccount(account_id="acc-8", name="Northwind Traders", updated_at=AT)})

    found = holder.current.match(email_domain=None, company="Northwind", free_mail=FREE)
    assert found is not None and found.method == "company_name"
    assert holder.current.min_confidence == 0.5
