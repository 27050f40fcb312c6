"""The `routing:` section of the lead model: teams, rules, rep schedules and capacity caps."""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, date, datetime, time, timedelta
from functools import cached_property
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

__all__ = [
    "DAYS",
    "RESERVED_RULE_IDS",
    "Absence",
    "Day",
    "Member",
    "Routing",
    "RoutingRule",
    "Schedule",
    "ScoreAtLeast",
    "Team",
    "When",
    "validate_routing",
    "wall_instant",
]

Id = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_.-]{0,63}$")]
Day = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
#: Monday first, as `date.weekday()` counts.
DAYS: tuple[Day, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
#: Names the routing decision itself uses for its `rule`; a routing rule cannot take them.
RESERVED_RULE_IDS = frozenset(
    {"assigned", "account_owner", "account_domain", "territory_round_robin", "fallback"}
)
_RANGE = re.compile(r"^(\d\d):(\d\d)-(\d\d):(\d\d)$")
_DAY_MIN = 24 * 60


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def _country_codes(codes: Any) -> Any:
    """YAML 1.1 reads an unquoted NO (Norway) as false: take it back as the country code."""
    if not isinstance(codes, list | tuple):
        return codes
    out = []
    for code in codes:
        if code is True:
            raise ValueError("a country code read as true: quote it")
        out.append("NO" if code is False else code)
    return out


def _context(info: ValidationInfo, key: str) -> frozenset[str] | None:
    """Ids of the enclosing lead model (reps, scores), when it passed them in."""
    found = (info.context or {}).get(key)
    return None if found is None else frozenset(found)


class Member(_Strict):
    """A rep in a team; `weight` is its share of the team's leads (2 gets twice as many as 1)."""

    rep: str
    weight: int = Field(default=1, ge=1, le=100)

    @field_validator("rep")
    @classmethod
    def _is_a_rep(cls, rep: str, info: ValidationInfo) -> str:
        reps = _context(info, "reps")
        if reps is not None and rep not in reps:
            raise ValueError(f"'{rep}' is not one of the reps")
        return rep


class Team(_Strict):
    """Reps that share leads by weighted round-robin; `manager` (a rep) hears escalations."""

    id: Id
    name: str | None = None
    manager: str | None = None
    members: tuple[Member, ...] = Field(min_length=1)

    @field_validator("manager")
    @classmethod
    def _manager_is_a_rep(cls, manager: str | None, info: ValidationInfo) -> str | None:
        reps = _context(info, "reps")
        if manager is not None and reps is not None and manager not in reps:
            raise ValueError(f"'{manager}' is not one of the reps")
        return manager

    @field_validator("members")
    @classmethod
    def _once_each(cls, members: tuple[Member, ...]) -> tuple[Member, ...]:
        seen: set[str] = set()
        for member in members:
            if member.rep in seen:
                raise ValueError(f"rep '{member.rep}' is in the team twice")
            seen.add(member.rep)
        return members


class ScoreAtLeast(_Strict):
    """Product interest: the named score (`id`) is at least `min` points."""

    id: str
    min: int = Field(gt=0)

    @field_validator("id")
    @classmethod
    def _is_a_score(cls, score: str, info: ValidationInfo) -> str:
        scores = _context(info, "scores")
        if scores is not None and score not in scores:
            raise ValueError(f"'{score}' is not one of the scores")
        return score


class When(_Strict):
    """What a lead must be for a rule to match: every condition given must hold.

    `countries` (ISO codes) and `regions` (names from `routing.regions`) read the lead's
    `country`; `min_employees`/`max_employees` (inclusive) its `employees`; `industries`
    (case-insensitive) its `industry`; `score` one of its named scores. Nothing given
    matches every lead.
    """

    countries: tuple[str, ...] = ()
    regions: tuple[str, ...] = ()
    min_employees: int | None = Field(default=None, ge=0)
    max_employees: int | None = Field(default=None, ge=0)
    industries: tuple[str, ...] = ()
    score: ScoreAtLeast | None = None

    @field_validator("countries", mode="before")
    @classmethod
    def _norway(cls, countries: Any) -> Any:
        return _country_codes(countries)

    @field_validator("countries")
    @classmethod
    def _upper(cls, countries: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(c.strip().upper() for c in countries)

    @field_validator("industries")
    @classmethod
    def _lower(cls, industries: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(i.strip().lower() for i in industries)

    @model_validator(mode="after")
    def _band(self) -> When:
        low, high = self.min_employees, self.max_employees
        if low is not None and high is not None and low > high:
            raise ValueError("min_employees must not be above max_employees")
        return self


class RoutingRule(_Strict):
    """Leads matching `when` go to `team`; rules are tried in order, the first match wins."""

    id: Id
    team: str
    when: When = When()

    @field_validator("id")
    @classmethod
    def _not_reserved(cls, rule_id: str) -> str:
        if rule_id in RESERVED_RULE_IDS:
            raise ValueError(f"'{rule_id}' is reserved: name the rule something else")
        return rule_id


class Absence(_Strict):
    """Out of office from `from` to `to`. Dates are whole days in the rep's time zone (`to`
    included); a date-time without an offset is the rep's local time."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    from_: date | datetime = Field(alias="from")
    to: date | datetime
    note: str | None = None

    def interval(self, zone: ZoneInfo) -> tuple[datetime, datetime]:
        """[start, end) in UTC."""
        start = _instant(self.from_, zone, end_of_day=False)
        return start, _instant(self.to, zone, end_of_day=True)

    @property
    def until_text(self) -> str:
        """When the absence ends, as written: a date (the last day off) or a date-time."""
        if isinstance(self.to, datetime):
            return self.to.isoformat(sep=" ", timespec="minutes")
        return self.to.isoformat()


def _instant(at: date | datetime, zone: ZoneInfo, *, end_of_day: bool) -> datetime:
    if isinstance(at, datetime):
        if at.tzinfo is None:
            return wall_instant(at, zone)
        return at.astimezone(UTC)
    day = at + timedelta(days=1) if end_of_day else at
    return wall_instant(datetime.combine(day, time()), zone)


def wall_instant(wall: datetime, zone: ZoneInfo) -> datetime:
    """The first UTC instant at which clocks in `zone` show `wall` (naive) or later.

    An ambiguous wall time (clocks going back) is its first occurrence; one that does not
    exist (clocks going forward) is the instant the clocks jump past it.
    """
    first = wall.replace(tzinfo=zone, fold=0).astimezone(UTC)
    if first.astimezone(zone).replace(tzinfo=None) == wall:
        return first
    # In a gap: fold=0 reads the wall time with the offset before the jump (an instant
    # after it), fold=1 with the one after (an instant before it). Find the jump.
    low = wall.replace(tzinfo=zone, fold=1).astimezone(UTC)
    high = first
    while high - low > timedelta(seconds=1):
        mid = low + (high - low) / 2
        if mid.astimezone(zone).replace(tzinfo=None) >= wall:
            high = mid
        else:
            low = mid
    return high.replace(microsecond=0)


def _default_hours() -> dict[Day, tuple[str, ...]]:
    return {day: ("09:00-18:00",) for day in DAYS[:5]}


class Schedule(_Strict):
    """When a rep takes new leads, and how many.

    `hours` lists working time per weekday in the rep's `timezone` (days left out are
    off; the default is Monday to Friday 09:00-18:00); `holidays` are local dates off;
    `out_of_office` are absences. `daily_cap`/`weekly_cap` bound the leads routed to the
    rep per local day and per ISO week (Monday to Sunday, local).
    """

    timezone: str = "UTC"
    hours: dict[Day, tuple[str, ...]] = Field(default_factory=_default_hours)
    holidays: tuple[date, ...] = ()
    out_of_office: tuple[Absence, ...] = ()
    daily_cap: int | None = Field(default=None, ge=1)
    weekly_cap: int | None = Field(default=None, ge=1)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, name: str) -> str:
        try:
            ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown time zone '{name}' (use an IANA name like Europe/Berlin)"
            ) from None
        return name

    @field_validator("hours")
    @classmethod
    def _ranges_parse(cls, hours: dict[Day, tuple[str, ...]]) -> dict[Day, tuple[str, ...]]:
        for day, ranges in hours.items():
            for text in ranges:
                _parse_range(day, text)
        if not any(hours.values()):
            raise ValueError("a schedule needs some working hours")
        return hours

    @model_validator(mode="after")
    def _absences_forward(self) -> Schedule:
        for absence in self.out_of_office:
            start, end = absence.interval(self.zone)
            if end <= start:
                raise ValueError(
                    f"out_of_office from {absence.from_} to {absence.to}: 'to' must be after 'from'"
                )
        return self

    @cached_property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @cached_property
    def ranges(self) -> tuple[tuple[tuple[int, int], ...], ...]:
        """Working (start, end) minutes of the local day, per weekday (Monday first)."""
        return tuple(
            tuple(sorted(_parse_range(day, text) for text in self.hours.get(day, ())))
            for day in DAYS
        )

    @cached_property
    def absences(self) -> tuple[tuple[datetime, datetime, Absence], ...]:
        """Out-of-office periods as [start, end) in UTC, with what the file said."""
        return tuple((*a.interval(self.zone), a) for a in self.out_of_office)

    @cached_property
    def holiday_set(self) -> frozenset[date]:
        return frozenset(self.holidays)

    @property
    def hours_text(self) -> str:
        """The weekly hours in one line: `mon-fri 09:00-18:00` style runs of equal days."""
        runs: list[tuple[int, int, tuple[str, ...]]] = []
        for index, day in enumerate(DAYS):
            ranges = self.hours.get(day, ())
            if runs and runs[-1][2] == ranges and runs[-1][1] == index - 1:
                runs[-1] = (runs[-1][0], index, ranges)
            else:
                runs.append((index, index, ranges))
        parts = []
        for first, last, ranges in runs:
            if not ranges:
                continue
            days = DAYS[first] if first == last else f"{DAYS[first]}-{DAYS[last]}"
            parts.append(f"{days} {', '.join(ranges)}")
        return "; ".join(parts)


def _parse_range(day: str, text: str) -> tuple[int, int]:
    found = _RANGE.match(text)
    if found is None:
        raise ValueError(f"{day}: '{text}' is not a range like 09:00-18:00")
    h1, m1, h2, m2 = (int(part) for part in found.groups())
    if h1 > 23 or m1 > 59 or m2 > 59 or h2 > 24 or (h2 == 24 and m2 != 0):
        raise ValueError(f"{day}: '{text}' is not a time of day (00:00 to 24:00)")
    start, end = h1 * 60 + m1, h2 * 60 + m2
    if end <= start:
        raise ValueError(
            f"{day}: '{text}' ends before it starts (split a night shift: "
            "'22:00-24:00' on one day, '00:00-06:00' on the next)"
        )
    return start, min(end, _DAY_MIN)


class Routing(_Strict):
    """Who gets a lead: the CRM's account owner, then the first rule that matches, whose
    team shares its leads by weighted round-robin among members who can take them now.

    `regions` names groups of countries for rules. `schedules` (by rep id) give time zone,
    working hours, days off and caps; a rep without one is always available. With
    `respect_working_hours: false` only absences, holidays and caps make a rep unavailable.
    """

    regions: dict[str, tuple[str, ...]] = {}
    teams: tuple[Team, ...] = Field(min_length=1)
    rules: tuple[RoutingRule, ...] = ()
    schedules: dict[str, Schedule] = {}
    respect_working_hours: bool = True

    @field_validator("regions", mode="before")
    @classmethod
    def _norway(cls, regions: Any) -> Any:
        if not isinstance(regions, dict):
            return regions
        return {name: _country_codes(codes) for name, codes in regions.items()}

    @field_validator("regions")
    @classmethod
    def _upper(cls, regions: dict[str, tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
        return {name: tuple(c.strip().upper() for c in codes) for name, codes in regions.items()}

    @field_validator("teams")
    @classmethod
    def _unique_teams(cls, teams: tuple[Team, ...]) -> tuple[Team, ...]:
        _unique("team id", [t.id for t in teams])
        return teams

    @field_validator("rules")
    @classmethod
    def _rules_refer(
        cls, rules: tuple[RoutingRule, ...], info: ValidationInfo
    ) -> tuple[RoutingRule, ...]:
        _unique("routing rule id", [r.id for r in rules])
        teams = info.data.get("teams")
        regions = info.data.get("regions", {})
        for rule in rules:
            if teams is not None and rule.team not in {t.id for t in teams}:
                raise ValueError(f"rule '{rule.id}': team '{rule.team}' is not one of the teams")
            for region in rule.when.regions:
                if region not in regions:
                    raise ValueError(
                        f"rule '{rule.id}': region '{region}' is not one of routing.regions"
                    )
        return rules

    @field_validator("schedules")
    @classmethod
    def _schedules_of_reps(
        cls, schedules: dict[str, Schedule], info: ValidationInfo
    ) -> dict[str, Schedule]:
        reps = _context(info, "reps")
        if reps is not None:
            for rep in schedules:
                if rep not in reps:
                    raise ValueError(f"schedule for '{rep}': not one of the reps")
        return schedules

    @cached_property
    def team_index(self) -> dict[str, Team]:
        return {t.id: t for t in self.teams}


def _unique(what: str, values: list[str]) -> None:
    seen: set[str] = set()
    for value in values:
        if value in seen:
            raise ValueError(f"duplicate {what} '{value}'")
        seen.add(value)


def validate_routing(
    value: Any, *, reps: Iterable[str] | None, scores: Iterable[str] | None
) -> Routing | None:
    """The routing section checked against the model's rep and score ids.

    For the lead model's own validator: errors keep their place in the file (a member that
    is not a rep points at that member's line). `reps`/`scores` None skip that check (the
    model's own list failed validation and says so already).
    """
    if value is None:
        return None
    if isinstance(value, Routing):
        value = value.model_dump(by_alias=True)
    context = {
        "reps": None if reps is None else tuple(reps),
        "scores": None if scores is None else tuple(scores),
    }
    return Routing.model_validate(value, context=context)
