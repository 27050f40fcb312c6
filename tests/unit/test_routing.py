"""Routing without a `routing:` section: account owner by company domain, territory
round-robin, the fallback queue; through `choose_rep` and through `route`."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from schemas.internal import TraitValue
from streams.lead_model import LeadModel, parse_model
from streams.routing import LeadView, RoutingState, account_domain, choose_rep, route

SCORES = """
scores: [{id: main, threshold: 100, rules: [{id: demo, event: Demo Requested, points: 60}]}]
"""
REPS_YAML = (
    """
version: r1
reps:
  - {id: us1, name: US One, email: us1@sales.example.com, territory: {countries: [US]}}
  - {id: us2, name: US Two, email: us2@sales.example.com, territory: {countries: [US]}}
  - {id: us3, name: US Three, email: us3@sales.example.com, territory: {countries: [US]}}
  - id: de-smb
    name: DE SMB
    email: de@sales.example.com
    territory: {countries: [DE], min_employees: 10, max_employees: 300}
  - {id: queue, name: Queue, email: queue@sales.example.com}
fallback_rep: queue
"""
    + SCORES
)
REPS = parse_model(REPS_YAML, source="reps.yaml")
US_POOL = "us1,us2,us3"
DOMAINS = [f"company-{n}.com" for n in range(60)]


def rep_for(
    traits: dict[str, TraitValue],
    model: LeadModel = REPS,
    rotation: dict[str, int] | None = None,
) -> str:
    picked, _ = choose_rep(traits, model, rotation or {})
    return picked.rep.id


@pytest.mark.parametrize(
    ("traits", "domain"),
    [
        ({"email": "jane@acme-robotics.com"}, "acme-robotics.com"),
        ({"email": "kenji@kaizen.co.jp"}, "kaizen.co.jp"),
        ({"email": "first@last@acme.com"}, "acme.com"),
        ({"email": "jane@gmail.com"}, None),
        ({"email": "jane@proton.me"}, None),
        ({"email": "taro@yahoo.co.jp"}, None),
        ({"email": "no-at-sign"}, None),
        ({"email": None}, None),
        ({}, None),
    ],
)
def test_account_domain_ignores_free_mail(
    traits: dict[str, TraitValue], domain: str | None
) -> None:
    assert account_domain(traits, REPS) == domain


def test_model_can_list_its_own_free_mail_domains() -> None:
    model = parse_model(REPS_YAML + "fit: {free_mail_domains: [example.org]}\n")

    assert account_domain({"email": "a@example.org"}, model) is None
    assert account_domain({"email": "a@gmail.com"}, model) == "gmail.com"


@pytest.mark.parametrize("rotation", [{}, {US_POOL: 1}, {US_POOL: 2}, {US_POOL: 17, "other": 4}])
def test_same_company_domain_gets_same_rep_whatever_the_rotation(rotation: dict[str, int]) -> None:
    baseline, _ = choose_rep({"email": "a@acme.com", "country": "US"}, REPS, {})

    for local in ("a", "ceo", "someone.else"):
        route, new_rotation = choose_rep(
            {"email": f"{local}@acme.com", "country": "US"}, REPS, rotation
        )
        assert route.rep == baseline.rep
        assert route.rule == "account_domain"
        assert new_rotation == rotation


def test_company_domains_are_spread_over_the_territory_reps() -> None:
    owners = {rep_for({"email": f"x@{d}", "country": "US"}) for d in DOMAINS}

    assert owners == {"us1", "us2", "us3"}


def test_adding_a_rep_moves_only_the_accounts_it_wins() -> None:
    grown = parse_model(
        REPS_YAML.replace(
            "  - {id: queue",
            "  - {id: us4, name: US Four, email: us4@x.com, territory: {countries: [US]}}\n"
            "  - {id: queue",
        )
    )

    moved = 0
    for domain in DOMAINS:
        traits: dict[str, TraitValue] = {"email": f"x@{domain}", "country": "US"}
        before, after = rep_for(traits), rep_for(traits, grown)
        assert after in (before, "us4")
        moved += after != before
    assert 0 < moved < len(DOMAINS)


@pytest.mark.parametrize(
    ("domain", "rep"),
    [
        ("acme-robotics.com", "carla"),
        ("globex.com", "dan"),
        ("initech.com", "dan"),
        ("umbrella.io", "carla"),
    ],
)
def test_account_owner_is_stable_across_releases(model: LeadModel, domain: str, rep: str) -> None:
    # Changing the hash would hand every existing account to a different rep.
    route, _ = choose_rep({"email": f"buyer@{domain}", "country": "US"}, model, {})

    assert (route.rep.id, route.rule) == (rep, "account_domain")


def test_free_mail_leads_rotate_among_territory_matches() -> None:
    rotation: dict[str, int] = {}
    picked = []
    for n in range(7):
        route, rotation = choose_rep(
            {"email": f"lead{n}@gmail.com", "country": "US"}, REPS, rotation
        )
        assert route.rule == "territory_round_robin"
        picked.append(route.rep.id)

    assert picked == ["us1", "us2", "us3", "us1", "us2", "us3", "us1"]


def test_round_robin_continues_from_the_stored_position() -> None:
    route, rotation = choose_rep({"country": "US"}, REPS, {US_POOL: 4})

    assert route.rep.id == "us2"
    assert rep_for({"country": "US"}, rotation=rotation) == "us3"


def test_round_robin_pools_are_separate(model: LeadModel) -> None:
    rotation: dict[str, int] = {}
    _, rotation = choose_rep({"country": "US"}, model, rotation)
    route_de, rotation = choose_rep({"country": "DE", "employees": 50}, model, rotation)
    route_us, rotation = choose_rep({"country": "US"}, model, rotation)

    assert route_de.rep.id == "ben"
    assert route_us.rep.id == "dan"
    assert rotation == {"carla,dan": 2, "ben": 1}


def test_choose_rep_does_not_change_the_rotation_it_is_given() -> None:
    rotation = {US_POOL: 1}

    choose_rep({"country": "US"}, REPS, rotation)

    assert rotation == {US_POOL: 1}


@pytest.mark.parametrize(
    "traits",
    [
        pytest.param({}, id="nothing-known"),
        pytest.param({"country": "FR"}, id="uncovered-country"),
        pytest.param({"email": "a@acme.fr", "country": "FR"}, id="company-domain-uncovered"),
        pytest.param({"country": "DE"}, id="size-bound-unknown-employees"),
        pytest.param({"country": "DE", "employees": 301}, id="above-max"),
        pytest.param({"country": "DE", "employees": 9}, id="below-min"),
        pytest.param({"country": "us"}, id="country-case-must-match"),
    ],
)
def test_no_territory_match_goes_to_the_fallback(traits: dict[str, TraitValue]) -> None:
    rotation = {US_POOL: 2}

    route, new_rotation = choose_rep(traits, REPS, rotation)

    assert (route.rep.id, route.rule) == ("queue", "fallback")
    assert new_rotation == rotation


@pytest.mark.parametrize(("employees", "rep"), [(10, "de-smb"), (300, "de-smb"), (120, "de-smb")])
def test_employee_bounds_are_inclusive(employees: int, rep: str) -> None:
    assert rep_for({"country": "DE", "employees": employees}) == rep


def test_fallback_rep_never_gets_territory_leads(model: LeadModel) -> None:
    # The bundled queue has no territory, which on its own would match everything.
    rotation: dict[str, int] = {}
    for n, country in enumerate(["US", "CA", "JP", "DE", "GB", "SG", "MX"] * 4):
        for email in (f"p{n}@gmail.com", f"p{n}@company-{n}.com"):
            route, rotation = choose_rep(
                {"email": email, "country": country, "employees": 100}, model, rotation
            )
            assert route.rep.id != "queue"
            assert route.rule != "fallback"


def test_fallback_rep_with_a_territory_still_only_gets_leftovers() -> None:
    model = parse_model(
        """
version: r2
reps:
  - {id: jp, name: JP, email: jp@x.com, territory: {countries: [JP]}}
  - {id: queue, name: Queue, email: q@x.com, territory: {countries: [JP, US]}}
fallback_rep: queue
"""
        + SCORES
    )

    assert [rep_for({"country": "JP"}, model) for _ in range(3)] == ["jp", "jp", "jp"]
    assert rep_for({"country": "US"}, model) == "queue"


# --- route() on a model without `routing:`: the same chain, with its trail ---------------

NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("traits", "owner"),
    [
        ({"email": "a@acme.com", "country": "US"}, None),
        ({"email": "a@gmail.com", "country": "US"}, None),
        ({"country": "DE", "employees": 50}, None),
        ({"country": "FR"}, None),
        ({"email": "a@acme.com", "country": "US"}, "us3"),
        ({"country": "FR"}, "nobody"),
    ],
)
def test_route_without_a_routing_section_picks_what_choose_rep_picks(
    traits: dict[str, TraitValue], owner: str | None
) -> None:
    rotation = {US_POOL: 1}
    expected, expected_rotation = choose_rep(traits, REPS, rotation, owner=owner)

    decision, state = route(
        lead=LeadView(traits=traits, account_owner=owner),
        model=REPS,
        state=RoutingState(rotation=rotation),
        now=NOW,
    )

    assert (decision.rep, decision.rule, decision.team) == (expected.rep, expected.rule, None)
    assert state.rotation == expected_rotation


def test_route_round_robin_positions_live_in_the_state() -> None:
    state = RoutingState()
    picked = []
    for n in range(4):
        decision, state = route(
            lead=LeadView(traits={"email": f"p{n}@gmail.com", "country": "US"}),
            model=REPS,
            state=state,
            now=NOW,
        )
        picked.append(decision.rep.id)

    assert picked == ["us1", "us2", "us3", "us1"]
    assert RoutingState.model_validate_json(state.model_dump_json()).rotation == {US_POOL: 1}


@pytest.mark.parametrize(
    ("lead", "lines"),
    [
        (
            LeadView(traits={"email": "a@acme.com", "country": "US"}),
            (
                "assigned: not routed before",
                "account owner: none in the CRM",
                "account domain: acme.com belongs to us3 (one rep of us1, us2, us3 per domain)",
            ),
        ),
        (
            LeadView(traits={"country": "US"}, account_owner="zed"),
            (
                "assigned: not routed before",
                "account owner: the CRM's owner zed is not a rep of the model",
                "territory: us1 by round-robin among us1, us2, us3",
            ),
        ),
        (
            LeadView(traits={"country": "FR"}, account_owner="de-smb"),
            (
                "assigned: not routed before",
                "account owner: de-smb owns the account",
            ),
        ),
        (
            LeadView(traits={"country": "FR"}),
            (
                "assigned: not routed before",
                "account owner: none in the CRM",
                "fallback: queue (no rep's territory covers the lead)",
            ),
        ),
        (
            LeadView(traits={"country": "US"}, assigned_rep="us3", account_owner="us1"),
            ("assigned: kept by us3, routed earlier",),
        ),
        (
            LeadView(traits={"country": "FR"}, assigned_rep="gone"),
            (
                "assigned: gone is no longer a rep of the model: routing again",
                "account owner: none in the CRM",
                "fallback: queue (no rep's territory covers the lead)",
            ),
        ),
    ],
)
def test_route_says_why_without_a_routing_section(lead: LeadView, lines: tuple[str, ...]) -> None:
    decision, _ = route(lead=lead, model=REPS, state=RoutingState(), now=NOW)

    assert decision.lines == lines
