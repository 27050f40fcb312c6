"""Erasure in the core: a forget request deletes the lead, every key pointing at it, and
says so on `leads.forgotten`; a later event starts a fresh lead."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

import pytest

from schemas.decisions import LeadForgotten, LeadMerged
from schemas.erasure import ErasureRequest
from schemas.internal import ContactUpdate, Forget, LeadState, PersonEventBatch, Unlink
from streams.erasure import email_sha256, forget_of
from streams.identity import LocalNetwork, apply_person_batch, on_forget, on_unlink
from streams.lead_model import LeadModel, load_model
from streams.leads import Limits
from tests.unit.test_identity import NOW, identify, network, page, track

EMAIL = "Jane.Doe@Acme-Robotics.example"
ASKED = datetime(2026, 12, 2, tzinfo=UTC)


@pytest.fixture(scope="module")
def model() -> LeadModel:
    return load_model("streams/demo/lead_model.yaml")


def request(email: str | None = EMAIL, user_id: str | None = None) -> ErasureRequest:
    return ErasureRequest(
        request_id="req-1", email=email, user_id=user_id, reason="ticket 42", requested_at=ASKED
    )


def jane(net: LocalNetwork) -> None:
    """Two browsers and a server-side userId; the email on one, the userId on both: one
    person, one lead after a merge, with five identifier entries pointing at it."""
    net.send([page("a1", "/pricing", 0, anonymousId="A")])
    net.send([page("b1", "/pricing", 5, anonymousId="B")])
    net.send([track("s1", "Webinar Attended", 6, userId="U")])
    net.send(
        [identify("a2", 10, {"email": EMAIL, "firstName": "Jane"}, anonymousId="A", userId="U")]
    )
    net.send([identify("b2", 20, {}, anonymousId="B", userId="U")])


def test_forgetting_by_email_deletes_the_lead_and_every_key_that_points_at_it(
    model: LeadModel,
) -> None:
    net = network(model)
    jane(net)
    lead = net.lead_of("email:jane.doe@acme-robotics.example")
    assert lead is not None and lead.pk == "A" and len(lead.merged) == 2
    assert set(net.entries) == {"A", "B", "U", "email:jane.doe@acme-robotics.example"}

    out = net.send_forget(forget_of(request()))

    assert net.entries == {}
    (told,) = [d for d in out if isinstance(d, LeadForgotten)]
    assert told.found is True
    assert (told.lead_id, set(told.merged_lead_ids)) == (lead.lead_id, set(lead.merged))
    assert told.identifier == "email"
    assert told.identifier_sha256 == hashlib.sha256(EMAIL.lower().encode()).hexdigest()
    assert (told.reason, told.requested_at, told.identifiers_deleted) == ("ticket 42", ASKED, 3)
    assert EMAIL.lower() not in told.model_dump_json().lower()


def test_a_later_event_for_the_same_person_starts_a_fresh_lead(model: LeadModel) -> None:
    net = network(model)
    jane(net)
    assert net.lead_of("A").score > 0  # type: ignore[union-attr]
    net.send_forget(forget_of(request()))

    net.send([identify("c1", 60, {"email": EMAIL}, anonymousId="C")])
    net.send([track("c2", "Demo Requested", 61, anonymousId="C")])

    fresh = net.lead_of("email:jane.doe@acme-robotics.example")
    assert fresh is not None and fresh.pk == "C"
    assert (fresh.score, fresh.events, fresh.merged) == (60, 2, ())  # the demo request only
    assert not [
        d for d in net.send([page("a9", "/x", 62, anonymousId="A")]) if isinstance(d, LeadMerged)
    ]
    assert net.lead_of("A").events == 1  # type: ignore[union-attr]


def test_forgetting_by_user_id_finds_the_same_lead(model: LeadModel) -> None:
    net = network(model)
    jane(net)
    out = net.send_forget(forget_of(request(email=None, user_id="U")))
    (told,) = [d for d in out if isinstance(d, LeadForgotten)]
    assert told.found and told.identifier == "userId"
    assert told.identifier_sha256 == hashlib.sha256(b"U").hexdigest()
    assert net.entries == {}


def test_an_unknown_email_is_answered_not_found(model: LeadModel) -> None:
    net = network(model)
    jane(net)
    before = dict(net.entries)

    out = net.send_forget(forget_of(request(email="nobody@else.example")))

    (told,) = [d for d in out if isinstance(d, LeadForgotten)]
    assert (told.found, told.lead_id, told.merged_lead_ids) == (False, None, ())
    assert told.identifier_sha256 == email_sha256("nobody@else.example")
    assert net.entries == before


def test_the_email_is_found_by_its_identity_form() -> None:
    forget = forget_of(request(email=" Jane.Doe+news@GoogleMail.com"))
    assert forget.to == "email:janedoe@gmail.com"
    assert forget.identifier_sha256 == email_sha256("jane.doe+news@googlemail.com")


def test_an_erased_lead_leaves_its_account(model: LeadModel) -> None:
    net = network(model)
    net.send([identify("a1", 0, {"email": "pat@acme-robotics.example"}, anonymousId="A")])
    net.send([track("a2", "Demo Requested", 1, anonymousId="A")])
    lead = net.lead_of("A")
    assert lead is not None and lead.score > 0

    out = net.send_forget(forget_of(request(email="pat@acme-robotics.example")))

    (leave,) = [d for d in out if isinstance(d, ContactUpdate)]
    assert (leave.lead_id, leave.score, leave.account) == (lead.lead_id, 0, "acme-robotics.example")


def test_an_erasure_and_an_event_in_one_batch_leave_a_fresh_lead(model: LeadModel) -> None:
    net = network(model)
    net.send(
        [page("a1", "/pricing", 0, anonymousId="A"), page("a2", "/pricing", 1, anonymousId="A")]
    )
    forget = Forget(
        to="A", request_id="r", identifier="userId", identifier_sha256="x", requested_ms=0
    )

    result = apply_person_batch(
        net.entries,
        PersonEventBatch(events=(page("a3", "/pricing", 2, anonymousId="A"),), forgets=(forget,)),
        model=model,
        rotation={},
        limits=Limits(),
        now=NOW,
    )

    assert result.deleted == set()
    assert (result.leads["A"].score, result.leads["A"].events) == (10, 1)


def test_unlink_deletes_only_aliases_of_the_erased_lead() -> None:
    unlink = Unlink(key="email:x", owners=("A", "B"))
    alias = LeadState(lead_id="ld_1", pk="email:x", alias_of="B")
    elsewhere = LeadState(lead_id="ld_1", pk="email:x", alias_of="C")
    own = LeadState(lead_id="ld_2", pk="email:x")
    assert on_unlink(alias, unlink) == (True, [])
    assert on_unlink(elsewhere, unlink) == (False, [])
    assert on_unlink(own, unlink) == (False, [])
    assert on_unlink(None, unlink) == (False, [])


def test_an_alias_forwards_the_request_to_its_lead_and_goes(model: LeadModel) -> None:
    forget = forget_of(request())
    alias = LeadState(lead_id="ld_1", pk=forget.to, alias_of="A")
    erase, sent = on_forget(alias, forget, model=model, now=NOW)
    assert erase is True
    assert sent == [forget.model_copy(update={"to": "A"})]
