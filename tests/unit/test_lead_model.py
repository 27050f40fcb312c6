"""The lead model file: the bundled model loads, and bad files are reported by file and line."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from streams.lead_model import DEFAULT_MODEL_PATH, LeadModel, ModelError, load_model, parse_model

VALID = """\
version: t1
mql_threshold: 100
engagement:
  events:
    - {id: whitepaper, event: Whitepaper Downloaded, points: 30}
  pages:
    - {id: pricing, path: "/pricing*", points: 10, max_points: 50}
triggers:
  - {id: demo, event: Demo Requested, message: requested a demo}
reps:
  - {id: ann, name: Ann, email: ann@x.com, territory: {countries: [US]}}
  - {id: queue, name: Queue, email: q@x.com}
fallback_rep: queue
"""

LINE = re.compile(r"^(?P<file>[^:]+):(?P<line>\d+): (?P<field>[^:]+): (?P<message>.+)$", re.S)


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


def test_bundled_model_loads(model: LeadModel) -> None:
    assert model.version == "2026.11-1"
    assert model.mql_threshold == 100
    assert model.fallback_rep == "queue"
    assert [r.id for r in model.reps] == ["aiko", "ben", "carla", "dan", "queue"]
    assert {t.id for t in model.triggers} == {
        "whitepaper-download",
        "demo-request",
        "pricing-3x-7d",
    }


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
    ("path", "rules"),
    [
        ("/pricing", ["pricing-view"]),
        ("/pricing-plans", ["pricing-view"]),
        ("/customers/acme", ["case-study-view"]),
        ("/customers", []),
        ("/blog/pricing", []),
    ],
)
def test_bundled_model_page_globs(model: LeadModel, path: str, rules: list[str]) -> None:
    assert [r.id for r in model.page_rules(path)] == rules


def test_load_model_reads_a_file(tmp_path: Path) -> None:
    path = tmp_path / "lead_model.yaml"
    path.write_text(VALID, encoding="utf-8")

    model = load_model(path)

    assert model.version == "t1"
    assert model.rep("ann") is not None
    assert model.rep("nobody") is None
    assert [r.id for r in model.event_rules("Whitepaper Downloaded")] == ["whitepaper"]
    assert model.event_rules("whitepaper downloaded") == ()


def test_load_model_names_the_file_in_errors(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(VALID.replace("mql_threshold: 100", "mql_threshold: lots"), encoding="utf-8")

    with pytest.raises(ModelError) as info:
        load_model(path)

    assert info.value.errors == [
        f"{path}:2: mql_threshold: Input should be a valid integer, "
        "unable to parse string as an integer"
    ]


def test_missing_file_is_a_model_error(tmp_path: Path) -> None:
    path = tmp_path / "absent.yaml"

    with pytest.raises(ModelError) as info:
        load_model(path)

    assert info.value.errors[0].startswith(f"{path}: cannot read: ")


def test_bad_field_deep_in_a_list_is_reported_at_its_line() -> None:
    text = VALID.replace(
        "    - {id: whitepaper, event: Whitepaper Downloaded, points: 30}\n",
        "    - {id: whitepaper, event: Whitepaper Downloaded, points: 30}\n"
        "    - {id: webinar, event: Webinar Attended, points: 25}\n"
        "    - id: demo\n"
        "      event: Demo Requested\n"
        "      points: sixty\n",
    )

    assert only_error(text) == (
        9,
        "engagement.events.2.points",
        "Input should be a valid integer, unable to parse string as an integer",
    )


@pytest.mark.parametrize(
    ("old", "new", "line", "field", "message"),
    [
        pytest.param(
            "territory: {countries: [US]}",
            "territory: {countries: [US], max_employes: 300}",
            11,
            "reps.0.territory.max_employes",
            "Extra inputs are not permitted",
            id="typo-in-territory",
        ),
        pytest.param(
            "{id: pricing, path",
            "{id: Pricing View, path",
            7,
            "engagement.pages.0.id",
            "String should match pattern",
            id="bad-rule-id",
        ),
        pytest.param(
            "message: requested a demo}",
            "message: requested a demo, within_days: 0}",
            9,
            "triggers.0.within_days",
            "greater than 0",
            id="zero-window",
        ),
        pytest.param(
            "mql_threshold: 100",
            "mql_threshold: 0",
            2,
            "mql_threshold",
            "greater than 0",
            id="zero-threshold",
        ),
        pytest.param(
            "{id: queue, name: Queue, email: q@x.com}",
            "{id: queue, email: q@x.com}",
            12,
            "reps.1.name",
            "Field required",
            id="missing-field-in-list",
        ),
    ],
)
def test_field_errors_name_file_line_and_path(
    old: str, new: str, line: int, field: str, message: str
) -> None:
    assert new != old and old in VALID
    got_line, got_field, got_message = only_error(VALID.replace(old, new))

    assert (got_line, got_field) == (line, field)
    assert message in got_message


def test_every_problem_is_listed() -> None:
    text = VALID.replace("points: 30", "points: x").replace(
        "mql_threshold: 100", "mql_threshold: -1"
    )

    errors = errors_of(text)

    assert errors == [
        "model.yaml:2: mql_threshold: Input should be greater than 0",
        "model.yaml:5: engagement.events.0.points: Input should be a valid integer, "
        "unable to parse string as an integer",
    ]


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        pytest.param(
            "{id: pricing, path",
            "{id: whitepaper, path",
            "duplicate rule id 'whitepaper'",
            id="rule-id-across-events-and-pages",
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
    assert old in VALID
    (error,) = errors_of(VALID.replace(old, new))

    assert error.startswith("model.yaml:1: (top level): ")
    assert error.endswith(message)


@pytest.mark.parametrize(
    "trigger",
    [
        pytest.param("{id: both, event: Demo Requested, page: /pricing, message: m}", id="both"),
        pytest.param("{id: neither, message: m}", id="neither"),
    ],
)
def test_trigger_needs_exactly_one_of_event_or_page(trigger: str) -> None:
    text = VALID.replace("triggers:\n", f"triggers:\n  - {trigger}\n")

    line, field, message = only_error(text)

    assert (line, field) == (9, "triggers.0")
    assert "a trigger needs exactly one of 'event' or 'page'" in message


@pytest.mark.parametrize(
    ("text", "line"),
    [
        pytest.param("version: [unclosed\nmql_threshold: 3\n", 2, id="unclosed-flow"),
        pytest.param("version: t1\n  mql_threshold: 3\n bad: indent\n", 2, id="bad-indent"),
        pytest.param(VALID.replace("points: 30}", "points: 30"), 6, id="unclosed-mapping"),
        pytest.param("version: t1\n---\nversion: t2\n", 2, id="two-documents"),
    ],
)
def test_invalid_yaml_is_reported_with_a_line(text: str, line: int) -> None:
    (error,) = errors_of(text)

    assert error.startswith(f"model.yaml:{line}: not valid YAML: ")


@pytest.mark.parametrize("text", ["", "- a\n- b\n", "just text\n", "42\n"])
def test_model_must_be_a_mapping(text: str) -> None:
    assert errors_of(text) == ["model.yaml:1: the model must be a YAML mapping"]


def test_valid_text_parses_without_error() -> None:
    model = parse_model(VALID)

    assert [r.id for r in model.page_rules("/pricing/enterprise")] == ["pricing"]
    assert model.engagement.pages[0].max_points == 50


def test_default_model_path_is_the_bundled_file() -> None:
    assert DEFAULT_MODEL_PATH.name == "lead_model.yaml"
    assert DEFAULT_MODEL_PATH.is_file()
