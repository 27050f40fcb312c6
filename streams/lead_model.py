"""The lead model file: the one written lead definition sales and marketing agree on."""

from __future__ import annotations

import re
from fnmatch import translate
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from streams.routing_model import Routing, validate_routing

__all__ = [
    "DEFAULT_MODEL_PATH",
    "GRADES",
    "Accounts",
    "BuyingGroup",
    "Decay",
    "FitRule",
    "Grade",
    "LeadModel",
    "ModelError",
    "Rep",
    "Rule",
    "Score",
    "Sla",
    "SlaPolicy",
    "Territory",
    "Trigger",
    "grade_at_least",
    "load_model",
    "parse_model",
    "remember",
]

DEFAULT_MODEL_PATH = Path(__file__).parent / "demo" / "lead_model.yaml"

RuleId = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_.-]{0,63}$")]
Grade = Literal["A", "B", "C", "D"]
#: Best first.
GRADES: tuple[Grade, ...] = ("A", "B", "C", "D")

_DAY_MS = 86_400_000


def grade_at_least(grade: str, minimum: str) -> bool:
    """True when `grade` is `minimum` or better (A is best)."""
    order: tuple[str, ...] = GRADES
    return order.index(grade) <= order.index(minimum)


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


# --- engagement ------------------------------------------------------------------------


class Rule(_Strict):
    """Engagement points for a track event (exact name) or a page view (path glob).

    Points may be negative (unsubscribes, careers pages, bounced email). Caps limit what a
    rule can add; what they hold back shows as its own line in the breakdown:
    `max_points` (the rule's total since the score last reset), `max_count` (events
    counted), `max_per_day` (events counted per UTC day of event time) and
    `once_per_asset` (each asset once: the `asset` property of a track event, else its
    title or url; a page's path).
    """

    id: RuleId
    event: str | None = None
    page: str | None = None
    points: int = Field(ge=-10_000, le=10_000)
    label: str | None = None
    max_points: int | None = Field(default=None, gt=0)
    max_count: int | None = Field(default=None, gt=0)
    max_per_day: int | None = Field(default=None, gt=0)
    once_per_asset: bool = False

    @model_validator(mode="after")
    def _one_matcher(self) -> Rule:
        if (self.event is None) == (self.page is None):
            raise ValueError("a rule needs exactly one of 'event' or 'page'")
        if self.points == 0:
            raise ValueError("points must not be 0 (delete the rule instead)")
        return self

    @property
    def text(self) -> str:
        return self.label or (self.event if self.event is not None else f"page {self.page}")


class Decay(_Strict):
    """How a score fades without activity, by event time; either, both or neither.

    `half_life_days`: every point halves after that many days. `reset_after_days`: after
    that many days without an event counted by this score, it starts again from zero.
    """

    half_life_days: float | None = Field(default=None, gt=0, le=3650)
    reset_after_days: float | None = Field(default=None, gt=0, le=3650)

    # Cached in the instance: the scoring core reads these for every event of a lead with a
    # score, and a property would be a Python call each time from the compiled core.
    @cached_property
    def half_life_ms(self) -> float | None:
        return None if self.half_life_days is None else self.half_life_days * _DAY_MS

    @cached_property
    def reset_after_ms(self) -> float | None:
        return None if self.reset_after_days is None else self.reset_after_days * _DAY_MS

    @property
    def text(self) -> str:
        parts = []
        if self.half_life_days is not None:
            parts.append(f"half-life {self.half_life_days:g} days")
        if self.reset_after_days is not None:
            parts.append(f"reset after {self.reset_after_days:g} idle days")
        return ", ".join(parts)


class Score(_Strict):
    """One named engagement score (e.g. one per product line) with its own MQL threshold."""

    id: RuleId
    label: str | None = None
    threshold: int = Field(gt=0)
    decay: Decay = Decay()
    rules: tuple[Rule, ...] = Field(min_length=1)


# --- fit -------------------------------------------------------------------------------

#: Traits fit rules can read: the lead's own, plus three derived from its email.
FitTrait = Literal[
    "employees",
    "industry",
    "country",
    "title",
    "company",
    "email_domain",
    "free_mail",
    "competitor",
]


class FitRule(_Strict):
    """Fit points when a trait matches; rules sharing a `group` count only the first match.

    Matchers (one, or none for the boolean traits `free_mail` and `competitor`):
    `min`/`max` for numbers (inclusive), `in` for exact values (case-insensitive),
    `contains` for words inside text (case-insensitive).
    """

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    id: RuleId
    trait: FitTrait
    points: int = Field(ge=-10_000, le=10_000)
    group: str | None = None
    label: str | None = None
    min: float | None = None
    max: float | None = None
    in_: tuple[str, ...] | None = Field(default=None, alias="in", min_length=1)
    contains: tuple[str, ...] | None = Field(default=None, min_length=1)

    @field_validator("in_", "contains")
    @classmethod
    def _lower(cls, words: tuple[str, ...] | None) -> tuple[str, ...] | None:
        return None if words is None else tuple(word.lower() for word in words)

    @model_validator(mode="after")
    def _matcher_fits_trait(self) -> FitRule:
        ranged = self.min is not None or self.max is not None
        given = [
            name
            for name, on in (("min/max", ranged), ("in", self.in_), ("contains", self.contains))
            if on
        ]
        if self.trait in ("free_mail", "competitor"):
            if given:
                raise ValueError(f"'{self.trait}' is true or false: give no matcher")
        elif self.trait == "employees":
            if given != ["min/max"]:
                raise ValueError("'employees' needs 'min' and/or 'max'")
        elif len(given) != 1 or given == ["min/max"]:
            raise ValueError(f"'{self.trait}' needs exactly one of 'in' or 'contains'")
        return self

    @property
    def text(self) -> str:
        if self.label:
            return self.label
        if self.trait in ("free_mail", "competitor"):
            return {"free_mail": "free-mail address", "competitor": "competitor"}[self.trait]
        if self.trait == "employees":
            low = f"{self.min:g}" if self.min is not None else ""
            high = f"{self.max:g}" if self.max is not None else ""
            return f"company size {low}-{high}".rstrip("-")
        words = self.in_ or self.contains or ()
        return f"{self.trait} {'/'.join(words)}"


class Grades(_Strict):
    """The least fit points for each grade; below `C` is `D`."""

    A: int
    B: int
    C: int

    @model_validator(mode="after")
    def _descending(self) -> Grades:
        if not self.A > self.B > self.C:
            raise ValueError("grades must be strictly descending: A > B > C")
        return self

    def grade(self, points: int) -> Grade:
        if points >= self.A:
            return "A"
        if points >= self.B:
            return "B"
        return "C" if points >= self.C else "D"


class Fit(_Strict):
    rules: tuple[FitRule, ...] = ()
    grades: Grades = Grades(A=40, B=20, C=5)
    competitor_domains: tuple[str, ...] = ()
    free_mail_domains: tuple[str, ...] = (
        "gmail.com",
        "googlemail.com",
        "yahoo.com",
        "hotmail.com",
        "outlook.com",
        "live.com",
        "icloud.com",
        "aol.com",
        "proton.me",
        "protonmail.com",
        "gmx.de",
        "web.de",
        "yahoo.co.jp",
    )

    @field_validator("competitor_domains", "free_mail_domains")
    @classmethod
    def _lower(cls, domains: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(d.strip().lower() for d in domains)


class Mql(_Strict):
    """A lead is an MQL when any score reaches its threshold and its fit grade is at least
    `min_grade`. With `recycle_on_decay`, an MQL not yet accepted is recycled when every
    score has fallen under `recycle_below` times its threshold (the margin keeps a lead
    hovering at the threshold from being handed off again and again), or when its grade
    falls under `min_grade`."""

    min_grade: Grade = "C"
    recycle_on_decay: bool = True
    recycle_below: float = Field(default=0.8, gt=0, le=1)


# --- triggers, accounts, reps ----------------------------------------------------------


class Trigger(_Strict):
    """A hot trigger: alert the rep at once when it fires.

    Fires on a track event name or on a page path glob; with `count` > 1, when that many
    matching events fall within `within_days` of event time. After firing, it stays quiet
    for `cooldown_days` for that lead. With `min_grade`, only for leads that fit that well.
    """

    id: RuleId
    event: str | None = None
    page: str | None = None
    count: int = Field(default=1, ge=1, le=100)
    within_days: float = Field(default=7.0, gt=0)
    cooldown_days: float = Field(default=30.0, ge=0)
    min_grade: Grade = "D"
    message: str

    @model_validator(mode="after")
    def _one_matcher(self) -> Trigger:
        if (self.event is None) == (self.page is None):
            raise ValueError("a trigger needs exactly one of 'event' or 'page'")
        return self


class BuyingGroup(_Strict):
    """Alert the account owner when this many distinct contacts of one account are engaged:
    each with a primary score of at least `min_score`, last active within `within_days`."""

    id: RuleId = "buying-group"
    min_contacts: int = Field(default=3, ge=2, le=100)
    min_score: int = Field(default=20, gt=0)
    within_days: float = Field(default=30.0, gt=0)
    cooldown_days: float = Field(default=30.0, ge=0)
    message: str = "has a buying group: {contacts} engaged contacts"


class Accounts(_Strict):
    """Account roll-up: an account (company email domain) scores the sum of its contacts'
    primary scores; `buying_group` is the account-level trigger."""

    enabled: bool = True
    max_contacts: int = Field(default=200, ge=1, le=10_000)
    buying_group: BuyingGroup | None = BuyingGroup()


class SlaPolicy(_Strict):
    """How long a rep has to accept a hand-off of one priority, in minutes from the hand-off:
    remind the rep, then escalate to the manager, then reassign to the next rep (each step
    optional; a reassignment starts the clock again for the new rep). With `working_hours`,
    minutes count only while the rep works, in their time zone (`routing.schedules`; a rep
    without a schedule counts every minute)."""

    remind_after_minutes: float | None = Field(default=None, gt=0, le=60 * 24 * 30)
    escalate_after_minutes: float | None = Field(default=None, gt=0, le=60 * 24 * 30)
    reassign_after_minutes: float | None = Field(default=None, gt=0, le=60 * 24 * 30)
    working_hours: bool = Field(
        default=False,
        description="Count only the rep's working minutes (routing.schedules), not the night.",
    )

    @model_validator(mode="after")
    def _in_order(self) -> SlaPolicy:
        steps = [
            m
            for m in (
                self.remind_after_minutes,
                self.escalate_after_minutes,
                self.reassign_after_minutes,
            )
            if m is not None
        ]
        if steps != sorted(steps):
            raise ValueError("remind, escalate and reassign must come in that order")
        return self


class Sla(_Strict):
    """Hand-off SLA per priority: `hot` (a hot trigger fired) and `mql`. `escalate_to` is
    the manager escalations go to (default: the fallback rep's owner, `fallback_rep`)."""

    hot: SlaPolicy = SlaPolicy(
        remind_after_minutes=3, escalate_after_minutes=5, reassign_after_minutes=15
    )
    mql: SlaPolicy = SlaPolicy(
        remind_after_minutes=30, escalate_after_minutes=60, reassign_after_minutes=240
    )
    escalate_to: str | None = None


class Territory(_Strict):
    """Which leads a rep covers; an empty list or a missing bound matches everything."""

    countries: tuple[str, ...] = ()
    min_employees: int | None = None
    max_employees: int | None = None


class Rep(_Strict):
    id: RuleId
    name: str
    email: str
    territory: Territory = Territory()


class LeadModel(_Strict):
    """The whole lead definition; `version` is stamped on every record it produces.

    The first score is the primary one: it is `score` on every record and what accounts
    sum up.
    """

    version: str = Field(min_length=1, max_length=64)
    name: str = Field(default="default", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    scores: tuple[Score, ...] = Field(min_length=1)
    fit: Fit = Fit()
    mql: Mql = Mql()
    triggers: tuple[Trigger, ...] = ()
    accounts: Accounts = Accounts()
    sla: Sla | None = None
    reps: tuple[Rep, ...] = Field(min_length=1)
    fallback_rep: str
    routing: Routing | None = None  # after reps and scores: its validator reads them

    @field_validator("routing", mode="before")
    @classmethod
    def _routing_names_reps(cls, value: Any, info: ValidationInfo) -> Routing | None:
        reps, scores = info.data.get("reps"), info.data.get("scores")
        return validate_routing(
            value,
            reps=None if reps is None else [r.id for r in reps],
            scores=None if scores is None else [s.id for s in scores],
        )

    @model_validator(mode="after")
    def _consistent(self) -> LeadModel:
        _unique("score id", [s.id for s in self.scores])
        _unique("rule id", [r.id for s in self.scores for r in s.rules])
        _unique("fit rule id", [r.id for r in self.fit.rules])
        _unique("trigger id", [t.id for t in self.triggers])
        _unique("rep id", [r.id for r in self.reps])
        if self.fallback_rep not in {r.id for r in self.reps}:
            raise ValueError(f"fallback_rep '{self.fallback_rep}' is not one of the reps")
        escalate_to = self.sla.escalate_to if self.sla is not None else None
        if escalate_to is not None and escalate_to not in {r.id for r in self.reps}:
            raise ValueError(f"sla.escalate_to '{escalate_to}' is not one of the reps")
        return self

    @property
    def primary(self) -> Score:
        return self.scores[0]

    @property
    def free_mail_domains(self) -> tuple[str, ...]:
        return self.fit.free_mail_domains

    @cached_property
    def index(self) -> _Index:
        # cached_property stores in the instance __dict__: plain attribute speed on the hot
        # path (pydantic private attributes go through __getattr__).
        return _Index(self)

    def rules_for(self, kind: str, name: str) -> tuple[tuple[Score, Rule], ...]:
        """The engagement rules (with their score) an event of `kind` named `name` matches."""
        return self.index.rules_for(kind, name)

    def triggers_for(self, kind: str, name: str) -> tuple[Trigger, ...]:
        return self.index.triggers_for(kind, name)

    def rep(self, rep_id: str) -> Rep | None:
        return self.index.reps.get(rep_id)

    def summary(self) -> str:
        """One line for `model check` and the worker's start-up log."""
        rules = sum(len(s.rules) for s in self.scores)
        scores = ", ".join(f"{s.id} (MQL at {s.threshold})" for s in self.scores)
        g = self.fit.grades
        return (
            f"{self.name} v{self.version}: {len(self.scores)} score(s) [{scores}], "
            f"{rules} engagement rules, {len(self.fit.rules)} fit rules "
            f"(A>={g.A}, B>={g.B}, C>={g.C}; MQL needs fit {self.mql.min_grade} or better), "
            f"{len(self.triggers)} hot triggers, {len(self.reps)} reps "
            f"(fallback {self.fallback_rep})"
        )


class _Index:
    """Lookups compiled from a model, with bounded memo tables (paths repeat a lot)."""

    def __init__(self, model: LeadModel) -> None:
        track: dict[str, list[tuple[Score, Rule]]] = {}
        pages: list[tuple[re.Pattern[str], tuple[Score, Rule]]] = []
        for score in model.scores:
            for rule in score.rules:
                if rule.event is not None:
                    track.setdefault(rule.event, []).append((score, rule))
                else:
                    pages.append((_glob(rule.page), (score, rule)))
        self.track_rules = {name: tuple(found) for name, found in track.items()}
        self.page_rule_globs = tuple(pages)
        self.track_triggers: dict[str, tuple[Trigger, ...]] = {}
        for trigger in model.triggers:
            if trigger.event is not None:
                self.track_triggers[trigger.event] = (
                    *self.track_triggers.get(trigger.event, ()),
                    trigger,
                )
        self.page_triggers = tuple((_glob(t.page), t) for t in model.triggers if t.page)
        self.triggers = {t.id: t for t in model.triggers}
        self.reps = {r.id: r for r in model.reps}
        self.rule_score = {r.id: s.id for s in model.scores for r in s.rules}
        self.rules = {r.id: r for s in model.scores for r in s.rules}
        self.scores = {s.id: s for s in model.scores}
        # What the core reads for every event of a lead with a score, as plain values: the
        # primary score's id, and each score's (id, half-life ms, reset ms) in model order.
        self.primary_id = model.scores[0].id
        self.decays: tuple[tuple[str, float | None, float | None], ...] = tuple(
            (s.id, s.decay.half_life_ms, s.decay.reset_after_ms) for s in model.scores
        )
        self.competitors = frozenset(model.fit.competitor_domains)
        self.free_mail = frozenset(model.fit.free_mail_domains)
        self.fit_memo: dict[tuple[object, ...], Any] = {}
        self.qualify_memo: dict[tuple[object, ...], Any] = {}  # streams.qualify.qualify
        self._page_memo: dict[str, tuple[tuple[Score, Rule], ...]] = {}
        self._page_trigger_memo: dict[str, tuple[Trigger, ...]] = {}
        # Track events some rule or trigger reads, and pages by name (`reads`; the core
        # reads these two itself, streams.leads._read).
        self.track_read = frozenset(self.track_rules) | frozenset(self.track_triggers)
        self.page_read: dict[str, bool] = {}

    def reads(self, kind: str, name: str) -> bool:
        """Whether any rule or trigger reads events of `kind` named `name`: one lookup for
        the question every event asks (most events are read by neither)."""
        if kind == "track":
            return name in self.track_read
        if kind != "page":
            return False
        found = self.page_read.get(name)
        if found is None:
            found = bool(self.rules_for(kind, name) or self.triggers_for(kind, name))
            remember(self.page_read, name, found)
        return found

    def rules_for(self, kind: str, name: str) -> tuple[tuple[Score, Rule], ...]:
        if kind == "track":
            return self.track_rules.get(name, ())
        if kind != "page":
            return ()
        found = self._page_memo.get(name)
        if found is None:
            found = tuple(hit for pattern, hit in self.page_rule_globs if pattern.match(name))
            remember(self._page_memo, name, found)
        return found

    def triggers_for(self, kind: str, name: str) -> tuple[Trigger, ...]:
        if kind == "track":
            return self.track_triggers.get(name, ())
        if kind != "page":
            return ()
        found = self._page_trigger_memo.get(name)
        if found is None:
            found = tuple(t for pattern, t in self.page_triggers if pattern.match(name))
            remember(self._page_trigger_memo, name, found)
        return found


_MEMO_MAX = 10_000


def remember(memo: dict[Any, Any], key: Any, value: Any) -> None:
    """Bounded memo: start over when full (paths in real traffic are few and repeat)."""
    if len(memo) >= _MEMO_MAX:
        memo.clear()
    memo[key] = value


def _unique(what: str, values: list[str]) -> None:
    seen: set[str] = set()
    for value in values:
        if value in seen:
            raise ValueError(f"duplicate {what} '{value}'")
        seen.add(value)


def _glob(pattern: str | None) -> re.Pattern[str]:
    return re.compile(translate(pattern or ""))


class ModelError(Exception):
    """A lead model file that cannot be used; `errors` holds one line per problem."""

    def __init__(self, path: Path | str, errors: list[str]) -> None:
        self.path = str(path)
        self.errors = errors
        super().__init__("\n".join(errors))


def load_model(path: Path | str) -> LeadModel:
    """Read and validate a lead model file; raise ModelError listing every problem."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ModelError(path, [f"{path}: cannot read: {exc.strerror or exc}"]) from exc
    return parse_model(text, source=str(path))


def parse_model(text: str, *, source: str = "<model>") -> LeadModel:
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark is not None else source
        raise ModelError(source, [f"{where}: not valid YAML: {exc}"]) from exc
    if not isinstance(data, dict):
        raise ModelError(source, [f"{source}:1: the model must be a YAML mapping"])
    try:
        return LeadModel.model_validate(data)
    except ValidationError as exc:
        errors = []
        found = exc.errors()
        deeper = {tuple(e["loc"][:-1]) for e in found if len(e["loc"]) > 1}
        for err in found:
            loc = tuple(err["loc"])
            if err["type"] == "too_short" and any(d[: len(loc)] == loc for d in deeper):
                continue  # pydantic counts only valid items: the real error is the item's

            field = ".".join(str(p) for p in loc) or "(top level)"
            line = _line_of(root, loc)
            errors.append(f"{source}:{line}: {field}: {err['msg']}")
        raise ModelError(source, errors) from exc


def _line_of(node: yaml.Node | None, loc: tuple[Any, ...]) -> int:
    """The 1-based line of the deepest YAML node that `loc` reaches."""
    line = 1
    for part in loc:
        if node is None:
            break
        line = node.start_mark.line + 1
        child: yaml.Node | None = None
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if key.value == str(part):
                    child = value
                    line = key.start_mark.line + 1
                    break
        elif (
            isinstance(node, yaml.SequenceNode)
            and isinstance(part, int)
            and 0 <= part < len(node.value)
        ):
            child = node.value[part]
        node = child
    if node is not None:
        line = node.start_mark.line + 1
    return line
