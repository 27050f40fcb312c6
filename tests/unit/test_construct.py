"""`trusted` in C (streams/construct.c) against its reference, schemas.decisions.trusted.

The compiled core's decisions are compared whole with the Python core's in test_native.py;
these check the function itself: the same models, the same errors, no leaked references."""

from __future__ import annotations

import gc
import sys
from typing import Any

import pytest
from pydantic import BaseModel, ConfigDict, PrivateAttr

import streams
import streams.construct
from schemas.decisions import Activity, BreakdownLine, trusted
from schemas.internal import LeadState, Link, PersonEvent
from streams.construct import core_line
from streams.leads import lead_id_for
from streams.native import Choice


@pytest.fixture
def c_trusted(compiled_core: None) -> Any:
    from streams._construct import trusted

    return trusted


def _lead() -> LeadState:
    return LeadState.model_validate(
        {"lead_id": lead_id_for("u1"), "pk": "u1", "traits": {"email": "ana@acme.io"}}
    )


def _event() -> PersonEvent:
    return PersonEvent.model_validate(
        {
            "pk": "u1",
            "mid": "m1",
            "ts_ms": 1_700_000_000_000,
            "kind": "track",
            "name": "Whitepaper Downloaded",
            "traits": {"plan": "pro"},
        }
    )


def test_the_compiled_core_builds_models_with_the_c_function(c_trusted: Any) -> None:
    assert streams.construct.trusted is c_trusted
    assert streams.construct.python_trusted is trusted
    assert type(c_trusted).__name__ == "builtin_function_or_method"


@pytest.mark.parametrize("make", [_lead, _event])
def test_the_c_function_builds_what_the_reference_builds(c_trusted: Any, make: Any) -> None:
    original = make()
    cls = type(original)
    built = c_trusted(cls, dict(original.__dict__))
    reference = trusted(cls, dict(original.__dict__))
    assert type(built) is cls
    assert built == reference == original
    assert built.model_dump() == reference.model_dump()
    assert built.model_dump_json() == reference.model_dump_json()
    assert built.model_fields_set == reference.model_fields_set == set(cls.model_fields)
    assert repr(built) == repr(reference)
    assert built.__pydantic_extra__ is None and built.__pydantic_private__ is None
    # What the core does with them afterwards: copies, updates, attribute reads.
    copied = built.model_copy(update={"pk": "u2"})
    assert copied.pk == "u2" and built.pk == "u1"
    assert c_trusted(cls, {**built.__dict__, "pk": "u3"}).pk == "u3"


def test_the_instances_of_a_class_share_one_fields_set(c_trusted: Any) -> None:
    a = c_trusted(Link, {"key": "k1", "owner": "o", "why": "email"})
    b = c_trusted(Link, {"key": "k2", "owner": "o", "why": "email"})
    assert a.__pydantic_fields_set__ is b.__pydantic_fields_set__


def test_the_c_function_keeps_the_values_dict_it_is_given_and_leaks_nothing(c_trusted: Any) -> None:
    values = {"rule": "pricing", "label": "Pricing page", "points": 10, "count": 2}
    before = sys.getrefcount(values)
    built = [c_trusted(BreakdownLine, values) for _ in range(1000)]
    assert built[0].__dict__ is values  # as the reference: the dict is the model's
    assert sys.getrefcount(values) == before + 1000
    fields = built[0].__pydantic_fields_set__
    fields_refs = sys.getrefcount(fields)
    del built
    gc.collect()
    assert sys.getrefcount(values) == before
    assert sys.getrefcount(fields) == fields_refs - 1000


class _WithNew(BaseModel):
    x: int

    def __new__(cls, *args: Any, **kwargs: Any) -> _WithNew:
        return super().__new__(cls)


@pytest.mark.parametrize(
    ("cls", "values", "message"),
    [
        (_WithNew, {"x": 1}, "_WithNew defines __new__: not built by trusted()"),
        (dict, {}, "trusted() builds pydantic models, not <class 'dict'>"),
        (Activity, [("kind", "x")], "trusted() takes a dict of values, not list"),
    ],
)
def test_what_the_c_function_refuses_it_refuses_with_a_type_error(
    c_trusted: Any, cls: Any, values: Any, message: str
) -> None:
    with pytest.raises(TypeError) as refused:
        c_trusted(cls, values)
    assert str(refused.value) == message
    if cls is _WithNew:  # the reference says the same
        with pytest.raises(TypeError, match="defines __new__"):
            trusted(cls, values)


def test_the_c_function_takes_two_arguments(c_trusted: Any) -> None:
    with pytest.raises(TypeError, match="takes 2 arguments, 1 given"):
        c_trusted(Link)


def test_the_worker_says_when_the_compiled_core_runs_without_its_c_function() -> None:
    compiled = Choice(True, "mypyc, 2026-11-29T12:00:00Z")
    why = "ImportError: streams._construct: BaseModel.__pydantic_extra__ is not a slot"

    assert core_line(compiled, why) == (
        "compiled (mypyc, 2026-11-29T12:00:00Z), but trusted() and model attribute reads in "
        f"Python: its C build did not load ({why})"
    )
    assert core_line(compiled, None) == "compiled (mypyc, 2026-11-29T12:00:00Z)"
    # Without a build there is no C function to miss.
    python = Choice(False, "LEADSTREAM_NATIVE=0")
    assert core_line(python, "ModuleNotFoundError: No module named 'streams._construct'") == (
        "python (LEADSTREAM_NATIVE=0)"
    )


def test_with_the_build_in_use_the_c_function_loaded(c_trusted: Any) -> None:
    assert streams.construct.NOT_IN_C is None


# --- plain attribute reads (plain_attributes) ------------------------------------------


def test_our_models_read_their_attributes_as_plain_classes_do(compiled_core: None) -> None:
    """What the worker, its intake process, `model replay` and cpu_bench do at start-up
    (tune_process): the core's models and the lead model's parts lose pydantic's
    attribute hook (-8% of the core's instructions per event)."""
    from schemas.decisions import LeadScored, NamedScore
    from schemas.internal import PersonEventBatch
    from streams.construct import plain_attributes, reads_plainly
    from streams.lead_model import Decay, FitRule, LeadModel, Rule, Score

    hot = (LeadState, PersonEvent, PersonEventBatch, LeadScored, NamedScore, BreakdownLine)
    hot += (LeadModel, Score, Rule, Decay, FitRule)
    plain_attributes()

    assert [cls.__name__ for cls in hot if not reads_plainly(cls)] == []
    assert plain_attributes() == 0  # once is enough


def test_a_model_that_reads_plainly_reads_as_before(compiled_core: None) -> None:
    from loadtest.harness import MODEL
    from streams.construct import plain_attributes
    from streams.lead_model import load_model

    plain_attributes()
    lead, model = _lead(), load_model(MODEL)

    assert lead.pk == "u1" and lead.traits == {"email": "ana@acme.io"}
    with pytest.raises(AttributeError, match="'LeadState' object has no attribute 'nope'"):
        lead.nope  # noqa: B018
    assert getattr(lead, "nope", None) is None and not hasattr(lead, "nope")
    assert model.index is model.index  # a cached_property, kept in the instance
    assert model.scores[0].rules[0].id == model.scores[0].rules[0].__dict__["id"]
    assert lead.model_copy(update={"pk": "u2"}).pk == "u2"
    assert LeadState.model_validate_json(lead.model_dump_json()) == lead


class _Plain(BaseModel):
    x: int


class _WithPrivate(BaseModel):
    x: int
    _secret: int = PrivateAttr(default=3)


class _WithExtra(BaseModel):
    model_config = ConfigDict(extra="allow")
    x: int


class _WithGetattr(BaseModel):
    x: int

    def __getattr__(self, name: str) -> Any:
        return f"made up {name}"


def test_models_pydantics_hook_serves_keep_it(compiled_core: None) -> None:
    """Private attributes and extra fields are read through BaseModel.__getattr__, and a
    class may define its own: those classes are left as they are."""
    from streams.construct import plain_attributes, reads_plainly

    plain_attributes(packages=("tests",))

    assert reads_plainly(_Plain)
    assert not reads_plainly(_WithPrivate) and _WithPrivate(x=1)._secret == 3
    assert not reads_plainly(_WithExtra) and _WithExtra(x=1, y=2).y == 2  # type: ignore[attr-defined]
    assert not reads_plainly(_WithGetattr) and _WithGetattr(x=1).anything == "made up anything"


def test_other_packages_models_are_left_as_they_are(compiled_core: None) -> None:
    from pydantic import RootModel
    from pydantic_settings import BaseSettings

    from streams.construct import plain_attributes, reads_plainly

    plain_attributes()

    assert not reads_plainly(BaseSettings) and not reads_plainly(RootModel)


def test_the_c_function_takes_only_model_classes(compiled_core: None) -> None:
    from streams._construct import plain_getattr

    for wrong in (BaseModel, int, _Plain(x=1)):
        with pytest.raises(TypeError, match="takes a subclass of pydantic's BaseModel"):
            plain_getattr(wrong)


def test_without_the_c_build_nothing_changes(monkeypatch: pytest.MonkeyPatch) -> None:
    from streams.construct import plain_attributes, reads_plainly

    class Late(BaseModel):
        x: int

    monkeypatch.setattr(streams.construct, "_plain_getattr", None)
    monkeypatch.setattr(streams.construct, "_reads_plainly", None)

    assert plain_attributes(packages=("tests",)) == 0
    assert not reads_plainly(Late)
