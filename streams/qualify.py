"""Qualification: purchase timing and BANT answers (Japanese, English) to fixed buckets.

Form answers arrive as pick-list values or free text in either language: 「3ヶ月以内」,
「来期」, "next quarter", "budget approved", 「決裁者」. `qualify` reads the lead's
`purchase_timeline`, `budget`, `authority` and `need` traits into a small set of buckets a
rep and the SFA can filter on, and keeps each original answer beside its bucket. An answer
it cannot read is `unknown` with its text kept; no answer is `unknown` with no text.

Timing is read as a deadline: a duration from the answer's date ("within 3 months"), a
period relative to it ("this quarter", 「今期」: fiscal periods follow
`fiscal_year_start_month`), or a date ("March 2026", 「2026年3月」). The bucket is the
smallest window from `as_of` that holds the deadline ("next quarter" in mid-December ends
on 31 March: `within_6_months`). "More than N" and 「N以上」 land just past N. When an answer
says two things, the more cautious reading wins: the later deadline; no budget before
planned before approved; none before exploring before confirmed.
"""

from __future__ import annotations

import calendar
import re
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from typing import TypeVar, get_args

from schemas.decisions import Authority, Budget, Need, Timeline
from schemas.internal import TraitValue
from streams.lead_model import remember

__all__ = [
    "AUTHORITIES",
    "BUDGETS",
    "NEEDS",
    "TIMELINES",
    "Authority",
    "Budget",
    "Need",
    "Qualification",
    "Timeline",
    "qualify",
]

TIMELINES: tuple[Timeline, ...] = get_args(Timeline)
BUDGETS: tuple[Budget, ...] = get_args(Budget)
AUTHORITIES: tuple[Authority, ...] = get_args(Authority)
NEEDS: tuple[Need, ...] = get_args(Need)


@dataclass(frozen=True, slots=True)
class Qualification:
    """Each BANT fact as a bucket, with the answer it was read from (None: not answered)."""

    timeline: Timeline = "unknown"
    timeline_text: str | None = None
    budget: Budget = "unknown"
    budget_text: str | None = None
    authority: Authority = "unknown"
    authority_text: str | None = None
    need: Need = "unknown"
    need_text: str | None = None


def qualify(
    traits: Mapping[str, TraitValue],
    *,
    as_of: date,
    fiscal_year_start_month: int = 1,
    memo: dict[tuple[object, ...], Qualification] | None = None,
) -> Qualification:
    """The lead's timeline, budget, authority and need, read from its traits.

    `as_of` is the date the answer was given (the event's date): relative answers count
    from it. `fiscal_year_start_month` (4 in most of Japan) places 今期, 来期, "this
    quarter", Q1..Q4 and H1/H2; "this year" and 今年 stay calendar years. `memo`, when
    given, keeps the answers read (by their texts and date): reading a timeline costs
    ~30 us of regular expressions, and hand-offs repeat a few answers.
    """
    if not 1 <= fiscal_year_start_month <= 12:
        raise ValueError(f"fiscal_year_start_month must be 1..12, not {fiscal_year_start_month}")
    texts = (
        _answer(traits.get("purchase_timeline")),
        _answer(traits.get("budget")),
        _answer(traits.get("authority")),
        _answer(traits.get("need")),
    )
    if memo is None:
        return _qualify(*texts, as_of=as_of, fy_start=fiscal_year_start_month)
    key = (*texts, as_of, fiscal_year_start_month)
    found = memo.get(key)
    if found is None:
        found = _qualify(*texts, as_of=as_of, fy_start=fiscal_year_start_month)
        remember(memo, key, found)
    return found


def _qualify(
    timeline_text: str | None,
    budget_text: str | None,
    authority_text: str | None,
    need_text: str | None,
    *,
    as_of: date,
    fy_start: int,
) -> Qualification:
    return Qualification(
        timeline=(
            _timeline(timeline_text, as_of=as_of, fy_start=fy_start)
            if timeline_text is not None
            else "unknown"
        ),
        timeline_text=timeline_text,
        budget=_pick(budget_text, _BUDGET_RULES, "unknown"),
        budget_text=budget_text,
        authority=_pick(authority_text, _AUTHORITY_RULES, "unknown"),
        authority_text=authority_text,
        need=_pick(need_text, _NEED_RULES, "unknown"),
        need_text=need_text,
    )


def _answer(value: TraitValue) -> str | None:
    """The answer as text, as it was given; checkboxes read as JSON does (true/false)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    text = str(value).strip()
    return text or None


# --- Text: one spelling for the many ways the same answer is typed. ---

_KANJI_DIGITS = {"一": 1, "二": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8, "九": 9}
_KANJI_NUMBER = re.compile(r"[一二三四五六七八九十]+(?=\s*(?:[かカヵケヶ箇]?月|年|週|日|四半期))")
_COUNTER = re.compile(r"(?<=\d)\s*[かカヵケヶ箇个]\s*月")
_EN_NUMBERS = {
    "a": 1,
    "an": 1,
    "one": 1,
    "two": 2,
    "three": 3,
    "four": 4,
    "five": 5,
    "six": 6,
    "seven": 7,
    "eight": 8,
    "nine": 9,
    "ten": 10,
    "eleven": 11,
    "twelve": 12,
    "eighteen": 18,
    "couple of": 2,
    "a couple of": 2,
}
_EN_NUMBER = re.compile(
    r"\b(" + "|".join(sorted(_EN_NUMBERS, key=len, reverse=True)) + r")\s+"
    r"(?=(?:years?|months?|weeks?|quarters?|days?)\b)"
)
_HALF_YEARS = (
    (re.compile(r"(\d+)年半"), lambda m: f"{int(m[1]) * 12 + 6}ヶ月"),
    (re.compile(r"半年"), lambda m: "6ヶ月"),
    (re.compile(r"\b1 year and a half\b|\b1 and a half years?\b"), lambda m: "18 months"),
    (re.compile(r"\bhalf (?:a )?year\b|\b6 mos?\b"), lambda m: "6 months"),
)


def _canon(text: str) -> str:
    """NFKC (full-width to ASCII), casefolded, numbers as digits, ヶ月 for every counter."""
    out = unicodedata.normalize("NFKC", text).casefold().replace("_", " ")
    out = _KANJI_NUMBER.sub(lambda m: str(_kanji_int(m[0])), out)
    out = _COUNTER.sub("ヶ月", out)
    out = _EN_NUMBER.sub(lambda m: f"{_EN_NUMBERS[m[1]]} ", out)
    for pattern, replace in _HALF_YEARS:
        out = pattern.sub(replace, out)
    return " ".join(out.split())


def _kanji_int(numeral: str) -> int:
    tens, ten, ones = numeral.partition("十")
    if not ten:
        return int("".join(str(_KANJI_DIGITS[c]) for c in numeral))
    return _KANJI_DIGITS.get(tens, 1) * 10 + _KANJI_DIGITS.get(ones, 0)


def _any(*patterns: str) -> re.Pattern[str]:
    return re.compile("|".join(f"(?:{p})" for p in patterns))


# --- Timeline ---

# Answers that say there is no purchase plan; they win over any date in the same answer.
_NO_PLAN = _any(
    r"未定",
    r"予定(?:は|が)?(?:なし|無し|ない|無い|ありません)",
    r"決まって(?:い)?(?:ない|ません)",
    r"決めて(?:い)?(?:ない|ません)",
    r"(?:わから|分から|判ら)(?:ない|ず)",
    r"不明",
    r"特に(?:なし|無し|ない)",
    r"^(?:なし|無し|ない|none|no|n/?a|never|nope)$",
    r"\bno (?:set |specific |fixed |firm |current |immediate )?"
    r"(?:timeline|time ?frame|plans?|date|deadline|project)\b",
    r"\bnot (?:sure|decided|yet decided|determined|planned|now|planning|buying|looking)\b",
    r"\b(?:tbd|tbc|undecided|unsure|no idea)\b",
    r"\b(?:don'?t|do not) know\b",
    r"\bjust (?:researching|looking|browsing|exploring|curious|learning)\b",
)
# Still considering, with no date: only when nothing in the answer reads as a date.
_CONSIDERING = _any(
    r"検討中",
    r"情報収集",
    r"様子見",
    r"\b(?:researching|exploring|evaluating|considering|browsing|learning)\b",
)
_NOW = _any(
    r"\b(?:asap|immediately|immediate|right away|right now|now|urgent(?:ly)?)\b",
    r"\bas soon as possible\b",
    r"すぐ",
    r"至急",
    r"早急",
    r"即(?:時|座|日)?",
    r"直ちに",
    r"急ぎ",
    r"(?:できる|出来る|なる)(?:だけ|べく)早",
)
# "Later than what follows": more than 6 months, 1年以上, 12+ months, 来年以降.
_LATER_BEFORE = re.compile(
    r"(?:\bmore than|\bover|\bbeyond|\bafter|\blater than|\blonger than|\bgreater than|>)\s*$"
)
_LATER_AFTER = re.compile(
    r"^\s*(?:以降|以上|超|より(?:後|先)|\+|plus\b"
    r"|or (?:later|more|longer|beyond)\b|and (?:up|beyond|later)\b)"
)

_UNIT_MONTHS = r"ヶ月(?:間)?|months?\b|mos?\b|mths?\b"
_UNIT_YEARS = r"年(?:間)?(?!度)|years?\b|yrs?\b"
_UNIT_WEEKS = r"週(?:間)?|weeks?\b|wks?\b"
_UNIT_DAYS = r"日(?:間)?|days?\b"
_UNIT_QUARTERS = r"quarters?\b"

_MONTH_NAMES = {
    "jan": 1,
    "feb": 2,
    "mar": 3,
    "apr": 4,
    "may": 5,
    "jun": 6,
    "jul": 7,
    "aug": 8,
    "sep": 9,
    "oct": 10,
    "nov": 11,
    "dec": 12,
}

Resolver = Callable[[re.Match[str], date, int], date | None]
B = TypeVar("B", bound=str)


def _full_date(m: re.Match[str], as_of: date, fy_start: int) -> date | None:
    year = int(m["y"]) if m["y"] else None
    month, day = int(m["m"]), int(m["d"])
    if not 1 <= month <= 12 or not 1 <= day <= calendar.monthrange(year or 2000, month)[1]:
        return None
    if year is None:
        year = as_of.year if (month, day) >= (as_of.month, as_of.day) else as_of.year + 1
    return date(year, month, day)


def _month(m: re.Match[str], as_of: date, fy_start: int) -> date | None:
    g = m.groupdict()
    month = int(g["m"]) if g.get("m") else _MONTH_NAMES[g["name"][:3]]
    if not 1 <= month <= 12:
        return None
    year = int(g["y"]) if g.get("y") else as_of.year + (month < as_of.month)
    return _month_end(year * 12 + month - 1)


def _english_month(m: re.Match[str], as_of: date, fy_start: int) -> date | None:
    # "may" is a month only with a year or after by/in/until/...: "we may buy" is not May.
    if m["name"].startswith("may") and not (m["y"] or m["prep"]):
        return None
    return _month(m, as_of, fy_start)


def _year(m: re.Match[str], as_of: date, fy_start: int) -> date:
    year = int(m["y"])
    if m["fiscal"]:  # 2026年度: the fiscal year that starts in 2026
        return _month_end(year * 12 + fy_start - 1 + 11)
    return date(year, 12, 31)


def _fiscal_period(m: re.Match[str], as_of: date, fy_start: int) -> date:
    """The end of quarter Qn (or half Hn, 上期/下期) of the fiscal year: the next one to end."""
    g = m.groupdict()
    half = g.get("half")
    length = 6 if half else 3
    n = int({"上": "1", "下": "2"}.get(half, half) if half else g["q"])
    if g.get("y"):  # Q1 2026: of the fiscal year that starts in 2026 (2026年度)
        return _month_end(int(g["y"]) * 12 + fy_start - 1 + n * length - 1)
    end = _month_end(_fy_start_index(as_of, fy_start) + n * length - 1)
    return end if end >= as_of else _month_end(_month_index(end) + 12)


def _duration(m: re.Match[str], as_of: date, fy_start: int) -> date:
    n = int(m["n"])
    if m["months"]:
        return _add_months(as_of, n)
    if m["years"]:
        return _add_months(as_of, 12 * n)
    if m["quarters"]:
        return _add_months(as_of, 3 * n)
    if m["weeks"]:
        return as_of + timedelta(weeks=n)
    return as_of + timedelta(days=n)


def _relative(offset: Callable[[date, int], int]) -> Resolver:
    """A named period whose last month is `offset(as_of, fy_start)` (year * 12 + month - 1)."""
    return lambda m, as_of, fy_start: _month_end(offset(as_of, fy_start))


def _quarter_end(as_of: date, fy_start: int) -> int:
    into = (_month_index(as_of) - _fy_start_index(as_of, fy_start)) // 3 * 3
    return _fy_start_index(as_of, fy_start) + into + 2


_YEAR = r"(?P<y>20\d{2})"
_EN_MONTH = (
    r"(?P<name>jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?"
    r"|sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)"
)
_DURATION = (
    r"(?<![\d.])(?P<n>\d{1,3})\s*(?P<plus>\+)?\s*"
    rf"(?:(?P<months>{_UNIT_MONTHS})|(?P<years>{_UNIT_YEARS})|(?P<quarters>{_UNIT_QUARTERS})"
    rf"|(?P<weeks>{_UNIT_WEEKS})|(?P<days>{_UNIT_DAYS}))"
)

# (pattern, resolver) in order; each rule's matches are blanked out before the next rule
# reads the text, so 「2026年3月」 is March 2026 and not also the year 2026.
_WHEN_RULES: tuple[tuple[re.Pattern[str], Resolver], ...] = (
    (
        re.compile(rf"(?:{_YEAR}\s*年\s*)?(?P<m>\d{{1,2}})\s*月\s*(?P<d>\d{{1,2}})\s*日"),
        _full_date,
    ),
    (
        re.compile(rf"(?<!\d){_YEAR}[-/.](?P<m>\d{{1,2}})[-/.](?P<d>\d{{1,2}})(?!\d)"),
        _full_date,
    ),
    (re.compile(rf"(?:{_YEAR}\s*年\s*)?(?<!\d)(?P<m>\d{{1,2}})\s*月(?!\s*間)"), _month),
    (re.compile(rf"(?<!\d){_YEAR}[-/.](?P<m>\d{{1,2}})(?![-/.\d])"), _month),
    (
        re.compile(
            r"(?P<prep>\b(?:by|in|until|till|before|end of|around|during|early|mid|late)\s+)?"
            rf"\b{_EN_MONTH}\b\.?(?:\s*,?\s*{_YEAR})?"
        ),
        _english_month,
    ),
    (
        re.compile(rf"{_YEAR}\s*(?:年度?\s*)?(?:第\s*)?(?P<q>[1-4])\s*(?:q\b|四半期)"),
        _fiscal_period,
    ),
    (re.compile(rf"(?<!\d){_YEAR}\s*[-/]?\s*q(?P<q>[1-4])\b"), _fiscal_period),
    (
        re.compile(rf"\bq(?P<q>[1-4])\b(?:\s*[-/]?\s*(?:of\s*)?(?:fy\s*)?'?{_YEAR})?"),
        _fiscal_period,
    ),
    (re.compile(r"(?<!\d)(?P<q>[1-4])\s*(?:q\b|四半期)"), _fiscal_period),
    (re.compile(rf"\bh(?P<half>[12])\b(?:\s*[-/]?\s*{_YEAR})?"), _fiscal_period),
    (re.compile(rf"(?:{_YEAR}\s*年度?\s*)?(?P<half>上|下)半?期"), _fiscal_period),
    (re.compile(rf"(?<![\da-z]){_YEAR}(?!\d)\s*(?P<fiscal>年度)?"), _year),
    (re.compile(_DURATION), _duration),
    (
        _any(
            r"\bnext (?:fiscal|financial) year\b",
            r"\bnext fy\b",
            r"来期",
            r"来年度",
            r"次年度",
            r"翌年度",
            r"次期",
        ),
        _relative(lambda d, fy: _fy_start_index(d, fy) + 23),
    ),
    (
        _any(
            r"\b(?:this|current) (?:fiscal|financial) year\b",
            r"\bthis fy\b",
            r"\bend of (?:the )?fiscal year\b",
            r"今期",
            r"今年度",
            r"本年度",
            r"当期",
            r"当年度",
            r"年度内",
            r"年度末",
            r"期内",
            r"期末",
        ),
        _relative(lambda d, fy: _fy_start_index(d, fy) + 11),
    ),
    (
        _any(r"\bnext quarter\b", r"来四半期", r"次の?四半期", r"翌四半期"),
        _relative(lambda d, fy: _quarter_end(d, fy) + 3),
    ),
    (
        _any(
            r"\b(?:this|current) quarter\b",
            r"\bend of (?:the )?quarter\b",
            r"\beoq\b",
            r"今四半期",
            r"当四半期",
            r"本四半期",
            r"この四半期",
            r"四半期(?:内|末)",
        ),
        _relative(_quarter_end),
    ),
    (_any(r"\bnext month\b", r"来月", r"翌月"), _relative(lambda d, fy: _month_index(d) + 1)),
    (
        _any(
            r"\bthis month\b",
            r"\bend of (?:the )?month\b",
            r"\beom\b",
            r"今月",
            r"当月",
            r"月内",
            r"月末",
        ),
        _relative(lambda d, fy: _month_index(d)),
    ),
    (
        _any(r"\bnext (?:calendar )?year\b", r"来年", r"翌年"),
        _relative(lambda d, fy: d.year * 12 + 23),
    ),
    (
        _any(
            r"\bthis (?:calendar )?year\b",
            r"\bend of (?:the )?year\b",
            r"\byear[- ]end\b",
            r"\beoy\b",
            r"\bwithin the year\b",
            r"今年",
            r"本年",
            r"年内",
            r"年末",
        ),
        _relative(lambda d, fy: d.year * 12 + 11),
    ),
)
_WINDOWS: tuple[tuple[int, Timeline], ...] = (
    (1, "within_1_month"),
    (3, "within_3_months"),
    (6, "within_6_months"),
    (12, "within_12_months"),
)


def _timeline(text: str, *, as_of: date, fy_start: int) -> Timeline:
    said = _canon(text)
    if _NO_PLAN.search(said):
        return "no_plan"
    deadlines: list[date] = []
    try:
        for pattern, resolve in _WHEN_RULES:
            for m in pattern.finditer(said):
                end = resolve(m, as_of, fy_start)
                if end is None:
                    continue
                if m.groupdict().get("plus") or _is_later(said, m):
                    end += timedelta(days=1)
                deadlines.append(end)
            said = pattern.sub(lambda m: " " * len(m[0]), said)
        if deadlines:
            latest = max(deadlines)
            # A date in the past is no deadline.
            return _window(as_of, latest) if latest >= as_of else "unknown"
    except OverflowError:
        # The deadline, or a window to place it in, is past the calendar's last day (an
        # event dated in year 9999): it cannot be placed.
        return "unknown"
    if _NOW.search(said):
        return "within_1_month"
    if _CONSIDERING.search(said):
        return "no_plan"
    return "unknown"


def _is_later(said: str, m: re.Match[str]) -> bool:
    return bool(_LATER_BEFORE.search(said, 0, m.start()) or _LATER_AFTER.match(said[m.end() :]))


def _window(as_of: date, deadline: date) -> Timeline:
    for months, bucket in _WINDOWS:
        if deadline <= _add_months(as_of, months):
            return bucket
    return "over_12_months"


def _month_index(day: date) -> int:
    return day.year * 12 + day.month - 1


def _month_end(index: int) -> date:
    year, month0 = divmod(index, 12)
    _check_year(year)
    return date(year, month0 + 1, calendar.monthrange(year, month0 + 1)[1])


def _add_months(day: date, months: int) -> date:
    year, month0 = divmod(_month_index(day) + months, 12)
    _check_year(year)
    return date(year, month0 + 1, min(day.day, calendar.monthrange(year, month0 + 1)[1]))


def _check_year(year: int) -> None:
    """A year `date` cannot hold raises OverflowError, as date arithmetic past it does."""
    if not date.min.year <= year <= date.max.year:
        raise OverflowError(f"year {year} is out of range")


def _fy_start_index(day: date, fy_start: int) -> int:
    """The month index of the first month of the fiscal year `day` falls in."""
    return _month_index(day) - (day.month - fy_start) % 12


# --- Budget, authority, need: first rule that matches wins (most cautious first). ---

_BUDGET_RULES: tuple[tuple[re.Pattern[str], Budget], ...] = (
    (
        _any(
            r"^(?:no|none|nil|n/?a|zero|0|false|なし|無し|ない|無い|ゼロ|未定|いいえ)$",
            r"\bno (?:budget|funds?|funding|money)\b",
            r"\b(?:don'?t|do not|doesn'?t|does not) have (?:a |any )?(?:budget|funds?|funding)\b",
            r"\bnot (?:approved|budgeted|funded)\b",
            r"\b(?:unbudgeted|unfunded)\b",
            r"\bbudget (?:is )?(?:none|zero|rejected|denied)\b",
            r"予算(?:は|が)?(?:なし|無し|ない|無い|ありません|ゼロ|0|未定|未確保)",
            r"予算外",
        ),
        "none",
    ),
    (
        _any(
            r"\b(?:planned|planning|plan to|pending|awaiting|requested|requesting|proposed)\b",
            r"\b(?:in progress|forecast(?:ed)?|expected|tentative)\b",
            r"\bnot yet (?:approved|allocated|secured|funded|budgeted)\b",
            r"\bbeing (?:allocated|approved|requested|prepared|planned|discussed)\b",
            r"\b(?:next|upcoming|following) (?:year|quarter|fiscal year|fy)'?s? budget\b",
            r"\bin (?:the )?(?:next|upcoming) budget\b",
            r"\bto be (?:allocated|approved|secured|budgeted)\b",
            r"予定",
            r"申請",
            r"予算取り",
            r"予算化(?!済)",
            r"(?:来期|来年度|次年度|次期)の?予算",
            r"予算(?:を|は)?検討",
            r"稟議",
            r"承認待ち",
            r"検討中",
            r"確保(?:中|見込)",
            r"見込み",
        ),
        "planned",
    ),
    (
        _any(
            r"^(?:yes|y|true|あり|有り?|ある|はい|済み?)$",
            r"\b(?:approved|allocated|secured|in place|available|funded|committed|confirmed)\b",
            r"\bbudgeted\b",
            r"\bhave (?:a |the |an approved )?budget\b",
            r"\bbudget (?:is )?(?:set|ready|ok|yes)\b",
            r"確保済",
            r"確保して",
            r"承認済",
            r"承認され",
            r"予算(?:は|が)?(?:あり|有り?|ある|あります|確保)",
            r"計上済",
            r"決定済",
            r"予算化済",
        ),
        "approved",
    ),
)
_AUTHORITY_RULES: tuple[tuple[re.Pattern[str], Authority], ...] = (
    # "Not the decision maker": influencer or user, the answer does not say which.
    (
        _any(
            r"^(?:no|false|いいえ)$",
            r"\bnot (?:the |a |an )?(?:final |sole )?"
            r"(?:decision[- ]?maker|approver|decider|budget (?:holder|owner)|signer)\b",
            r"(?:決裁|決定|承認)(?:者|権)(?:では|じゃ)?(?:は|が)?(?:ない|なし|無し|ありません)",
        ),
        "unknown",
    ),
    (
        _any(
            r"^(?:yes|true|はい)$",
            r"\bdecision[- ]?makers?\b",
            r"\b(?:final|ultimate) (?:say|decision|approver|authority|sign[- ]?off)\b",
            r"\b(?:i|we) (?:make the decision|decide|approve|sign off)\b",
            r"\bbudget (?:holder|owner)\b",
            r"\b(?:approver|decider|signatory)\b",
            r"\bsign[- ]?off\b",
            r"\b(?:ceo|cfo|cto|cio|coo|founder|owner|president)\b",
            r"決裁",
            r"決定権",
            r"意思決定",
            r"最終(?:決定|判断|承認)",
            r"承認者",
            r"代表",
            r"社長",
            r"経営者",
            r"役員",
        ),
        "decision_maker",
    ),
    (
        _any(
            r"\binfluenc",
            r"\brecommend",
            r"\bevaluat",
            r"\binvolved\b",
            r"\bpart of (?:the )?(?:decision|buying|evaluation|selection)",
            r"\b(?:champion|stakeholder|committee|gatekeeper)\b",
            r"\b(?:selection|technical|evaluation) (?:team|lead)\b",
            r"選定",
            r"推薦",
            r"影響",
            r"提案",
            r"起案",
            r"稟議",
            r"検討(?:者|メンバー|担当|責任者)",
            r"関与",
            r"推進",
        ),
        "influencer",
    ),
    (
        _any(
            r"\b(?:end[- ]?)?users?\b",
            r"\b(?:staff|researcher|practitioner|employee|individual contributor)\b",
            r"担当",
            r"利用者",
            r"使用者",
            r"ユーザ",
            r"現場",
            r"社員",
            r"スタッフ",
            r"情報収集",
        ),
        "user",
    ),
)
_NEED_RULES: tuple[tuple[re.Pattern[str], Need], ...] = (
    (
        _any(
            r"^(?:no|none|nil|n/?a|false|なし|無し|ない|無い|いいえ)$",
            r"\bno (?:immediate |current |real |clear )?"
            r"(?:need|interest|requirement|use case|pain|problem)s?\b",
            r"\bnot (?:interested|needed|required|a priority|relevant|a fit)\b",
            r"\b(?:don'?t|do not|doesn'?t|does not) (?:need|have a need)\b",
            r"不要",
            r"(?:必要|ニーズ|興味|関心|課題)(?:は|が|性)?(?:ない|なし|無し|無い|ありません|低い)",
        ),
        "none",
    ),
    (
        _any(
            r"\b(?:explor|research|evaluat|compar|learn|brows|possibl|interest)",
            r"\b(?:looking|curious|information|considering|maybe|potential)\b",
            r"\bnice[- ]to[- ]have\b",
            r"検討",
            r"情報収集",
            r"比較",
            r"調査",
            r"興味",
            r"関心",
            r"様子見",
            r"勉強",
            r"将来",
        ),
        "exploring",
    ),
    (
        _any(
            r"^(?:yes|y|true|はい|あり|有り?|ある)$",
            r"\b(?:confirmed|needs?|required?|requirements?|critical|urgent|pain|priority)\b",
            r"\b(?:problems?|challenges?|clear|defined|identified)\b",
            r"\bmust[- ]have\b",
            r"\b(?:replac|mandat)",
            r"必要",
            r"必須",
            r"課題",
            r"ニーズ",
            r"明確",
            r"急務",
            r"導入決定",
            r"困って",
            r"置き?換え",
            r"リプレース",
            r"刷新",
            r"(?:解決|改善)したい",
        ),
        "confirmed",
    ),
)


def _pick(text: str | None, rules: tuple[tuple[re.Pattern[str], B], ...], unknown: B) -> B:
    if text is None:
        return unknown
    said = _canon(text)
    for pattern, bucket in rules:
        if pattern.search(said):
            return bucket
    return unknown
