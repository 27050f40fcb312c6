"""The committed JSON Schemas are exactly what the models generate."""

from __future__ import annotations

import pytest

from schemas.generate import JSON_DIR, render_all


def test_committed_json_schemas_match_the_models() -> None:
    rendered = render_all()
    committed = {p.name: p.read_bytes() for p in JSON_DIR.glob("*.json")}
    assert sorted(committed) == sorted(rendered), "run `make schemas` and commit schemas/json"
    drifted = [name for name, body in rendered.items() if committed[name] != body]
    assert not drifted, f"schemas drifted from the models: {drifted}; run `make schemas`"


def test_every_output_schema_forbids_unknown_fields_and_carries_schema_version() -> None:
    import orjson

    for name in (
        "leads.scored.json",
        "leads.routed.json",
        "rep.alerts.json",
        "engagement.dlq.json",
        "lead.model.json",
    ):
        schema = orjson.loads(render_all()[name])
        assert schema["additionalProperties"] is False, name
        assert "schema_version" in schema["properties"], name


def test_trusted_builds_the_model_validation_would_without_validating() -> None:
    """The core's unvalidated constructor: an instance that compares, dumps, encodes and
    copies like the validated one."""
    from pydantic import BaseModel

    from schemas.decisions import trusted
    from schemas.internal import PersonEvent

    values = {
        "mid": "m-1",
        "pk": "anon-1",
        "kind": "page",
        "name": "/pricing",
        "ts_ms": 5,
        "aid": "anon-1",
        "uid": None,
        "traits": {"email": "a@b.example"},
        "asset": None,
        "source": "ads",
        "campaign": None,
        "src": (3, 9),
    }
    built = trusted(PersonEvent, dict(values))
    validated = PersonEvent.model_validate(values)
    assert built == validated
    assert built.model_dump() == validated.model_dump()
    assert built.model_dump_json() == validated.model_dump_json()
    assert built.model_fields_set == set(PersonEvent.model_fields)
    assert built.model_copy(update={"pk": "u-1"}).pk == "u-1" and built.pk == "anon-1"

    class Odd(BaseModel):
        x: int = 0

        def __new__(cls, *args: object, **kwargs: object) -> Odd:
            return super().__new__(cls)

    with pytest.raises(TypeError, match="Odd defines __new__"):
        trusted(Odd, {"x": 1})
