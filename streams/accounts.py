"""Account roll-up: an account's score from its contacts, and the buying-group trigger."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from schemas.decisions import SCHEMA_VERSION, AccountScored, RepAlert
from schemas.internal import ContactUpdate
from streams.construct import trusted
from streams.lead_model import LeadModel
from streams.state import AccountState

__all__ = ["AccountBatch", "apply_contact", "apply_contacts"]

_DAY_MS = 86_400_000
_SEEN_KEPT = 64

AccountDecision = AccountScored | RepAlert


@dataclass(slots=True)
class AccountBatch:
    accounts: dict[str, AccountState] = field(default_factory=dict)
    decisions: list[AccountDecision] = field(default_factory=list)


def apply_contacts(
    accounts: Mapping[str, AccountState | None],
    updates: Iterable[ContactUpdate],
    *,
    model: LeadModel,
    now: datetime,
) -> AccountBatch:
    """Apply contact updates in order; each changed account appears once in the result."""
    out = AccountBatch()
    for update in updates:
        current = out.accounts.get(update.account) or accounts.get(update.account)
        new, decisions = apply_contact(current, update, model=model, now=now)
        if new is not current:
            out.accounts[update.account] = new
        out.decisions.extend(decisions)
    return out


def apply_contact(
    account: AccountState | None, update: ContactUpdate, *, model: LeadModel, now: datetime
) -> tuple[AccountState, list[AccountDecision]]:
    """One contact's new primary score: the account's sum, and the buying group.

    Idempotent (a re-delivered update changes nothing) and order-safe (an update older
    than the one stored for that contact is ignored).
    """
    if account is None:
        account = AccountState(domain=update.account)
    key = hashlib.blake2b(f"{update.lead_id}\x00{update.mid}".encode(), digest_size=6).hexdigest()
    held = account.contacts.get(update.lead_id)
    if key in account.seen or (held is not None and held[1] > update.ts_ms):
        return account, []
    contacts = dict(account.contacts)
    if update.score > 0:
        contacts[update.lead_id] = (update.score, update.ts_ms)
    else:
        contacts.pop(update.lead_id, None)
    limit = model.accounts.max_contacts
    if len(contacts) > limit:  # keep the strongest, most recent contacts
        ranked = sorted(contacts.items(), key=lambda kv: (kv[1][0], kv[1][1]), reverse=True)
        contacts = dict(ranked[:limit])
    score = sum(points for points, _ in contacts.values())
    rep = update.rep or account.rep
    group = model.accounts.buying_group
    engaged = _engaged(contacts, update.ts_ms, model)
    fired_ms = account.fired_ms
    decisions: list[AccountDecision] = []
    in_group = group is not None and len(engaged) >= group.min_contacts
    if (
        group is not None
        and in_group
        and (fired_ms is None or abs(update.ts_ms - fired_ms) >= group.cooldown_days * _DAY_MS)
    ):
        fired_ms = update.ts_ms
        owner = model.rep(rep or "") or model.rep(model.fallback_rep)
        assert owner is not None  # the fallback rep always exists (model validation)
        decisions.append(
            trusted(
                RepAlert,
                dict(
                    schema_version=SCHEMA_VERSION,
                    alert_id=_stable_id(update.account, group.id, str(update.ts_ms)),
                    rep_id=owner.id,
                    rep_name=owner.name,
                    rep_email=owner.email,
                    lead_id=update.lead_id,
                    email=None,
                    company=update.account,
                    trigger=group.id,
                    message=f"{update.account} "
                    + group.message.replace("{contacts}", str(len(engaged))),
                    score=score,
                    model_version=model.version,
                    event_at=_ms_to_dt(update.ts_ms),
                    created_at=now,
                ),
            )
        )
    new = trusted(
        AccountState,
        dict(
            domain=account.domain,
            contacts=contacts,
            score=score,
            rep=rep,
            fired_ms=fired_ms,
            seen=(*account.seen, key)[-_SEEN_KEPT:],
        ),
    )
    before = _engaged(account.contacts, update.ts_ms, model)
    if score != account.score or len(engaged) != len(before) or decisions:
        decisions.insert(
            0,
            trusted(
                AccountScored,
                dict(
                    schema_version=SCHEMA_VERSION,
                    account=account.domain,
                    score=score,
                    previous_score=account.score,
                    contacts=len(contacts),
                    engaged_contacts=len(engaged),
                    buying_group=in_group,
                    rep_id=rep,
                    model_version=model.version,
                    occurred_at=_ms_to_dt(update.ts_ms),
                    created_at=now,
                ),
            ),
        )
    return new, decisions


def _engaged(contacts: Mapping[str, tuple[int, int]], at_ms: int, model: LeadModel) -> list[str]:
    group = model.accounts.buying_group
    if group is None:
        return []
    window = group.within_days * _DAY_MS
    return [
        lead
        for lead, (points, ts) in contacts.items()
        if points >= group.min_score and abs(at_ms - ts) <= window
    ]


def _stable_id(*parts: str) -> str:
    return hashlib.blake2b("\x00".join(parts).encode("utf-8"), digest_size=12).hexdigest()


def _ms_to_dt(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)
