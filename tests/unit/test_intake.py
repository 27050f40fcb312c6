"""Intake: who an event belongs to, page paths, trait normalization, partition grouping."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from schemas.erasure import ErasureRequest
from schemas.events import EngagementEvent
from schemas.internal import PersonEvent
from streams.codec import Rejection, decode_event, encode
from streams.erasure import email_sha256
from streams.intake import (
    RawRecord,
    group_by_partition,
    intake_batch,
    normalize,
    normalize_email,
    person_key,
)
from streams.topics import person_partition


def decode(kind: str, **fields: Any) -> EngagementEvent:
    doc = {"type": kind, "messageId": "m-1", "timestamp": "2026-11-20T09:00:00Z", **fields}
    if "anonymousId" not in doc and "userId" not in doc:
        doc["anonymousId"] = "anon-1"
    event = decode_event(orjson.dumps(doc))
    assert not isinstance(event, Rejection), event
    return event


def identify_traits(traits: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return dict(normalize(decode("identify", traits=traits, **fields)).traits)


@pytest.mark.parametrize(
    ("ids", "expected"),
    [
        ({"anonymousId": "anon-1", "userId": "crm-1"}, "anon-1"),
        ({"anonymousId": "anon-1"}, "anon-1"),
        ({"userId": "crm-1"}, "crm-1"),
        ({"anonymousId": None, "userId": "crm-1"}, "crm-1"),
    ],
)
def test_person_key_prefers_anonymous_id(ids: dict[str, Any], expected: str) -> None:
    event = decode("track", event="Demo Requested", **ids)

    assert person_key(event) == expected
    assert normalize(event).pk == expected


def test_normalize_keeps_ids_kind_name_and_event_time() -> None:
    event = decode(
        "track",
        messageId="m-7",
        anonymousId="anon-1",
        userId="crm-1",
        event="Demo Requested",
        timestamp="2026-11-20T09:00:00.123Z",
    )

    assert normalize(event) == PersonEvent(
        mid="m-7",
        pk="anon-1",
        kind="track",
        name="Demo Requested",
        ts_ms=1_795_165_200_123,
        aid="anon-1",
        uid="crm-1",
        traits={},
    )


@pytest.mark.parametrize(
    ("fields", "path"),
    [
        pytest.param({"properties": {"path": "/pricing"}}, "/pricing", id="path"),
        pytest.param(
            {"properties": {"path": "/pricing", "url": "https://x.io/other"}},
            "/pricing",
            id="path-beats-url",
        ),
        pytest.param(
            {"properties": {"url": "https://www.example.com/pricing/enterprise?utm=1#top"}},
            "/pricing/enterprise",
            id="url",
        ),
        pytest.param(
            {"properties": {"path": "", "url": "https://x.io/customers/acme"}},
            "/customers/acme",
            id="empty-path-uses-url",
        ),
        pytest.param({"properties": {"url": "https://www.example.com"}}, "/", id="url-no-path"),
        pytest.param({"name": "Pricing", "properties": {}}, "Pricing", id="name-only"),
        pytest.param({}, "/", id="nothing"),
    ],
)
def test_page_path_from_properties_path_else_url(fields: dict[str, Any], path: str) -> None:
    assert normalize(decode("page", **fields)).name == path


def test_long_names_are_truncated() -> None:
    event = decode("page", properties={"path": "/" + "a" * 400})

    assert normalize(event).name == "/" + "a" * 255


@pytest.mark.parametrize(
    ("traits", "expected"),
    [
        pytest.param(
            {"email": "  Jane.Doe@Acme-Robotics.COM "},
            {"email": "jane.doe@acme-robotics.com"},
            id="email",
        ),
        pytest.param({"email": "not-an-email"}, {}, id="email-no-at"),
        pytest.param({"email": "@acme.com"}, {}, id="email-no-local"),
        pytest.param({"email": "jane@"}, {}, id="email-no-domain"),
        pytest.param(
            {"company": {"name": "Acme Robotics", "id": 9}},
            {"company": "Acme Robotics"},
            id="company-object",
        ),
        pytest.param({"company": "  Acme  "}, {"company": "Acme"}, id="company-trimmed"),
        pytest.param({"employees": "1,200"}, {"employees": 1200}, id="employees-comma"),
        pytest.param({"employees": " 300 "}, {"employees": 300}, id="employees-spaces"),
        pytest.param({"employees": 250}, {"employees": 250}, id="employees-int"),
        pytest.param({"employees": 250.9}, {"employees": 250}, id="employees-float"),
        pytest.param({"employees": "about 50"}, {}, id="employees-words"),
        pytest.param({"employees": True}, {}, id="employees-bool"),
        pytest.param(
            {"employees": "999,999,999,999"}, {"employees": 999_999_999_999}, id="employees-largest"
        ),
        pytest.param({"employees": 10**12}, {}, id="employees-not-a-head-count"),
        pytest.param({"employees": "1180591620717411303424"}, {}, id="employees-past-64-bits"),
        pytest.param({"employees": "9" * 5000}, {}, id="employees-past-int-conversion-limit"),
        pytest.param({"country": " de "}, {"country": "DE"}, id="country-upper"),
        pytest.param(
            {"firstName": "Jane", "lastName": "Doe", "purchaseTimeline": "this quarter"},
            {"first_name": "Jane", "last_name": "Doe", "purchase_timeline": "this quarter"},
            id="camel-case-names",
        ),
        pytest.param({"title": "   "}, {}, id="blank-dropped"),
        pytest.param({"title": "x" * 300}, {"title": "x" * 256}, id="long-truncated"),
        pytest.param({"title": ["a"], "budget": {"k": 1}}, {}, id="non-scalars-dropped"),
        pytest.param({"favourite_colour": "blue", "plan": "pro"}, {}, id="unknown-dropped"),
    ],
)
def test_identify_traits_are_normalized(traits: dict[str, Any], expected: dict[str, Any]) -> None:
    assert identify_traits(traits) == expected


def test_group_traits_are_normalized() -> None:
    event = decode(
        "group", groupId="acct-1", traits={"company": {"name": "Acme"}, "employees": "1,200"}
    )

    assert normalize(event).traits == {"company": "Acme", "employees": 1200}


def test_context_traits_reach_track_and_page_events() -> None:
    event = decode(
        "track",
        event="Webinar Attended",
        context={"traits": {"email": "Max@Fabrik.DE", "employees": "210", "country": "de"}},
    )

    assert normalize(event).traits == {"email": "max@fabrik.de", "employees": 210, "country": "DE"}


def test_identify_traits_win_over_context_traits() -> None:
    traits = identify_traits(
        {"title": "VP Sales"},
        context={"traits": {"title": "Intern", "company": "Acme"}},
    )

    assert traits == {"title": "VP Sales", "company": "Acme"}


@pytest.mark.parametrize(
    ("traits", "location", "country"),
    [
        pytest.param({}, {"country": "jp"}, "JP", id="location-used"),
        pytest.param({"country": "us"}, {"country": "CA"}, "US", id="trait-wins"),
        pytest.param({}, {"city": "Tokyo"}, None, id="no-country"),
        pytest.param({}, {"country": 81}, None, id="non-text-ignored"),
    ],
)
def test_country_from_context_location(
    traits: dict[str, Any], location: dict[str, Any], country: str | None
) -> None:
    result = identify_traits(traits, context={"location": location})

    assert result.get("country") == country


def test_location_country_applies_to_page_events() -> None:
    event = decode("page", properties={"path": "/"}, context={"location": {"country": " gb"}})

    assert normalize(event).traits == {"country": "GB"}


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (" A@B.COM ", "a@b.com"),
        ("a@b", "a@b"),
        ("ab.com", None),
        ("@b.com", None),
        ("a@", None),
        ("", None),
    ],
)
def test_normalize_email(value: str, expected: str | None) -> None:
    assert normalize_email(value) == expected


def pe(mid: str, pk: str) -> PersonEvent:
    return PersonEvent(mid=mid, pk=pk, kind="page", name="/", ts_ms=0)


@pytest.mark.parametrize("partitions", [1, 3, 12])
def test_group_by_partition_keeps_order_within_each_partition(partitions: int) -> None:
    people = [f"anon-{i}" for i in range(20)]
    events = [pe(f"m-{n}", people[n % len(people)]) for n in range(100)]

    groups = group_by_partition(events, partitions)

    assert sorted(e.mid for g in groups.values() for e in g) == sorted(e.mid for e in events)
    for partition, group in groups.items():
        assert 0 <= partition < partitions
        assert all(person_partition(e.pk, partitions) == partition for e in group)
        # Arrival order within a partition is the input order.
        positions = [events.index(e) for e in group]
        assert positions == sorted(positions)


def test_group_by_partition_puts_one_person_in_one_partition() -> None:
    events = [pe("m-1", "anon-a"), pe("m-2", "anon-b"), pe("m-3", "anon-a")]

    groups = group_by_partition(events, 12)

    holding_a = [p for p, g in groups.items() if any(e.pk == "anon-a" for e in g)]
    assert holding_a == [person_partition("anon-a", 12)]
    assert [e.mid for e in groups[holding_a[0]] if e.pk == "anon-a"] == ["m-1", "m-3"]


def test_group_by_partition_of_nothing_is_empty() -> None:
    assert group_by_partition([], 12) == {}


def test_an_erasure_request_goes_to_the_partition_of_the_identifier_it_names() -> None:
    request = ErasureRequest(
        request_id="r1",
        email="Jane.Doe@Acme.example",
        reason="ticket 7",
        requested_at=datetime(2026, 12, 1, tzinfo=UTC),
    )
    bad = b'{"request_id": "r2", "email": "jane@acme.example", "requested_at": "yesterday"}'
    records = [
        RawRecord(encode(request), b"r1", "leadstream.erasure", 0, 5),
        RawRecord(bad, b"r2", "leadstream.erasure", 0, 6),
    ]

    result = intake_batch(
        records,
        partitions=8,
        now=datetime(2026, 12, 1, tzinfo=UTC),
        erasure_topic="leadstream.erasure",
    )

    key = "email:jane.doe@acme.example"
    ((partition, (forget,)),) = result.forgets.items()
    assert partition == person_partition(key, 8)
    assert (forget.to, forget.request_id, forget.reason) == (key, "r1", "ticket 7")
    assert forget.identifier_sha256 == email_sha256("jane.doe@acme.example")
    # A bad request is dead-lettered with the reason, but never with the email it names.
    ((_, dead),) = result.dead
    assert (dead.reason, dead.source_topic, dead.offset) == (
        "invalid_value",
        "leadstream.erasure",
        6,
    )
    assert "jane" not in dead.model_dump_json()
