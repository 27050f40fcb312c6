"""Qualification: purchase timing and BANT answers in Japanese and English to buckets."""

from __future__ import annotations

import dataclasses
from datetime import date

import pytest

from schemas.internal import TraitValue
from streams.qualify import AUTHORITIES, BUDGETS, NEEDS, TIMELINES, Qualification, qualify

AS_OF = date(2025, 5, 20)


def timeline(text: TraitValue, as_of: date = AS_OF, fiscal_year_start_month: int = 1) -> str:
    result = qualify(
        {"purchase_timeline": text},
        as_of=as_of,
        fiscal_year_start_month=fiscal_year_start_month,
    )
    assert result.timeline_text == text  # the original answer always travels with the bucket
    return result.timeline


@pytest.mark.parametrize(
    ("text", "bucket"),
    [
        # Japanese pick lists and free text
        ("1ヶ月以内", "within_1_month"),
        ("今すぐ", "within_1_month"),
        ("今月中", "within_1_month"),
        ("2週間以内", "within_1_month"),
        ("3ヶ月以内", "within_3_months"),
        ("３か月以内", "within_3_months"),
        ("3カ月以内", "within_3_months"),
        ("三ヶ月以内", "within_3_months"),
        ("1〜3ヶ月", "within_3_months"),
        ("来月", "within_3_months"),
        ("半年以内", "within_6_months"),
        ("3～6ヶ月", "within_6_months"),
        ("6ヶ月以上", "within_12_months"),
        ("1年以内", "within_12_months"),
        ("一年以内", "within_12_months"),
        ("1年以上先", "over_12_months"),
        ("1年半以内", "over_12_months"),
        ("来年以降", "over_12_months"),
        ("未定", "no_plan"),
        ("時期は決まっていない", "no_plan"),
        ("検討中", "no_plan"),
        ("情報収集中", "no_plan"),
        # English
        ("ASAP", "within_1_month"),
        ("Immediately", "within_1_month"),
        ("this month", "within_1_month"),
        ("within 30 days", "within_1_month"),
        ("next 3 months", "within_3_months"),
        ("1-3 months", "within_3_months"),
        ("within six months", "within_6_months"),
        ("3 to 6 months", "within_6_months"),
        ("6-12 months", "within_12_months"),
        ("more than 6 months", "within_12_months"),
        ("within a year", "within_12_months"),
        ("12+ months", "over_12_months"),
        ("more than a year", "over_12_months"),
        ("2 years", "over_12_months"),
        ("no timeline", "no_plan"),
        ("No plans yet", "no_plan"),
        ("just researching", "no_plan"),
        ("Not sure", "no_plan"),
        ("TBD", "no_plan"),
    ],
)
def test_timeline_buckets(text: str, bucket: str) -> None:
    assert timeline(text) == bucket


@pytest.mark.parametrize(
    ("text", "as_of", "fiscal_start", "bucket"),
    [
        # Calendar periods, across the year boundary
        ("this year", date(2025, 12, 15), 1, "within_1_month"),
        ("this year", date(2025, 1, 10), 1, "within_12_months"),
        ("今年中", date(2025, 11, 1), 1, "within_3_months"),
        ("next month", date(2025, 12, 15), 1, "within_3_months"),
        ("next year", date(2025, 12, 15), 1, "over_12_months"),
        ("来年", date(2025, 1, 2), 1, "over_12_months"),
        # Quarters: next quarter from mid-December ends on 31 March
        ("next quarter", date(2025, 12, 15), 1, "within_6_months"),
        ("next quarter", date(2025, 3, 31), 1, "within_3_months"),
        ("this quarter", date(2025, 12, 15), 1, "within_1_month"),
        ("来四半期", date(2025, 12, 15), 1, "within_6_months"),
        ("Q1", date(2025, 11, 15), 1, "within_6_months"),
        ("Q1", date(2026, 2, 10), 1, "within_3_months"),
        ("Q4", date(2025, 11, 15), 1, "within_3_months"),
        ("Q3 2026", date(2025, 5, 20), 1, "over_12_months"),
        ("第4四半期", date(2025, 11, 15), 1, "within_3_months"),
        # Japanese fiscal year (April): 今期 in February ends in March
        ("今期", date(2026, 2, 10), 4, "within_3_months"),
        ("今期", date(2026, 2, 10), 1, "within_12_months"),
        ("今期中", date(2025, 4, 1), 4, "within_12_months"),
        ("来期", date(2026, 2, 10), 4, "over_12_months"),
        ("今年度中", date(2026, 11, 1), 4, "within_6_months"),
        ("this fiscal year", date(2026, 11, 1), 4, "within_6_months"),
        ("Q1", date(2026, 2, 10), 4, "within_6_months"),
        ("下期", date(2026, 2, 10), 4, "within_3_months"),
        ("下期", date(2026, 2, 10), 1, "within_12_months"),
        ("2025年度", date(2026, 2, 10), 4, "within_3_months"),
        ("2026年度", date(2026, 2, 10), 4, "over_12_months"),
        # Dates
        ("2026年3月", date(2025, 12, 15), 1, "within_6_months"),
        ("2026年3月末まで", date(2025, 12, 15), 1, "within_6_months"),
        ("March 2026", date(2025, 12, 15), 1, "within_6_months"),
        ("1月", date(2025, 12, 15), 1, "within_3_months"),
        ("by June", date(2026, 5, 20), 1, "within_3_months"),
        ("3月15日まで", date(2026, 2, 20), 1, "within_1_month"),
        ("2026-06-30", date(2026, 2, 20), 1, "within_6_months"),
    ],
)
def test_relative_timelines_count_from_the_answer_date(
    text: str, as_of: date, fiscal_start: int, bucket: str
) -> None:
    assert timeline(text, as_of=as_of, fiscal_year_start_month=fiscal_start) == bucket


@pytest.mark.parametrize(
    "text",
    ["要相談", "whenever the board meets", "we may buy", "2025年1月"],  # the last is past
)
def test_unreadable_timeline_is_unknown_with_the_text_kept(text: str) -> None:
    result = qualify({"purchase_timeline": text}, as_of=date(2025, 12, 15))

    assert (result.timeline, result.timeline_text) == ("unknown", text)


def test_no_answers_are_unknown_without_text() -> None:
    assert qualify({"email": "a@b.co"}, as_of=AS_OF) == Qualification(
        timeline="unknown",
        timeline_text=None,
        budget="unknown",
        budget_text=None,
        authority="unknown",
        authority_text=None,
        need="unknown",
        need_text=None,
    )


@pytest.mark.parametrize(
    ("text", "bucket"),
    [
        ("予算確保済み", "approved"),
        ("予算あり", "approved"),
        ("予算化済み", "approved"),
        ("budget approved", "approved"),
        ("Yes, we have a budget", "approved"),
        (True, "approved"),
        ("予算化予定", "planned"),
        ("予算申請中", "planned"),
        ("来期予算で検討", "planned"),
        ("not yet approved", "planned"),
        ("in next year's budget", "planned"),
        ("予算なし", "none"),
        ("予算はありません", "none"),
        ("no budget", "none"),
        ("None", "none"),
        (False, "none"),
        ("$50,000", "unknown"),
    ],
)
def test_budget_buckets(text: TraitValue, bucket: str) -> None:
    result = qualify({"budget": text}, as_of=AS_OF)

    assert result.budget == bucket
    assert result.budget_text == (text if isinstance(text, str) else str(text).lower())


@pytest.mark.parametrize(
    ("text", "bucket"),
    [
        ("決裁者", "decision_maker"),
        ("最終決定者", "decision_maker"),
        ("decision maker", "decision_maker"),
        ("I am the decision maker", "decision_maker"),
        ("Budget holder", "decision_maker"),
        ("influencer", "influencer"),
        ("I recommend vendors to my boss", "influencer"),
        ("選定担当", "influencer"),
        ("担当者", "user"),
        ("利用者", "user"),
        ("end user", "user"),
        ("I'm not the decision maker", "unknown"),
        ("決裁者ではない", "unknown"),
        ("marketing", "unknown"),
    ],
)
def test_authority_buckets(text: str, bucket: str) -> None:
    result = qualify({"authority": text}, as_of=AS_OF)

    assert (result.authority, result.authority_text) == (bucket, text)


@pytest.mark.parametrize(
    ("text", "bucket"),
    [
        ("課題あり", "confirmed"),
        ("ニーズあり", "confirmed"),
        ("We need to replace our CRM", "confirmed"),
        ("must have", "confirmed"),
        ("比較検討中", "exploring"),
        ("情報収集", "exploring"),
        ("just researching", "exploring"),
        ("evaluating options", "exploring"),
        ("ニーズなし", "none"),
        ("不要", "none"),
        ("no need", "none"),
        ("not interested", "none"),
        ("hmm", "unknown"),
    ],
)
def test_need_buckets(text: str, bucket: str) -> None:
    result = qualify({"need": text}, as_of=AS_OF)

    assert (result.need, result.need_text) == (bucket, text)


def test_bucket_names_read_back_as_themselves() -> None:
    # A pick list that already uses our bucket names (or an SFA round trip) keeps them.
    for name in TIMELINES:
        assert timeline(name) == name
    for name in BUDGETS:
        assert qualify({"budget": name}, as_of=AS_OF).budget == name
    for name in AUTHORITIES:
        assert qualify({"authority": name}, as_of=AS_OF).authority == name
    for name in NEEDS:
        assert qualify({"need": name}, as_of=AS_OF).need == name


def test_a_full_bant_answer_in_japanese() -> None:
    traits: dict[str, TraitValue] = {
        "purchase_timeline": "３か月以内",
        "budget": "予算確保済み",
        "authority": "決裁者",
        "need": "課題あり",
    }

    assert qualify(traits, as_of=AS_OF) == Qualification(
        timeline="within_3_months",
        timeline_text="３か月以内",
        budget="approved",
        budget_text="予算確保済み",
        authority="decision_maker",
        authority_text="決裁者",
        need="confirmed",
        need_text="課題あり",
    )


def test_qualification_is_frozen() -> None:
    result = qualify({"budget": "no budget"}, as_of=AS_OF)

    with pytest.raises(dataclasses.FrozenInstanceError):
        result.budget = "approved"  # type: ignore[misc]


@pytest.mark.parametrize("month", [0, 13])
def test_fiscal_year_start_month_is_checked(month: int) -> None:
    with pytest.raises(ValueError, match="fiscal_year_start_month"):
        qualify({}, as_of=AS_OF, fiscal_year_start_month=month)


def test_a_memo_gives_the_answers_qualify_reads_without_it() -> None:
    """Hand-offs pass a memo: the same answers for the same texts, date and fiscal year,
    and a new reading when any of them differs (relative answers move with the date)."""
    memo: dict[tuple[object, ...], Qualification] = {}
    cases: list[tuple[dict[str, TraitValue], date, int]] = [
        ({"purchase_timeline": "this quarter", "budget": "approved"}, date(2026, 3, 31), 1),
        ({"purchase_timeline": "this quarter", "budget": "approved"}, date(2026, 4, 1), 1),
        ({"purchase_timeline": "this quarter", "budget": "approved"}, date(2026, 3, 31), 4),
        ({"purchase_timeline": "今期中", "authority": "決裁者"}, date(2026, 11, 20), 4),
        ({"need": True}, date(2026, 11, 20), 1),
        ({"need": "true"}, date(2026, 11, 20), 1),  # the same answer as a checkbox's
        ({"need": 1}, date(2026, 11, 20), 1),
        ({}, date(2026, 11, 20), 1),
    ]
    for _ in range(2):
        for traits, as_of, fy in cases:
            with_memo = qualify(traits, as_of=as_of, fiscal_year_start_month=fy, memo=memo)
            assert with_memo == qualify(traits, as_of=as_of, fiscal_year_start_month=fy)
    assert len(memo) == len(cases) - 1  # True and "true" are one answer
