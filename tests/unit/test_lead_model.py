"""The lead model file: the bundled model loads, and bad files are reported by file and line."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from streams.lead_model import (
    DEFAULT_MODEL_PATH,
    GRADES,
    LeadModel,
    ModelError,
    grade_at_least,
    load_model,
    parse_model,
)
from streams.leads import _read

VALID = """\
version: t1
scores:
  - id: engagement
    threshold: 100
    decay: {half_life_days: 30, reset_after_days: 180}
    rules:
      - {id: whitepaper, event: Whitepaper Downloaded, points: 30, once_per_asset: true}
      - {id: pricing, page: "/pricing*", points: 10, max_points: 50}
      - {id: unsubscribe, event: Email Unsubscribed, points: -30}
  - id: robotics
    threshold: 40
    rules:
      - {id: robotics-pages, page: "/robotics*", points: 10, max_per_day: 2}
fit:
  grades: {A: 30, B: 15, C: 5}
  rules:
    - {id: size, trait: employees, min: 50, max: 300, points: 20}
    - {id: exec, group: seniority, trait: title, contains: [VP, Chief], points: 15}
mql: {min_grade: B}
triggers:
  - {id: demo, event: Demo Requested, message: requested a demo}
reps:
  - {id: ann, name: Ann, email: ann@x.com, territory: {countries: [US]}}
  - {id: queue, name: Queue, email: q@x.com}
fallback_rep: queue
"""

LINE = re.compile(r"^(?P<file>[^:]+):(?P<line>\d+): (?P<field>[^:]+): (?P<message>.+)$", re.S)


def line_of(text: str, needle: str) -> int:
    """The 1-based line of the first line containing `needle`."""
    return next(n for n, line in enumerate(text.splitlines(), 1) if needle in line)


def errors_of(text: str, source: str = "model.yaml") -> list[str]:
    with pytest.raises(ModelError) as info:
        parse_model(text, source=source)
    assert info.value.path == source
    assert str(info.value) == "\n".join(info.value.errors)
    return info.value.errors


def only_error(text: str) -> tuple[int, str, str]:
    errors = errors_of(text)
    assert len(errors) == 1, errors
    match = LINE.match(errors[0])
    assert match is not None, errors[0]
    assert match["file"] == "model.yaml"
    return int(match["line"]), match["field"], match["message"]


def replaced(old: str, new: str, text: str = VALID) -> str:
    assert new != old and old in text, old
    return text.replace(old, new, 1)


def test_bundled_model_loads(model: LeadModel) -> None:
    assert model.version == "2026.11-2"
    assert [(s.id, s.threshold) for s in model.scores] == [("engagement", 100), ("robotics", 60)]
    assert model.primary.id == "engagement"
    assert (model.primary.decay.half_life_days, model.primary.decay.reset_after_days) == (90, 365)
    assert (model.fit.grades.A, model.fit.grades.B, model.fit.grades.C) == (40, 20, 5)
    assert (model.mql.min_grade, model.mql.recycle_on_decay) == ("C", True)
    assert model.fallback_rep == "queue"
    assert [r.id for r in model.reps] == ["aiko", "ben", "carla", "dan", "queue"]
    assert {t.id for t in model.triggers} == {
        "whitepaper-download",
        "demo-request",
        "pricing-3x-7d",
    }
    assert model.accounts.buying_group is not None
    assert model.accounts.buying_group.min_contacts == 3


def test_bundled_model_summary(model: LeadModel) -> None:
    assert model.summary() == (
        "default v2026.11-2: 2 score(s) [engagement (MQL at 100), robotics (MQL at 60)], "
        "14 engagement rules, 8 fit rules (A>=40, B>=20, C>=5; MQL needs fit C or better), "
        "3 hot triggers, 5 reps (fallback queue)"
    )


@pytest.mark.parametrize(
    ("kind", "name", "triggers"),
    [
        ("page", "/pricing", ("pricing-3x-7d",)),
        ("page", "/pricing/enterprise", ("pricing-3x-7d",)),
        ("page", "/product", ()),
        ("track", "Demo Requested", ("demo-request",)),
        ("track", "Whitepaper Downloaded", ("whitepaper-download",)),
        ("track", "/pricing", ()),
        ("identify", "", ()),
    ],
)
def test_bundled_model_trigger_lookup(
    model: LeadModel, kind: str, name: str, triggers: tuple[str, ...]
) -> None:
    assert tuple(t.id for t in model.triggers_for(kind, name)) == triggers


@pytest.mark.parametrize(
    ("kind", "name", "rules"),
    [
        ("page", "/pricing", [("engagement", "pricing-view")]),
        ("page", "/pricing-plans", [("engagement", "pricing-view")]),
        ("page", "/customers/acme", [("engagement", "case-study-view")]),
        ("page", "/customers", []),
        ("page", "/blog/pricing", []),
        ("page", "/Pricing", []),
        (
            "page",
            "/product/robotics/arm",
            [("engagement", "product-view"), ("robotics", "robotics-pages")],
        ),
        ("track", "Whitepaper Downloaded", [("engagement", "whitepaper")]),
        ("track", "whitepaper downloaded", []),
        ("track", "Robotics Webinar Attended", [("robotics", "robotics-webinar")]),
        ("identify", "", []),
    ],
)
def test_bundled_model_rule_lookup(
    model: LeadModel, kind: str, name: str, rules: list[tuple[str, str]]
) -> None:
    assert [(s.id, r.id) for s, r in model.rules_for(kind, name)] == rules


@pytest.mark.parametrize(
    ("kind", "name", "reads"),
    [
        ("track", "Whitepaper Downloaded", True),  # a rule
        ("track", "Demo Requested", True),  # a trigger, no rule
        ("page", "/pricing/plans", True),  # a rule's glob
        ("page", "/careers/jobs", True),  # a trigger's glob, no rule
        ("page", "/careers", False),
        ("track", "Email Clicked", False),
        ("track", "/pricing", False),  # a page rule does not read track events
        ("page", "Demo Requested", False),  # nor a track trigger pages
        ("identify", "", False),
    ],
)
def test_index_reads_is_whether_a_rule_or_trigger_reads_the_event(
    kind: str, name: str, reads: bool
) -> None:
    """The core's fast path asks `reads` alone: an event it says nothing reads is applied
    without scoring or triggers, so a trigger without a rule must count."""
    demo = "  - {id: demo, event: Demo Requested, message: requested a demo}\n"
    careers = '  - {id: careers, page: "/careers/*", message: looked at jobs}\n'
    model = parse_model(replaced(demo, demo + careers), source="model.yaml")
    # The core asks it from the index's tables (streams.leads._read), before a page is in
    # the memo and after.
    assert _read(model.index, kind, name) is reads
    assert model.index.reads(kind, name) is reads
    assert model.index.reads(kind, name) is reads  # the memo's answer is the same
    assert _read(model.index, kind, name) is reads
    assert reads == bool(model.rules_for(kind, name) or model.triggers_for(kind, name))


def test_load_model_reads_a_file(tmp_path: Path) -> None:
    path = tmp_path / "lead_model.yaml"
    path.write_text(VALID, encoding="utf-8")

    model = load_model(path)

    assert model.version == "t1"
    assert model.rep("ann") is not None
    assert model.rep("nobody") is None
    assert [s.id for s in model.scores] == ["engagement", "robotics"]
    whitepaper = model.scores[0].rules[0]
    assert (whitepaper.event, whitepaper.page, whitepaper.once_per_asset) == (
        "Whitepaper Downloaded",
        None,
        True,
    )
    assert model.scores[1].decay.half_life_days is None
    assert model.fit.rules[1].contains == ("vp", "chief")
    assert model.mql.min_grade == "B"


def test_load_model_names_the_file_in_errors(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(replaced("threshold: 100", "threshold: lots"), encoding="utf-8")

    with pytest.raises(ModelError) as info:
        load_model(path)

    assert info.value.errors == [
        f"{path}:4: scores.0.threshold: Input should be a valid integer, "
        "unable to parse string as an integer"
    ]


def test_missing_file_is_a_model_error(tmp_path: Path) -> None:
    path = tmp_path / "absent.yaml"

    with pytest.raises(ModelError) as info:
        load_model(path)

    assert info.value.errors[0].startswith(f"{path}: cannot read: ")


def test_bad_field_deep_in_a_list_is_reported_at_its_line() -> None:
    text = replaced(
        "      - {id: robotics-pages",
        "      - {id: arm, event: Arm Configured, points: 5}\n"
        "      - id: demo\n"
        "        event: Demo Requested\n"
        "        points: sixty\n"
        "      - {id: robotics-pages",
    )

    assert only_error(text) == (
        line_of(text, "points: sixty"),
        "scores.1.rules.1.points",
        "Input should be a valid integer, unable to parse string as an integer",
    )


@pytest.mark.parametrize(
    ("old", "new", "at", "field", "message"),
    [
        pytest.param(
            "territory: {countries: [US]}",
            "territory: {countries: [US], max_employes: 300}",
            "max_employes",
            "reps.0.territory.max_employes",
            "Extra inputs are not permitted",
            id="typo-in-territory",
        ),
        pytest.param(
            "{id: pricing, page",
            "{id: Pricing View, page",
            "Pricing View",
            "scores.0.rules.1.id",
            "String should match pattern",
            id="bad-rule-id",
        ),
        pytest.param(
            "message: requested a demo}",
            "message: requested a demo, within_days: 0}",
            "within_days: 0",
            "triggers.0.within_days",
            "greater than 0",
            id="zero-window",
        ),
        pytest.param(
            "message: requested a demo}",
            "message: requested a demo, min_grade: E}",
            "min_grade: E",
            "triggers.0.min_grade",
            "Input should be 'A', 'B', 'C' or 'D'",
            id="trigger-grade",
        ),
        pytest.param(
            "threshold: 40",
            "threshold: 0",
            "threshold: 0",
            "scores.1.threshold",
            "greater than 0",
            id="zero-threshold",
        ),
        pytest.param(
            "{id: queue, name: Queue, email: q@x.com}",
            "{id: queue, email: q@x.com}",
            "id: queue",
            "reps.1.name",
            "Field required",
            id="missing-field-in-list",
        ),
        pytest.param(
            '{id: pricing, page: "/pricing*", points: 10,',
            '{id: pricing, page: "/pricing*", event: Pricing Viewed, points: 10,',
            "Pricing Viewed",
            "scores.0.rules.1",
            "a rule needs exactly one of 'event' or 'page'",
            id="rule-with-event-and-page",
        ),
        pytest.param(
            '{id: pricing, page: "/pricing*", points: 10,',
            "{id: pricing, points: 10,",
            "{id: pricing, points: 10",
            "scores.0.rules.1",
            "a rule needs exactly one of 'event' or 'page'",
            id="rule-with-neither",
        ),
        pytest.param(
            '{id: pricing, page: "/pricing*", points: 10,',
            '{id: pricing, path: "/pricing*", points: 10,',
            "path:",
            "scores.0.rules.1.path",
            "Extra inputs are not permitted",
            id="old-path-key",
        ),
        pytest.param(
            "{id: unsubscribe, event: Email Unsubscribed, points: -30}",
            "{id: unsubscribe, event: Email Unsubscribed, points: 0}",
            "points: 0",
            "scores.0.rules.2",
            "points must not be 0 (delete the rule instead)",
            id="zero-points",
        ),
        pytest.param(
            "max_points: 50}",
            "max_points: 0}",
            "max_points: 0",
            "scores.0.rules.1.max_points",
            "greater than 0",
            id="zero-cap",
        ),
        pytest.param(
            "points: 30, once_per_asset: true}",
            "points: 30, once_per_asset: true, max_per_day: -1}",
            "max_per_day: -1",
            "scores.0.rules.0.max_per_day",
            "greater than 0",
            id="negative-daily-cap",
        ),
        pytest.param(
            "decay: {half_life_days: 30, reset_after_days: 180}",
            "decay: {half_life_days: 0, reset_after_days: 180}",
            "half_life_days: 0",
            "scores.0.decay.half_life_days",
            "greater than 0",
            id="zero-half-life",
        ),
        pytest.param(
            "decay: {half_life_days: 30, reset_after_days: 180}",
            "decay: {half_life: 30}",
            "half_life: 30",
            "scores.0.decay.half_life",
            "Extra inputs are not permitted",
            id="decay-typo",
        ),
        pytest.param(
            '    rules:\n      - {id: robotics-pages, page: "/robotics*", points: 10, max_per_day: 2}\n',
            "    rules: []\n",
            "rules: []",
            "scores.1.rules",
            "at least 1 item",
            id="score-without-rules",
        ),
        pytest.param(
            "{id: size, trait: employees, min: 50, max: 300, points: 20}",
            '{id: size, trait: employees, in: ["50-300"], points: 20}',
            "id: size",
            "fit.rules.0",
            "'employees' needs 'min' and/or 'max'",
            id="fit-in-on-employees",
        ),
        pytest.param(
            "trait: title, contains: [VP, Chief]",
            "trait: title, min: 3",
            "trait: title",
            "fit.rules.1",
            "'title' needs exactly one of 'in' or 'contains'",
            id="fit-range-on-text",
        ),
        pytest.param(
            "trait: title, contains: [VP, Chief]",
            "trait: title, in: [CEO], contains: [VP, Chief]",
            "trait: title",
            "fit.rules.1",
            "'title' needs exactly one of 'in' or 'contains'",
            id="fit-two-matchers",
        ),
        pytest.param(
            "{id: size, trait: employees, min: 50, max: 300, points: 20}",
            "{id: size, trait: free_mail, in: [gmail.com], points: -10}",
            "id: size",
            "fit.rules.0",
            "'free_mail' is true or false: give no matcher",
            id="fit-matcher-on-boolean-trait",
        ),
        pytest.param(
            "{id: size, trait: employees,",
            "{id: size, trait: revenue,",
            "trait: revenue",
            "fit.rules.0.trait",
            "Input should be 'employees', 'industry', 'country', 'title', 'company', "
            "'email_domain', 'free_mail' or 'competitor'",
            id="fit-unknown-trait",
        ),
        pytest.param(
            "grades: {A: 30, B: 15, C: 5}",
            "grades: {A: 30, B: 30, C: 5}",
            "grades:",
            "fit.grades",
            "grades must be strictly descending: A > B > C",
            id="grades-not-descending",
        ),
        pytest.param(
            "grades: {A: 30, B: 15, C: 5}",
            "grades: {A: 30, B: 15}",
            "grades:",
            "fit.grades.C",
            "Field required",
            id="grade-missing",
        ),
        pytest.param(
            "mql: {min_grade: B}",
            "mql: {min_grade: B, threshold: 100}",
            "mql:",
            "mql.threshold",
            "Extra inputs are not permitted",
            id="mql-threshold-is-per-score-now",
        ),
    ],
)
def test_field_errors_name_file_line_and_path(
    old: str, new: str, at: str, field: str, message: str
) -> None:
    text = replaced(old, new)

    got_line, got_field, got_message = only_error(text)

    assert (got_line, got_field) == (line_of(text, at), field)
    assert message in got_message


def test_every_problem_is_listed() -> None:
    text = (
        VALID.replace("points: 30,", "points: x,")
        .replace("grades: {A: 30, B: 15, C: 5}", "grades: {A: 5, B: 15, C: 30}")
        .replace("message: requested a demo}", "message: requested a demo, within_days: 0}")
        .replace("{id: queue, name: Queue, email: q@x.com}", "{id: queue, email: q@x.com}")
    )

    assert errors_of(text) == [
        "model.yaml:7: scores.0.rules.0.points: Input should be a valid integer, "
        "unable to parse string as an integer",
        "model.yaml:15: fit.grades: Value error, grades must be strictly descending: A > B > C",
        "model.yaml:21: triggers.0.within_days: Input should be greater than 0",
        "model.yaml:24: reps.1.name: Field required",
    ]


def test_a_list_with_one_bad_item_reports_only_that_item() -> None:
    text = replaced("max_per_day: 2}", "max_per_day: -1}")

    assert errors_of(text) == [
        "model.yaml:13: scores.1.rules.0.max_per_day: Input should be greater than 0"
    ]


def test_an_old_format_model_is_rejected_with_what_to_change() -> None:
    old = """\
version: t0
mql_threshold: 100
engagement:
  events:
    - {id: whitepaper, event: Whitepaper Downloaded, points: 30}
reps: [{id: queue, name: Queue, email: q@x.com}]
fallback_rep: queue
"""

    assert errors_of(old) == [
        "model.yaml:1: scores: Field required",
        "model.yaml:2: mql_threshold: Extra inputs are not permitted",
        # A block value is reported at its first line.
        "model.yaml:4: engagement: Extra inputs are not permitted",
    ]


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        pytest.param(
            "{id: robotics-pages,",
            "{id: whitepaper,",
            "duplicate rule id 'whitepaper'",
            id="rule-id-across-scores",
        ),
        pytest.param(
            "{id: pricing, page",
            "{id: whitepaper, page",
            "duplicate rule id 'whitepaper'",
            id="rule-id-in-one-score",
        ),
        pytest.param(
            "- id: robotics", "- id: engagement", "duplicate score id 'engagement'", id="score-id"
        ),
        pytest.param(
            "{id: exec, group", "{id: size, group", "duplicate fit rule id 'size'", id="fit-rule-id"
        ),
        pytest.param(
            "triggers:\n",
            "triggers:\n  - {id: demo, event: Form Submitted, message: filled a form}\n",
            "duplicate trigger id 'demo'",
            id="trigger-id",
        ),
        pytest.param(
            "  - {id: queue, name: Queue",
            "  - {id: ann, name: Ann Again, email: a2@x.com}\n  - {id: queue, name: Queue",
            "duplicate rep id 'ann'",
            id="rep-id",
        ),
        pytest.param(
            "fallback_rep: queue",
            "fallback_rep: inside-sales",
            "fallback_rep 'inside-sales' is not one of the reps",
            id="unknown-fallback",
        ),
    ],
)
def test_inconsistent_models_are_rejected(old: str, new: str, message: str) -> None:
    (error,) = errors_of(replaced(old, new))

    assert error.startswith("model.yaml:1: (top level): ")
    assert error.endswith(message)


def test_rules_fit_rules_and_triggers_are_separate_id_namespaces() -> None:
    # Different namespaces: an engagement rule, a fit rule and a trigger may share an id.
    text = replaced("{id: exec, group", "{id: demo, group")
    text = replaced("{id: whitepaper,", "{id: demo,", text)

    assert parse_model(text).fit.rules[1].id == "demo"


@pytest.mark.parametrize(
    "trigger",
    [
        pytest.param("{id: both, event: Demo Requested, page: /pricing, message: m}", id="both"),
        pytest.param("{id: neither, message: m}", id="neither"),
    ],
)
def test_trigger_needs_exactly_one_of_event_or_page(trigger: str) -> None:
    text = replaced("triggers:\n", f"triggers:\n  - {trigger}\n")

    line, field, message = only_error(text)

    assert (line, field) == (line_of(text, trigger), "triggers.0")
    assert "a trigger needs exactly one of 'event' or 'page'" in message


@pytest.mark.parametrize(
    ("text", "line"),
    [
        pytest.param("version: [unclosed\nscores: 3\n", 2, id="unclosed-flow"),
        pytest.param("version: t1\n  scores: 3\n bad: indent\n", 2, id="bad-indent"),
        pytest.param(
            VALID.replace("once_per_asset: true}", "once_per_asset: true"), 8, id="unclosed-mapping"
        ),
        pytest.param("version: t1\n---\nversion: t2\n", 2, id="two-documents"),
    ],
)
def test_invalid_yaml_is_reported_with_a_line(text: str, line: int) -> None:
    (error,) = errors_of(text)

    assert error.startswith(f"model.yaml:{line}: not valid YAML: ")


@pytest.mark.parametrize("text", ["", "- a\n- b\n", "just text\n", "42\n"])
def test_model_must_be_a_mapping(text: str) -> None:
    assert errors_of(text) == ["model.yaml:1: the model must be a YAML mapping"]


def test_defaults_of_optional_sections() -> None:
    model = parse_model(
        """
version: min
scores: [{id: main, threshold: 10, rules: [{id: demo, event: Demo Requested, points: 10}]}]
reps: [{id: queue, name: Queue, email: q@x.com}]
fallback_rep: queue
"""
    )

    decay, grades = model.primary.decay, model.fit.grades
    assert (decay.half_life_days, decay.reset_after_days) == (None, None)
    assert (model.fit.rules, grades.A, grades.B, grades.C) == ((), 40, 20, 5)
    assert "gmail.com" in model.fit.free_mail_domains
    assert (model.mql.min_grade, model.mql.recycle_on_decay) == ("C", True)
    assert model.triggers == ()
    assert model.accounts.enabled is True


@pytest.mark.parametrize(
    ("grade", "minimum", "ok"),
    [("A", "C", True), ("C", "C", True), ("D", "C", False), ("B", "A", False), ("D", "D", True)],
)
def test_grade_at_least(grade: str, minimum: str, ok: bool) -> None:
    assert GRADES == ("A", "B", "C", "D")
    assert grade_at_least(grade, minimum) is ok


def test_default_model_path_is_the_bundled_file() -> None:
    assert DEFAULT_MODEL_PATH.name == "lead_model.yaml"
    assert DEFAULT_MODEL_PATH.is_file()
