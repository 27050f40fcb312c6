"""Routing: which rep gets a lead, and the rule that decided it."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass

from schemas.internal import TraitValue
from streams.lead_model import LeadModel, Rep, Territory

__all__ = ["Route", "account_domain", "choose_rep"]


@dataclass(frozen=True, slots=True)
class Route:
    rep: Rep
    rule: str  # account_owner | account_domain | territory_round_robin | fallback


def account_domain(traits: Mapping[str, TraitValue], model: LeadModel) -> str | None:
    """The company domain of the lead's email, or None for free-mail and unknown emails."""
    email = traits.get("email")
    if not isinstance(email, str) or "@" not in email:
        return None
    domain = email.rsplit("@", 1)[1]
    return None if domain in model.index.free_mail else domain


def choose_rep(
    traits: Mapping[str, TraitValue],
    model: LeadModel,
    rotation: Mapping[str, int],
    *,
    owner: str | None = None,
) -> tuple[Route, dict[str, int]]:
    """Pick a rep; returns the route and the updated round-robin positions.

    0. A lead matched to a CRM account whose owner is one of the model's reps goes to that
       owner (`owner`): the CRM is the record of who works which account.
    1. A lead with a company domain goes to that account's owner: the matching rep that
       wins rendezvous hashing on the domain. Every partition computes the same owner with
       no coordination, so all contacts of one account reach one rep, and adding a rep
       moves only the accounts it wins.
    2. Otherwise round-robin among reps whose territory matches.
    3. Otherwise the fallback rep (a queue with an owner).
    """
    if owner is not None and (crm_owner := model.rep(owner)) is not None:
        return Route(crm_owner, "account_owner"), dict(rotation)
    candidates = [
        rep for rep in model.reps if rep.id != model.fallback_rep and _covers(rep.territory, traits)
    ]
    fallback = model.rep(model.fallback_rep)
    assert fallback is not None  # guaranteed by LeadModel validation
    if not candidates:
        return Route(fallback, "fallback"), dict(rotation)
    domain = account_domain(traits, model)
    if domain is not None:
        winner = max(candidates, key=lambda rep: _weight(domain, rep.id))
        return Route(winner, "account_domain"), dict(rotation)
    pool = ",".join(rep.id for rep in candidates)
    position = rotation.get(pool, 0) % len(candidates)
    return Route(candidates[position], "territory_round_robin"), {
        **rotation,
        pool: position + 1,
    }


def _covers(territory: Territory, traits: Mapping[str, TraitValue]) -> bool:
    if territory.countries:
        country = traits.get("country")
        if not isinstance(country, str) or country not in territory.countries:
            return False
    employees = traits.get("employees")
    if territory.min_employees is not None or territory.max_employees is not None:
        if not isinstance(employees, int):
            return False
        if territory.min_employees is not None and employees < territory.min_employees:
            return False
        if territory.max_employees is not None and employees > territory.max_employees:
            return False
    return True


def _weight(domain: str, rep_id: str) -> int:
    digest = hashlib.blake2b(f"{domain}\x00{rep_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")
