"""Identity forms: emails that reach one mailbox, phones in E.164, company name keys."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from schemas.internal import TraitValue
from streams.codec import decode_person_event
from streams.normalize import (
    DEFAULT_EMAIL_RULES,
    EmailProvider,
    EmailRules,
    email_identity,
    normalize_company,
    normalize_phone,
    normalize_traits,
)


@pytest.mark.parametrize(
    ("email", "identity"),
    [
        pytest.param("  Jane.Doe@Acme.COM ", "jane.doe@acme.com", id="case-and-space"),
        pytest.param("j.a.n.e+news@gmail.com", "jane@gmail.com", id="gmail-dots-and-tag"),
        pytest.param("Jane.Doe@GoogleMail.com", "janedoe@gmail.com", id="googlemail-is-gmail"),
        pytest.param("jane+a+b@gmail.com", "jane@gmail.com", id="gmail-tag-with-plus"),
        pytest.param("jane.doe+crm@outlook.com", "jane.doe@outlook.com", id="outlook-tag-only"),
        pytest.param("jane.doe+x@hotmail.co.jp", "jane.doe@hotmail.co.jp", id="hotmail-jp"),
        pytest.param("jane+x@live.com", "jane@live.com", id="live"),
        pytest.param("jane.doe+x@icloud.com", "jane.doe@icloud.com", id="icloud"),
        pytest.param("jane+x@fastmail.com", "jane@fastmail.com", id="fastmail"),
        pytest.param("jane.doe+x@proton.me", "jane.doe@proton.me", id="proton"),
        pytest.param("jane+x@pm.me", "jane@pm.me", id="proton-short"),
        pytest.param("jane.doe+x@acme.com", "jane.doe+x@acme.com", id="company-untouched"),
        pytest.param("jane.doe+x@yahoo.co.jp", "jane.doe+x@yahoo.co.jp", id="yahoo-untouched"),
        pytest.param("+only@gmail.com", "+only@gmail.com", id="nothing-left-kept"),
        pytest.param("jane@gmail.com.", "jane@gmail.com", id="trailing-dot-domain"),
        pytest.param("not-an-email", "not-an-email", id="no-at"),
    ],
)
def test_email_identity(email: str, identity: str) -> None:
    assert email_identity(email, rules=DEFAULT_EMAIL_RULES) == identity


def test_two_spellings_of_one_gmail_box_share_an_identity() -> None:
    spellings = ["Jane.Doe@gmail.com", "janedoe+webinar@googlemail.com", " JANEDOE@GMAIL.COM"]

    assert {email_identity(e, rules=DEFAULT_EMAIL_RULES) for e in spellings} == {
        "janedoe@gmail.com"
    }


def test_email_rules_are_configurable() -> None:
    # A company whose mail server drops +tags, and no gmail rule at all.
    rules = EmailRules(providers=(EmailProvider(domains=("Acme.com",), ignores_plus=True),))

    assert email_identity("jane.doe+crm@acme.com", rules=rules) == "jane.doe@acme.com"
    assert email_identity("j.doe+x@gmail.com", rules=rules) == "j.doe+x@gmail.com"


def test_email_rules_in_use_are_still_equal_and_dump_the_same() -> None:
    # The domain index is cached on the rules at first use: not a field, not compared.
    fresh = EmailRules(providers=DEFAULT_EMAIL_RULES.providers)
    used = EmailRules(providers=DEFAULT_EMAIL_RULES.providers)
    assert email_identity("a.b+c@gmail.com", rules=used) == "ab@gmail.com"

    assert used == fresh
    assert used.model_dump() == fresh.model_dump() == {"providers": fresh.model_dump()["providers"]}
    assert EmailRules.model_validate(used.model_dump()) == used


def test_email_rules_load_from_config() -> None:
    rules = EmailRules.model_validate(
        {"providers": [{"domains": ["mail.example"], "ignores_dots": True}]}
    )

    assert email_identity("a.b+c@mail.example", rules=rules) == "ab+c@mail.example"
    with pytest.raises(ValueError, match="extra"):
        EmailRules.model_validate({"providers": [{"domains": ["x"], "ignore_dots": True}]})


@pytest.mark.parametrize(
    ("value", "region", "e164"),
    [
        pytest.param("(650) 253-0000", "US", "+16502530000", id="us-national"),
        pytest.param("+1 650-253-0000", None, "+16502530000", id="us-international"),
        pytest.param("650.253.0000", "US", "+16502530000", id="us-dots"),
        pytest.param("03-1234-5678", "JP", "+81312345678", id="jp-tokyo"),
        pytest.param("090-1234-5678", "JP", "+819012345678", id="jp-mobile"),
        pytest.param("０３－１２３４－５６７８", "JP", "+81312345678", id="jp-full-width"),
        pytest.param("+81 3 1234 5678", "US", "+81312345678", id="jp-plus-ignores-region"),
        pytest.param("030 12345678", "DE", "+493012345678", id="de-berlin"),
        pytest.param("+49 (0)30 12345678", None, "+493012345678", id="de-trunk-zero"),
        pytest.param("020 7946 0018", "GB", "+442079460018", id="gb-london"),
        pytest.param("07911 123456", "GB", "+447911123456", id="gb-mobile"),
        pytest.param("0151 23456789", "DE", "+4915123456789", id="de-mobile"),
        pytest.param("03-1234-5678", None, None, id="national-without-region"),
        pytest.param("03-1234-5678", "US", None, id="wrong-region"),
        pytest.param("12345", "US", None, id="too-short"),
        pytest.param("call me", "US", None, id="words"),
        pytest.param("", "US", None, id="empty"),
        pytest.param("+1 650 253 0000", "ZZ", "+16502530000", id="unknown-region-ignored"),
    ],
)
def test_normalize_phone(value: str, region: str | None, e164: str | None) -> None:
    assert normalize_phone(value, default_region=region) == e164


@pytest.mark.parametrize(
    ("traits", "default_region", "expected"),
    [
        pytest.param(
            {"phone": "03-1234-5678", "country": "JP"},
            "US",
            {"phone": "+81312345678", "country": "JP"},
            id="country-trait-wins",
        ),
        pytest.param(
            {"phone": "(650) 253-0000"}, "US", {"phone": "+16502530000"}, id="default-region"
        ),
        pytest.param(
            {"phone": "020 7946 0018", "country": "UK"},
            None,
            {"phone": "+442079460018", "country": "UK"},
            id="uk-reads-as-gb",
        ),
        pytest.param(
            {"phone": "03-1234-5678", "country": "Japan"},
            "JP",
            {"phone": "+81312345678", "country": "Japan"},
            id="country-name-falls-back",
        ),
        pytest.param({"phone": 6502530000}, "US", {"phone": "+16502530000"}, id="number"),
        pytest.param({"phone": "+81312345678"}, "US", {"phone": "+81312345678"}, id="idempotent"),
        pytest.param(
            {"phone": "n/a", "email": "a@b.co"}, "US", {"email": "a@b.co"}, id="invalid-dropped"
        ),
        pytest.param({"phone": True}, "US", {}, id="bool-dropped"),
        pytest.param({"email": "a@b.co"}, "US", {"email": "a@b.co"}, id="no-phone"),
    ],
)
def test_normalize_traits_phone(
    traits: dict[str, TraitValue], default_region: str | None, expected: dict[str, TraitValue]
) -> None:
    assert normalize_traits(traits, default_region=default_region) == expected


@pytest.mark.parametrize(
    ("names", "key"),
    [
        pytest.param(["Acme, Inc.", "ACME Inc", "Acme Incorporated", "acme"], "acme", id="inc"),
        pytest.param(["Acme Corp.", "Acme Corporation"], "acme", id="corp"),
        pytest.param(["Acme Co., Ltd.", "Acme Co.,Ltd", "Acme Limited"], "acme", id="co-ltd"),
        pytest.param(["Acme LLC", "Acme, L.L.C.", "Acme LLP", "Acme PLC"], "acme", id="llc"),
        pytest.param(["Acme Holdings Pty Ltd"], "acme holdings", id="pty-ltd"),
        pytest.param(["Müller GmbH", "Müller GmbH & Co. KG", "MÜLLER AG"], "müller", id="de"),
        pytest.param(["Straße GmbH"], "strasse", id="casefold-sharp-s"),
        pytest.param(["Foo UG (haftungsbeschränkt)", "Foo e.V."], "foo", id="de-ug-ev"),
        pytest.param(["Société Générale S.A.", "Société Générale SA"], "société générale", id="fr"),
        pytest.param(["Dupont SAS", "Dupont S.A.R.L."], "dupont", id="fr-sas-sarl"),
        pytest.param(["Philips N.V.", "Philips NV", "Philips BV"], "philips", id="nl"),
        pytest.param(["Toyota K.K.", "Toyota KK"], "toyota", id="kk"),
        pytest.param(
            ["トヨタ自動車株式会社", "株式会社トヨタ自動車", "(株)トヨタ自動車", "㈱トヨタ自動車"],
            "トヨタ自動車",
            id="kabushiki-gaisha",
        ),
        pytest.param(
            ["トヨタ自動車（株）", "トヨタ自動車 株式会社", "トヨタ自動車㍿"],
            "トヨタ自動車",
            id="jp-suffix",
        ),
        pytest.param(["有限会社山田商店", "山田商店(有)", "㈲山田商店"], "山田商店", id="yugen"),
        pytest.param(["合同会社DMM", "ＤＭＭ合同会社"], "dmm", id="godo-full-width"),
        pytest.param(
            ["株式会社ＡＢＣ", "ABC K.K.", "ａｂｃ　ｉｎｃ．"], "abc", id="full-width-latin"
        ),
        pytest.param(["Amazon.com, Inc.", "amazon.com"], "amazon com", id="punctuation"),
        pytest.param(["Plan C"], "plan c", id="single-letter-kept"),
        pytest.param(["Inc.", "株式会社"], None, id="only-a-form-kept"),
    ],
)
def test_normalize_company(names: list[str], key: str | None) -> None:
    keys = {normalize_company(name) for name in names}

    if key is None:  # a name that is nothing but a legal form is not emptied
        assert "" not in keys
    else:
        assert keys == {key}


def test_different_companies_keep_different_keys() -> None:
    assert normalize_company("Acme Robotics Inc.") != normalize_company("Acme Inc.")
    assert normalize_company("トヨタ自動車株式会社") != normalize_company("トヨタ紡織株式会社")


def test_need_trait_reaches_the_normalized_event() -> None:
    value = orjson.dumps(
        {
            "type": "identify",
            "messageId": "m-1",
            "timestamp": "2026-11-20T09:00:00Z",
            "userId": "u-1",
            "traits": {"need": " 課題あり ", "budget": "予算確保済み"},
        }
    )
    event: Any = decode_person_event(value)

    assert event.traits == {"need": "課題あり", "budget": "予算確保済み"}
