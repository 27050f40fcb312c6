"""Leads matched to CRM accounts: the match recorded, firmographics for fit, the CRM's owner
for routing, the account's domain for the roll-up."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from schemas.crm import CrmAccount
from schemas.decisions import HandOff, LeadScored
from schemas.internal import ContactUpdate, PersonEvent
from streams.codec import Rejection, decode_person_event
from streams.lead_model import LeadModel, load_model
from streams.leads import Limits, apply_event
from streams.matching import AccountDirectory

NOW = datetime(2026, 12, 1, tzinfo=UTC)
T0 = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)

DIRECTORY = AccountDirectory.build(
    [
        CrmAccount(
            account_id="A-1",
            name="Acme Robotics Inc.",
            domains=("acme-robotics.com",),
            employees=120,
            industry="Robotics",
            country="US",
            owner_rep="dan",
            updated_at=T0,
        ),
        CrmAccount(
            account_id="A-2",
            name="株式会社カイゼン",
            domains=("kaizen.example.jp",),
            employees=40,
            country="JP",
            updated_at=T0,
        ),
    ]
)


@pytest.fixture(scope="module")
def model() -> LeadModel:
    return load_model("streams/demo/lead_model.yaml")


def ev(minutes: float, **doc: Any) -> PersonEvent:
    doc["timestamp"] = (T0 + timedelta(minutes=minutes)).isoformat().replace("+00:00", "Z")
    doc.setdefault("anonymousId", "anon-1")
    event = decode_person_event(orjson.dumps(doc))
    assert not isinstance(event, Rejection)
    return event


def run(
    events: list[PersonEvent], model: LeadModel, directory: AccountDirectory | None
) -> tuple[Any, list[Any]]:
    lead, out = None, []
    limits = Limits(accounts=directory)
    for event in events:
        applied = apply_event(lead, event, model=model, rotation={}, limits=limits, now=NOW)
        lead, out = applied.lead, out + list(applied.decisions)
    return lead, out


@pytest.mark.parametrize(
    ("email", "account"),
    [
        pytest.param("Pat@Mail.ACME-Robotics.com.", "A-1", id="case-and-trailing-dot"),
        pytest.param("pat@www.acme-robotics.com", "A-1", id="www"),
        pytest.param("acme-robotics.com", None, id="no-at-sign-is-no-domain"),
        pytest.param("pat@", None, id="nothing-after-the-at-sign"),
    ],
)
def test_the_email_s_domain_is_matched_as_the_directory_normalizes_it(
    model: LeadModel, email: str, account: str | None
) -> None:
    lead, _ = run(
        [ev(0, type="identify", messageId="i", traits={"email": email})], model, DIRECTORY
    )
    assert lead.account == account


def test_a_corporate_email_matches_its_account_by_domain(model: LeadModel) -> None:
    lead, out = run(
        [
            ev(
                0,
                type="identify",
                messageId="i",
                traits={"email": "pat@mail.acme-robotics.com", "title": "VP Ops"},
            ),
            ev(1, type="track", messageId="w", event="Demo Requested"),
        ],
        model,
        DIRECTORY,
    )

    assert (lead.account, lead.account_via, lead.account_confidence) == ("A-1", "domain", 1.0)
    # The CRM's firmographics feed fit: size-core 20 + industry-core 10 + region-core 5 + executive 15.
    assert lead.traits["employees"] == 120 and lead.traits["industry"] == "Robotics"
    assert (lead.fit, lead.grade) == (50, "A")
    (handoff,) = [d for d in out if isinstance(d, HandOff)]
    # The CRM says Dan owns Acme: that beats the rendezvous pick for the domain.
    assert (handoff.rep_id, handoff.routing_rule) == ("dan", "account_owner")
    assert (handoff.account_id, handoff.account_match, handoff.account_match_confidence) == (
        "A-1",
        "domain",
        1.0,
    )
    assert handoff.account_domain == "acme-robotics.com"
    # The roll-up counts the lead under the account's own domain.
    assert {c.account for c in out if isinstance(c, ContactUpdate)} == {"acme-robotics.com"}


def test_a_free_mail_lead_matches_by_company_name_with_its_confidence(model: LeadModel) -> None:
    lead, out = run(
        [
            ev(
                0,
                type="identify",
                messageId="i",
                traits={"email": "taro@gmail.com", "company": "(株)カイゼン", "country": "US"},
            )
        ],
        model,
        DIRECTORY,
    )

    assert (lead.account, lead.account_via) == ("A-2", "company_name")
    assert lead.account_confidence == 1.0  # the same name once the legal form is gone
    assert lead.traits["country"] == "US"  # a country the lead gave stays
    assert lead.traits["employees"] == 40
    (scored,) = [d for d in out if isinstance(d, LeadScored)]
    assert ("fit:free-mail", -10) in [(x.rule, x.points) for x in scored.fit_breakdown]


def test_no_directory_or_no_match_leaves_the_lead_unmatched(model: LeadModel) -> None:
    identify = ev(0, type="identify", messageId="i", traits={"email": "pat@acme-robotics.com"})
    for directory in (None, AccountDirectory.build([])):
        lead, _ = run([identify], model, directory)
        assert (lead.account, lead.account_via, lead.account_owner) == (None, None, None)
