"""Lead-to-account matching: domains first, free mail never, then company names (EN and JA)."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest

from schemas.crm import CrmAccount, normalize_domain
from streams.lead_model import DEFAULT_MODEL_PATH, load_model
from streams.matching import (
    AccountDirectory,
    email_domain,
    free_mail_domains,
    is_free_mail,
)

AT = datetime(2026, 11, 1, tzinfo=UTC)


def account(account_id: str, name: str, *domains: str, **fields: object) -> CrmAccount:
    return CrmAccount(account_id=account_id, name=name, domains=domains, updated_at=AT, **fields)


ACCOUNTS = [
    account("acc-001", "Acme Robotics, Inc.", "acme-robotics.com", owner_rep="carla"),
    account("acc-002", "トヨタ自動車株式会社", "toyota.co.jp", "global.toyota"),
    account("acc-003", "株式会社日立製作所", "hitachi.co.jp", "https://www.hitachi.com/"),
    account("acc-004", "Siemens AG", "siemens.com", "siemens.de"),
    account("acc-005", "ソニーグループ株式会社", "sony.com", "sony.co.jp"),
    account("acc-006", "Müller Maschinenbau GmbH & Co. KG", "mueller-maschinenbau.de"),
    account("acc-007", "株式会社メルカリ", "mercari.com"),
    account("acc-008", "Northwind Traders Ltd"),
    account("acc-009", "Contoso Japan K.K.", "contoso.co.jp"),
    account("acc-011", "Globex Japan 株式会社", "globex.com"),
    account("acc-010", "Globex Corporation", "globex.com"),
    account("acc-021", "Initech, Inc."),
    account("acc-020", "INITECH LLC"),
    account("acc-030", "有限会社さくら商店"),
    # A CRM typo: a sole trader entered with their Gmail domain. Gmail still never matches.
    account("acc-031", "Gmail Fans Club", "gmail.com"),
    account("acc-032", "Procter & Gamble Co.", "pg.com"),
]
DIRECTORY = AccountDirectory.build(ACCOUNTS, min_confidence=0.9)
FREE = free_mail_domains(tuple(load_model(DEFAULT_MODEL_PATH).fit.free_mail_domains))


@pytest.mark.parametrize(
    ("domain", "company", "expected", "method"),
    [
        # Corporate domains, exact and as parents of the email's domain.
        ("acme-robotics.com", None, "acc-001", "domain"),
        ("ACME-Robotics.COM", None, "acc-001", "domain"),
        ("mail.acme-robotics.com", None, "acc-001", "domain"),
        ("eu.mail.acme-robotics.com", None, "acc-001", "domain"),
        ("toyota.co.jp", None, "acc-002", "domain"),
        ("global.toyota", None, "acc-002", "domain"),
        ("hitachi.com", "Some Other Company", "acc-003", "domain"),  # the domain decides
        ("contoso.co.jp", None, "acc-009", "domain"),
        ("jp.sony.com", "Acme Robotics", "acc-005", "domain"),
        # Lookalikes that are not the company's domain.
        ("notacme-robotics.com", None, None, None),
        ("acme-robotics.com.phish.example", None, None, None),
        ("co.jp", None, None, None),
        ("example.org", None, None, None),
        # Free mail and ISPs never match by domain, even one a CRM record lists...
        ("gmail.com", None, None, None),
        ("yahoo.co.jp", None, None, None),
        ("docomo.ne.jp", None, None, None),
        ("ezweb.ne.jp", None, None, None),
        ("abc.biglobe.ne.jp", None, None, None),
        ("outlook.jp", "Hitachi", None, None),
        # ...but the company name they typed still can.
        ("gmail.com", "Acme Robotics", "acc-001", "company_name"),
        ("yahoo.co.jp", "トヨタ自動車(株)", "acc-002", "company_name"),
        ("docomo.ne.jp", "日立製作所", "acc-003", "company_name"),
        ("ezweb.ne.jp", "ｿﾆｰｸﾞﾙｰﾌﾟ㈱", "acc-005", "company_name"),  # half-width kana, ㈱
        ("i.softbank.jp", "（株）メルカリ", "acc-007", "company_name"),  # full-width parens
        # Company names alone: suffixes, case and width do not count.
        (None, "ＡＣＭＥ　ＲＯＢＯＴＩＣＳ", "acc-001", "company_name"),  # full-width
        (None, "SIEMENS", "acc-004", "company_name"),
        (None, "メルカリ", "acc-007", "company_name"),
        (None, "Northwind Traders Limited", "acc-008", "company_name"),
        (None, "Contoso Japan", "acc-009", "company_name"),
        (None, "さくら商店", "acc-030", "company_name"),
        (None, "Procter and Gamble", "acc-032", "company_name"),
        (None, "The Procter & Gamble Company", "acc-032", "company_name"),
        # Fuzzy: typos and transliterations above the threshold.
        (None, "Acme Robotic", "acc-001", "company_name"),
        (None, "Mueller Maschinenbau", "acc-006", "company_name"),
        (None, "Procter & Gambel", "acc-032", "company_name"),
        # Below the threshold: no match rather than a guess.
        (None, "Acme", None, None),
        (None, "Northwind", None, None),
        (None, "トヨタ紡織", None, None),
        (None, "Initrode", None, None),
        (None, "株式会社", None, None),  # only a legal form
        (None, "", None, None),
        (None, None, None, None),
        # Ties: the smaller account_id, always.
        (None, "Initech", "acc-020", "company_name"),
        ("globex.com", None, "acc-010", "domain"),
        # One domain, several accounts: the lead's company name tells them apart.
        ("globex.com", "Globex Japan K.K.", "acc-011", "domain"),
        ("globex.com", "Globex Corp", "acc-010", "domain"),
    ],
)
def test_match_table(
    domain: str | None, company: str | None, expected: str | None, method: str | None
) -> None:
    found = DIRECTORY.match(email_domain=domain, company=company, free_mail=FREE)

    if expected is None:
        assert found is None, found
    else:
        assert found is not None, f"no match for {domain!r} / {company!r}"
        assert (found.account.account_id, found.method) == (expected, method)
        assert 0.9 <= found.confidence <= 1.0


@pytest.mark.parametrize(
    ("company", "confidence"),
    [
        ("Acme Robotics", 1.0),  # same key: certain
        ("acme robotics corp.", 1.0),
        ("Acme Robotic", 0.96),  # 2 * 12 / 25 characters in common
        ("Mueller Maschinenbau", 0.9231),
    ],
)
def test_confidence_is_recorded_per_match(company: str, confidence: float) -> None:
    found = DIRECTORY.match(email_domain=None, company=company, free_mail=FREE)

    assert found is not None and found.method == "company_name"
    assert found.confidence == pytest.approx(confidence, abs=1e-4)


def test_a_domain_match_is_certain_and_carries_the_account() -> None:
    found = DIRECTORY.match(email_domain="sales.acme-robotics.com", company=None, free_mail=FREE)

    assert found is not None
    assert found.confidence == 1.0
    assert found.account.owner_rep == "carla"  # what routing reads


def test_the_threshold_is_configurable() -> None:
    strict = AccountDirectory.build(ACCOUNTS, min_confidence=0.99)
    loose = AccountDirectory.build(ACCOUNTS, min_confidence=0.6)

    assert strict.match(email_domain=None, company="Acme Robotic", free_mail=FREE) is None
    found = loose.match(email_domain=None, company="Northwind", free_mail=FREE)
    assert found is not None and found.account.account_id == "acc-008"
    assert found.confidence == pytest.approx(18 / 26, abs=1e-4)
    with pytest.raises(ValueError, match="min_confidence"):
        AccountDirectory.build(ACCOUNTS, min_confidence=1.5)


def test_updates_add_and_delete_accounts_and_old_lookups_do_not_stick() -> None:
    before = AccountDirectory.build(ACCOUNTS[:3])
    assert before.match(email_domain=None, company="Siemens", free_mail=FREE) is None

    after = before.updated({"acc-004": ACCOUNTS[3], "acc-001": None})

    found = after.match(email_domain=None, company="Siemens", free_mail=FREE)
    assert found is not None and found.account.account_id == "acc-004"
    assert after.match(email_domain="acme-robotics.com", company=None, free_mail=FREE) is None
    assert len(after) == 3 and after.get("acc-001") is None
    # The old directory is unchanged: readers holding it see one consistent state.
    assert before.match(email_domain="acme-robotics.com", company=None, free_mail=FREE)
    assert len(before) == 3


def test_a_renamed_account_is_found_under_its_new_name_only() -> None:
    renamed = account("acc-008", "Northwind Foods Ltd")
    directory = DIRECTORY.updated({"acc-008": renamed})

    found = directory.match(email_domain=None, company="Northwind Foods", free_mail=FREE)
    assert found is not None and found.account == renamed
    assert directory.match(email_domain=None, company="Northwind Traders", free_mail=FREE) is None


def test_repeated_lookups_give_the_same_answer() -> None:
    directory = AccountDirectory.build(ACCOUNTS, memo_size=2)
    names = ["Acme Robotic", "Mueller Maschinenbau", "Northwind", "Acme Robotic", "Initech"]
    first = [directory.match(email_domain=None, company=n, free_mail=FREE) for n in names]
    again = [directory.match(email_domain=None, company=n, free_mail=FREE) for n in names]

    assert first == again
    assert first[0] == first[3]


def test_a_repeated_lookup_is_answered_without_normalizing_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A lead's traits change on every identify and form, and the same companies repeat.
    from streams import matching

    normalized: list[str] = []
    name_key = matching._name_key
    monkeypatch.setattr(matching, "_name_key", lambda n: normalized.append(n) or name_key(n))
    directory = AccountDirectory.build(ACCOUNTS, memo_size=2)
    normalized.clear()
    asks = [("acme-robotics.com", "Acme"), (None, "Siemens"), ("acme-robotics.com", "Acme")]
    found = [directory.match(email_domain=d, company=c, free_mail=FREE) for d, c in asks]

    assert found[0] == found[2] and found[0] is not None
    assert normalized == ["Acme", "Siemens"]
    # Bounded: past `memo_size` answers, the oldest is worked out again.
    directory.match(email_domain=None, company="Initech", free_mail=FREE)
    directory.match(email_domain="acme-robotics.com", company="Acme", free_mail=FREE)
    assert normalized == ["Acme", "Siemens", "Initech", "Acme"]


def test_free_mail_merges_the_maintained_list_japanese_carriers_and_the_model() -> None:
    free = free_mail_domains(("corp-free.example",))

    assert {"gmail.com", "qq.com", "gmx.de"} <= free  # the maintained list
    assert {"docomo.ne.jp", "ezweb.ne.jp", "au.com", "i.softbank.jp"} <= free  # carriers
    assert "corp-free.example" in free  # the lead model's own list
    assert len(free) > 4000
    assert is_free_mail("xyz.biglobe.ne.jp", free)
    assert not is_free_mail("acme-robotics.com", free)
    assert not is_free_mail("ne.jp", free)


@pytest.mark.parametrize(
    ("email", "domain"),
    [
        ("Jane.Doe@Mail.ACME-robotics.com", "mail.acme-robotics.com"),
        ("taro@例え.jp", "xn--r8jz45g.jp"),
        ("no-at-sign", None),
        ("trailing@", None),
        (None, None),
    ],
)
def test_email_domain(email: str | None, domain: str | None) -> None:
    assert email_domain(email) == domain


@pytest.mark.parametrize(
    ("raw", "domain"),
    [
        ("https://www.Acme.com/about?x=1", "acme.com"),
        ("www.acme.co.jp.", "acme.co.jp"),
        ("acme.com:443", "acme.com"),
        ("ACME.COM", "acme.com"),
        ("localhost", None),
        ("not a domain", None),
        ("-bad-.com", None),
    ],
)
def test_crm_domains_are_normalized(raw: str, domain: str | None) -> None:
    assert normalize_domain(raw) == domain


@pytest.mark.parametrize("at_once", [False, True], ids=["one by one", "all at once"])
def test_updating_a_directory_answers_as_building_it_afresh_would(at_once: bool) -> None:
    rng = random.Random(7)
    names = [a.name for a in ACCOUNTS] + ["Initech Japan", "Acme Robotics KK", "メルカリ"]
    domains = ["acme-robotics.com", "globex.com", "pg.com", "toyota.co.jp", "new.example"]
    directory = DIRECTORY
    current = {a.account_id: a for a in ACCOUNTS}
    changes: dict[str, CrmAccount | None] = {}
    steps = 600 if at_once else 60  # at once: more than a directory updates in place
    for step in range(steps):
        fresh_id = f"acc-new-{step if at_once else step % 7}"
        account_id = fresh_id if rng.random() < 0.5 else rng.choice([*current, fresh_id])
        if rng.random() < 0.3:
            change: CrmAccount | None = None
            current.pop(account_id, None)
        else:
            change = account(account_id, rng.choice(names), *rng.sample(domains, rng.randint(0, 2)))
            current[account_id] = change
        if at_once:
            changes[account_id] = change
        else:
            directory = directory.updated({account_id: change})
    if at_once:
        assert len(changes) > 256
    directory = directory.updated(changes)
    fresh = AccountDirectory.build(current.values())

    queries = (
        [(d, None) for d in domains] + [(None, n) for n in names] + [("globex.com", "Initech")]
    )
    for domain, company in queries:
        assert directory.match(email_domain=domain, company=company, free_mail=FREE) == (
            fresh.match(email_domain=domain, company=company, free_mail=FREE)
        ), (domain, company)
    assert sorted(a.account_id for a in directory.accounts()) == sorted(current)
