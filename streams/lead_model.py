"""The lead model file: the one written lead definition sales and marketing agree on."""

from __future__ import annotations

import re
from fnmatch import translate
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

__all__ = [
    "DEFAULT_MODEL_PATH",
    "EventRule",
    "LeadModel",
    "ModelError",
    "PageRule",
    "Rep",
    "SeniorityRule",
    "SizeBand",
    "Territory",
    "Trigger",
    "load_model",
    "parse_model",
    "remember",
]

DEFAULT_MODEL_PATH = Path(__file__).parent / "demo" / "lead_model.yaml"

RuleId = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_.-]{0,63}$")]


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class EventRule(_Strict):
    """Points for a track event, by its exact name."""

    id: RuleId
    event: str
    points: int
    max_points: int | None = Field(default=None, description="Cap on this rule's total.")


class PageRule(_Strict):
    """Points for a page view whose path matches a glob (`/pricing*`)."""

    id: RuleId
    path: str
    points: int
    max_points: int | None = None


class SizeBand(_Strict):
    """Fit points for a company size band (employees, inclusive)."""

    id: RuleId
    min_employees: int = 0
    max_employees: int | None = None
    points: int


class SeniorityRule(_Strict):
    """Fit points when the job title contains one of the words (case-insensitive)."""

    id: RuleId
    title_contains: tuple[str, ...] = Field(min_length=1)
    points: int

    @field_validator("title_contains")
    @classmethod
    def _lower(cls, words: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(word.lower() for word in words)


class Fit(_Strict):
    company_size: tuple[SizeBand, ...] = ()
    seniority: tuple[SeniorityRule, ...] = ()


class Engagement(_Strict):
    events: tuple[EventRule, ...] = ()
    pages: tuple[PageRule, ...] = ()


class Trigger(_Strict):
    """A hot trigger: alert the rep at once when it fires.

    Fires on a track event name or on a page path glob; with `count` > 1, when that many
    matching events fall within `within_days` of event time. After firing, it stays quiet
    for `cooldown_days` for that lead.
    """

    id: RuleId
    event: str | None = None
    page: str | None = None
    count: int = Field(default=1, ge=1, le=100)
    within_days: float = Field(default=7.0, gt=0)
    cooldown_days: float = Field(default=30.0, ge=0)
    message: str

    @model_validator(mode="after")
    def _one_matcher(self) -> Trigger:
        if (self.event is None) == (self.page is None):
            raise ValueError("a trigger needs exactly one of 'event' or 'page'")
        return self


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
    """The whole lead definition; `version` is stamped on every record it produces."""

    version: str = Field(min_length=1)
    name: str = "default"
    mql_threshold: int = Field(gt=0)
    engagement: Engagement = Engagement()
    fit: Fit = Fit()
    triggers: tuple[Trigger, ...] = ()
    reps: tuple[Rep, ...] = Field(min_length=1)
    fallback_rep: str
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

    @model_validator(mode="after")
    def _consistent(self) -> LeadModel:
        ids = [r.id for r in self.engagement.events] + [r.id for r in self.engagement.pages]
        ids += [b.id for b in self.fit.company_size] + [s.id for s in self.fit.seniority]
        _unique("rule id", ids)
        _unique("trigger id", [t.id for t in self.triggers])
        _unique("rep id", [r.id for r in self.reps])
        if self.fallback_rep not in {r.id for r in self.reps}:
            raise ValueError(f"fallback_rep '{self.fallback_rep}' is not one of the reps")
        return self

    @cached_property
    def index(self) -> _Index:
        # cached_property stores in the instance __dict__: plain attribute speed on the hot
        # path (pydantic private attributes go through __getattr__).
        return _Index(self)

    def event_rules(self, event_name: str) -> tuple[EventRule, ...]:
        return self.index.events.get(event_name, ())

    def page_rules(self, path: str) -> tuple[PageRule, ...]:
        return self.index.page_rules(path)

    def triggers_for(self, kind: str, name: str) -> tuple[Trigger, ...]:
        return self.index.triggers_for(kind, name)

    def rep(self, rep_id: str) -> Rep | None:
        return self.index.reps.get(rep_id)


class _Index:
    """Lookups compiled from a model, with bounded memo tables (paths repeat a lot)."""

    def __init__(self, model: LeadModel) -> None:
        events: dict[str, list[EventRule]] = {}
        for rule in model.engagement.events:
            events.setdefault(rule.event, []).append(rule)
        self.events = {name: tuple(rules) for name, rules in events.items()}
        self.pages = tuple((_glob(r.path), r) for r in model.engagement.pages)
        self.track_triggers: dict[str, tuple[Trigger, ...]] = {}
        for trigger in model.triggers:
            if trigger.event is not None:
                self.track_triggers[trigger.event] = (
                    *self.track_triggers.get(trigger.event, ()),
                    trigger,
                )
        self.page_triggers = tuple((_glob(t.page), t) for t in model.triggers if t.page)
        self.reps = {r.id: r for r in model.reps}
        self.labels = {r.id: r.event for r in model.engagement.events}
        self.labels.update({r.id: f"page {r.path}" for r in model.engagement.pages})
        self.fit_memo: dict[tuple[object, object], tuple[object, ...]] = {}
        self._page_memo: dict[str, tuple[PageRule, ...]] = {}
        self._page_trigger_memo: dict[str, tuple[Trigger, ...]] = {}

    def page_rules(self, path: str) -> tuple[PageRule, ...]:
        found = self._page_memo.get(path)
        if found is None:
            found = tuple(rule for pattern, rule in self.pages if pattern.match(path))
            remember(self._page_memo, path, found)
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
        for err in exc.errors():
            loc = tuple(err["loc"])
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
