"""The committed JSON Schemas are exactly what the models generate."""

from __future__ import annotations

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
