"""Account roll-up: an account scores its contacts' primary scores; the buying-group alert."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta

import pytest

from schemas.decisions import AccountScored, RepAlert
from schemas.internal import ContactUpdate, PersonEvent
from streams.accounts import AccountDecision, apply_contact, apply_contacts
from streams.lead_model import DEFAULT_MODEL_PATH, LeadModel, parse_model
from streams.leads import Limits, apply_batch, lead_id_for
from streams.routing import choose_rep
from streams.state import AccountState

T0 = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
T0_MS = int(T0.timestamp() * 1000)
DAY_MS = 86_400_000
NOW = datetime(2027, 2, 1, tzinfo=UTC)
DEMO_TEXT = DEFAULT_MODEL_PATH.read_text(encoding="utf-8")


def cu(
    lead: str,
    score: int,
    day: float = 0,
    *,
    mid: str | None = None,
    rep: str | None = "carla",
    account: str = "acme.com",
) -> ContactUpdate:
    return ContactUpdate(
        account=account,
        lead_id=lead,
        score=score,
        ts_ms=T0_MS + int(day * DAY_MS),
        rep=rep,
        mid=mid or f"{lead}@{day}:{score}",
        model="2026.11-2",
    )


def roll(
    updates: Iterable[ContactUpdate], model: LeadModel, account: AccountState | None = None
) -> tuple[AccountState | None, list[list[AccountDecision]]]:
    """Apply updates one by one; the final state and each update's decisions."""
    steps = []
    for update in updates:
        account, decisions = apply_contact(account, update, model=model, now=NOW)
        steps.append(decisions)
    return account, steps


def alerts(steps: list[list[AccountDecision]]) -> list[tuple[int, RepAlert]]:
    return [(n, d) for n, step in enumerate(steps) for d in step if isinstance(d, RepAlert)]


def variant(old: str, new: str) -> LeadModel:
    assert old in DEMO_TEXT
    return parse_model(DEMO_TEXT.replace(old, new))


def test_an_account_scores_the_sum_of_its_contacts(model: LeadModel) -> None:
    account, steps = roll([cu("a", 10), cu("b", 25, 1), cu("c", 5, 2)], model)

    assert account is not None
    assert (account.score, account.contacts) == (
        40,
        {"a": (10, T0_MS), "b": (25, T0_MS + DAY_MS), "c": (5, T0_MS + 2 * DAY_MS)},
    )
    assert all(len(step) == 1 for step in steps)
    first = steps[0][0]
    assert isinstance(first, AccountScored)
    assert first.model_dump() == {
        "schema_version": 2,
        "account": "acme.com",
        "score": 10,
        "previous_score": 0,
        "contacts": 1,
        "engaged_contacts": 0,
        "buying_group": False,
        "rep_id": "carla",
        "model_version": "2026.11-2",
        "occurred_at": T0,
        "created_at": NOW,
    }
    scored = [step[0] for step in steps]
    assert [(s.previous_score, s.score, s.contacts, s.engaged_contacts) for s in scored] == [  # type: ignore[union-attr]
        (0, 10, 1, 0),
        (10, 35, 2, 1),
        (35, 40, 3, 1),
    ]


def test_a_contacts_new_score_replaces_its_old_one(model: LeadModel) -> None:
    account, steps = roll([cu("a", 10), cu("b", 25), cu("a", 30, 1)], model)

    assert account is not None
    assert account.score == 55
    assert [(s.previous_score, s.score) for s in (step[0] for step in steps)] == [  # type: ignore[union-attr]
        (0, 10),
        (10, 35),
        (35, 55),
    ]


def test_a_redelivered_update_changes_nothing(model: LeadModel) -> None:
    update = cu("a", 30)
    account, _ = roll([update, cu("b", 5, 1)], model)

    again, decisions = apply_contact(account, update, model=model, now=NOW)

    assert again is account
    assert decisions == []


def test_a_redelivered_update_does_not_bring_back_a_contact_that_left(model: LeadModel) -> None:
    update = cu("a", 10)
    account, _ = roll([update, cu("b", 25), cu("a", 0, 1)], model)

    again, decisions = apply_contact(account, update, model=model, now=NOW)

    assert (again.score, set(again.contacts), decisions) == (25, {"b"}, [])


def test_an_older_update_for_a_contact_is_ignored(model: LeadModel) -> None:
    account, _ = roll([cu("a", 30, 2)], model)

    older, decisions = apply_contact(account, cu("a", 10, 1), model=model, now=NOW)

    assert older is account
    assert decisions == []
    same_time, _ = apply_contact(account, cu("a", 12, 2), model=model, now=NOW)
    assert same_time.score == 12


@pytest.mark.parametrize("score", [0, -30])
def test_a_contact_without_points_leaves_the_account(model: LeadModel, score: int) -> None:
    account, steps = roll([cu("a", 10), cu("b", 25), cu("a", score, 1)], model)

    assert account is not None
    assert (account.score, set(account.contacts)) == (25, {"b"})
    last = steps[-1][0]
    assert isinstance(last, AccountScored)
    assert (last.previous_score, last.score, last.contacts) == (35, 25, 1)


def test_a_contact_arriving_without_points_changes_nothing_visible(model: LeadModel) -> None:
    account, steps = roll([cu("a", 10), cu("b", 0, 1)], model)

    assert account is not None
    assert (account.score, set(account.contacts)) == (10, {"a"})
    assert steps[-1] == []


# --- the buying group ------------------------------------------------------------------------


def test_three_engaged_contacts_alert_the_account_owner(model: LeadModel) -> None:
    account, steps = roll([cu("a", 20), cu("b", 30, 1), cu("c", 25, 2)], model)

    ((step, alert),) = alerts(steps)
    assert step == 2
    assert alert.model_dump(exclude={"alert_id"}) == {
        "schema_version": 2,
        "rep_id": "carla",
        "rep_name": "Carla Gomez",
        "rep_email": "carla@sales.example.com",
        "lead_id": "c",
        "email": None,
        "company": "acme.com",
        "trigger": "buying-group",
        "message": "acme.com has a buying group: 3 engaged contacts",
        "score": 75,
        "model_version": "2026.11-2",
        "event_at": T0 + timedelta(days=2),
        "created_at": NOW,
    }
    scored = steps[2][0]
    assert isinstance(scored, AccountScored)
    assert (scored.engaged_contacts, scored.buying_group) == (3, True)
    assert account is not None and account.fired_ms == T0_MS + 2 * DAY_MS


@pytest.mark.parametrize(
    "updates",
    [
        pytest.param([cu("a", 20), cu("b", 30, 1), cu("c", 19, 2)], id="one-under-min-score"),
        pytest.param([cu("a", 20), cu("b", 30, 20), cu("c", 25, 30.01)], id="one-outside-window"),
        pytest.param(
            [cu("a", 20), cu("a", 25, 1), cu("a", 30, 2), cu("b", 30, 3)], id="same-contact-again"
        ),
    ],
)
def test_no_alert_under_the_buying_group_size(
    model: LeadModel, updates: list[ContactUpdate]
) -> None:
    _, steps = roll(updates, model)

    assert alerts(steps) == []
    assert max(d.engaged_contacts for step in steps for d in step) == 2  # type: ignore[union-attr]


def test_the_window_is_inclusive(model: LeadModel) -> None:
    _, steps = roll([cu("a", 20), cu("b", 30, 20), cu("c", 25, 30)], model)

    assert [n for n, _ in alerts(steps)] == [2]


def test_the_buying_group_alerts_once_per_cooldown(model: LeadModel) -> None:
    updates = [
        cu("a", 20, 0),
        cu("b", 30, 1),
        cu("c", 25, 2),  # alert
        cu("d", 40, 10),  # a fourth contact: still the same group, in cooldown
        cu("c", 26, 31),
        cu("d", 41, 31.5),  # only c and d are recent now
        cu("e", 22, 32),  # c, d, e: a group again, 30 days after the first alert
    ]

    _, steps = roll(updates, model)

    assert [(n, a.event_at) for n, a in alerts(steps)] == [
        (2, T0 + timedelta(days=2)),
        (6, T0 + timedelta(days=32)),
    ]
    in_cooldown = steps[3][0]
    assert isinstance(in_cooldown, AccountScored)
    assert (in_cooldown.engaged_contacts, in_cooldown.buying_group) == (4, True)
    assert len({a.alert_id for _, a in alerts(steps)}) == 2


@pytest.mark.parametrize(
    ("reps", "owner"),
    [
        pytest.param([None, None, None], "queue", id="no-owner-known"),
        pytest.param(["gone", "gone", "gone"], "queue", id="owner-left-the-model"),
        pytest.param(["dan", None, None], "dan", id="owner-remembered"),
        pytest.param(["dan", "aiko", None], "aiko", id="latest-owner"),
    ],
)
def test_the_alert_goes_to_the_accounts_owner_or_the_fallback(
    model: LeadModel, reps: list[str | None], owner: str
) -> None:
    updates = [
        cu(lead, 20, n, rep=rep) for n, (lead, rep) in enumerate(zip("abc", reps, strict=True))
    ]

    _, steps = roll(updates, model)

    ((_, alert),) = alerts(steps)
    assert alert.rep_id == owner


def test_no_buying_group_in_the_model_means_no_alert() -> None:
    model = variant(
        'buying_group: {min_contacts: 3, min_score: 20, within_days: 30, message: "has a buying group: {contacts} engaged contacts"}',
        "buying_group: null",
    )

    account, steps = roll([cu("a", 20), cu("b", 30), cu("c", 25), cu("d", 25)], model)

    assert alerts(steps) == []
    assert account is not None and account.score == 100
    assert {d.engaged_contacts for step in steps for d in step} == {0}  # type: ignore[union-attr]


def test_a_smaller_buying_group_from_the_model() -> None:
    model = variant("min_contacts: 3, min_score: 20", "min_contacts: 2, min_score: 50")

    _, steps = roll([cu("a", 49), cu("b", 50), cu("c", 60)], model)

    ((n, alert),) = alerts(steps)
    assert (n, alert.message) == (2, "acme.com has a buying group: 2 engaged contacts")


def test_an_account_keeps_its_strongest_contacts() -> None:
    model = variant("accounts:                     #", "accounts:\n  max_contacts: 2\n  #")

    account, _ = roll([cu("a", 10), cu("b", 30), cu("c", 20)], model)

    assert account is not None
    assert (set(account.contacts), account.score) == ({"b", "c"}, 50)


# --- batches and the whole path ----------------------------------------------------------


def test_apply_contacts_writes_each_changed_account_once(model: LeadModel) -> None:
    stored, _ = roll([cu("x", 10, account="globex.com")], model)
    assert stored is not None
    updates = [
        cu("a", 10),
        cu("x", 10, account="globex.com"),  # a re-delivery: nothing changes
        cu("b", 20, 1),
        cu("a", 10),  # a re-delivery within the batch
        cu("y", 5, 1, account="initech.com"),
    ]

    batch = apply_contacts({"globex.com": stored}, updates, model=model, now=NOW)

    assert {k: v.score for k, v in batch.accounts.items()} == {"acme.com": 30, "initech.com": 5}
    assert [(d.account, d.score) for d in batch.decisions if isinstance(d, AccountScored)] == [
        ("acme.com", 10),
        ("acme.com", 30),
        ("initech.com", 5),
    ]


def test_engaged_contacts_of_one_company_alert_its_owner_end_to_end(
    segment: Callable[..., PersonEvent], model: LeadModel
) -> None:
    events = []
    for n, person in enumerate(("ann", "bob", "cid")):
        traits = {"email": f"{person}@acme.com", "country": "US"}
        events += [
            segment("identify", f"{person}-1", day=n, anonymous_id=person, traits=traits),
            segment("track", f"{person}-2", day=n, anonymous_id=person, event="Form Submitted"),
        ]
    leads = apply_batch({}, events, model=model, rotation={}, limits=Limits(), now=NOW)
    updates = [d for d in leads.decisions if isinstance(d, ContactUpdate)]
    assert [(u.account, u.lead_id, u.score) for u in updates] == [
        ("acme.com", lead_id_for(person), score)
        for person in ("ann", "bob", "cid")
        for score in (0, 20)
    ]

    accounts = apply_contacts({}, updates, model=model, now=NOW)

    owner, _ = choose_rep({"email": "x@acme.com", "country": "US"}, model, {})
    assert owner.rep.id in {"carla", "dan"}
    (alert,) = [d for d in accounts.decisions if isinstance(d, RepAlert)]
    assert (alert.rep_id, alert.lead_id, alert.message) == (
        owner.rep.id,
        lead_id_for("cid"),
        "acme.com has a buying group: 3 engaged contacts",
    )
    assert accounts.accounts["acme.com"].score == 60


def test_a_model_without_accounts_sends_no_contact_updates(
    segment: Callable[..., PersonEvent],
) -> None:
    model = variant("accounts:                     #", "accounts:\n  enabled: false\n  #")
    events = [
        segment("identify", "i", traits={"email": "ann@acme.com"}),
        segment("track", "f", event="Form Submitted"),
    ]

    result = apply_batch({}, events, model=model, rotation={}, limits=Limits(), now=NOW)

    assert [d for d in result.decisions if isinstance(d, ContactUpdate)] == []
    assert result.leads["anon-1"].score == 20


def test_a_contact_that_changes_company_leaves_the_old_account(
    segment: Callable[..., PersonEvent], model: LeadModel
) -> None:
    events = [
        segment("identify", "i-1", traits={"email": "ann@acme.com"}),
        segment("track", "f", event="Form Submitted"),
        segment("identify", "i-2", day=1, traits={"email": "ann@globex.com"}),
    ]
    leads = apply_batch({}, events, model=model, rotation={}, limits=Limits(), now=NOW)
    updates = [d for d in leads.decisions if isinstance(d, ContactUpdate)]

    accounts = apply_contacts({}, updates, model=model, now=NOW)

    assert accounts.accounts["globex.com"].score == 20
    assert accounts.accounts["acme.com"].score == 0
