"""The live lead model: what a `lead.model` record means, the holder, and the feed's reactions."""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest
from prometheus_client import CollectorRegistry

from schemas.model_record import PublishedModel, text_sha256
from streams.codec import Rejection, decode_published_model, encode
from streams.kafka_connection import KafkaConnection
from streams.lead_model import DEFAULT_MODEL_PATH, LeadModel, ModelError, parse_model
from streams.metrics import Metrics
from streams.model_feed import (
    Keep,
    ModelFeed,
    ModelHolder,
    Switch,
    consider,
    published_model,
    read_model,
)

AT = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)
TEXT = DEFAULT_MODEL_PATH.read_text(encoding="utf-8")
SOURCE = "lead.model@7"


def with_version(version: str, text: str = TEXT) -> str:
    """The bundled model's text under another version (the content is not ours to write)."""
    return re.sub(r"(?m)^version:.*$", f'version: "{version}"', text)


def version_line(text: str) -> int:
    return next(n for n, line in enumerate(text.splitlines(), 1) if line.startswith("version:"))


#: Valid YAML, invalid model: `version` must be text.
INVALID = re.sub(r"(?m)^version:.*$", "version: {major: 2}", TEXT)

V1 = parse_model(with_version("1"))
V2 = parse_model(with_version("2"))


def record(text: str, **overrides: object) -> bytes:
    """A `lead.model` value as `leadstream model publish` writes it (fields overridable)."""
    fields: dict[str, object] = {
        "name": "default",
        "version": "2",
        "text": text,
        "sha256": text_sha256(text),
        "published_at": AT.isoformat(),
        "published_by": "ana@laptop",
        **overrides,
    }
    return orjson.dumps(fields)


def decide(value: bytes | None, *, current: LeadModel = V1, sha: str | None = None) -> object:
    return consider(
        value,
        current=current,
        current_sha256=text_sha256(with_version("1")) if sha is None else sha,
        source=SOURCE,
    )


# ---------------------------------------------------------------- consider


def test_a_new_version_is_a_switch_carrying_the_parsed_model_and_the_rescore_flag() -> None:
    decision = decide(record(with_version("2"), rescore=True))

    assert isinstance(decision, Switch)
    assert decision.model.version == "2"
    assert decision.model == V2
    assert decision.record.rescore is True
    assert decision.record.published_by == "ana@laptop"


def test_the_model_already_in_use_is_kept_without_an_error() -> None:
    decision = decide(record(with_version("1"), version="1"))

    assert decision == Keep(
        "default v1 is already in use",
        rejected=False,
        record=PublishedModel.model_validate_json(record(with_version("1"), version="1")),
    )


def test_same_version_with_other_text_is_a_switch_so_the_content_published_is_what_runs() -> None:
    edited = with_version("1") + "\n# reviewed again\n"
    decision = decide(record(edited, version="1"))

    assert isinstance(decision, Switch)
    assert decision.record.sha256 == text_sha256(edited)


def test_an_invalid_model_is_rejected_with_every_error_at_its_line_in_the_published_text() -> None:
    decision = decide(record(INVALID))

    assert isinstance(decision, Keep) and decision.rejected
    with pytest.raises(ModelError) as raised:
        parse_model(INVALID, source=SOURCE)
    assert decision.reason == "; ".join(raised.value.errors)
    assert decision.reason.startswith(f"{SOURCE}:{version_line(INVALID)}: version: ")
    assert decision.record is not None and decision.record.version == "2"


def test_text_that_is_not_yaml_is_rejected_with_its_line() -> None:
    broken = re.sub(r"(?m)^version:.*$", "version: [unclosed", TEXT)

    decision = decide(record(broken))

    assert isinstance(decision, Keep) and decision.rejected
    assert "not valid YAML" in decision.reason
    assert re.match(rf"{re.escape(SOURCE)}:\d+: ", decision.reason)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, "unreadable record (empty_value)"),
        (b"", "unreadable record (empty_value)"),
        (b"\xff\xfe garbage", "unreadable record (not_utf8)"),
        (b"not a model", "unreadable record (invalid_json)"),
        (b'["default", "2"]', "unreadable record (not_object)"),
        (b'{"name": "default", "version": "2"}', "unreadable record (missing_field): text"),
    ],
)
def test_unreadable_records_are_rejected_and_say_why(value: bytes | None, expected: str) -> None:
    decision = decide(value)

    assert isinstance(decision, Keep) and decision.rejected and decision.record is None
    assert decision.reason.startswith(expected)


def test_a_record_whose_text_does_not_match_its_digest_is_rejected() -> None:
    tampered = record(with_version("2"), sha256=text_sha256(with_version("3")))

    decision = decide(tampered)

    assert isinstance(decision, Keep) and decision.rejected
    assert "sha256 does not match the text" in decision.reason


def test_a_record_whose_header_contradicts_its_text_is_rejected() -> None:
    decision = decide(record(with_version("2"), version="3"))

    assert isinstance(decision, Keep) and decision.rejected
    assert decision.reason == "the record says default v3 but its text is default v2"


def test_unknown_fields_on_the_record_are_rejected() -> None:
    decision = decide(record(with_version("2"), extra="x"))

    assert isinstance(decision, Keep) and decision.rejected


# ---------------------------------------------------------------- ModelHolder


def test_switch_makes_the_model_current_and_tells_listeners_old_new_and_rescore() -> None:
    holder = ModelHolder(V1, sha256="a" * 64)
    seen: list[tuple[str, str, bool]] = []
    holder.on_switch(lambda old, new, rescore: seen.append((old.version, new.version, rescore)))

    assert holder.switch(V2, sha256="b" * 64, rescore=True) is True

    assert holder.current is V2 and holder.sha256 == "b" * 64
    assert seen == [("1", "2", True)]


def test_switching_to_the_current_model_does_nothing() -> None:
    holder = ModelHolder(V1, sha256="a" * 64)
    seen: list[object] = []
    holder.on_switch(lambda *args: seen.append(args))

    assert holder.switch(parse_model(with_version("1")), sha256="a" * 64) is False

    assert holder.current is V1 and seen == []


def test_a_model_whose_text_is_not_known_is_never_taken_for_the_current_one() -> None:
    holder = ModelHolder(V1)  # built without its text, as create_app does by default

    assert holder.switch(parse_model(with_version("1")), sha256=None) is True


def test_a_failing_listener_neither_undoes_the_switch_nor_silences_the_others(
    caplog: pytest.LogCaptureFixture,
) -> None:
    holder = ModelHolder(V1)
    seen: list[str] = []

    def broken(old: LeadModel, new: LeadModel, rescore: bool) -> None:
        raise RuntimeError("boom")

    holder.on_switch(broken)
    holder.on_switch(lambda old, new, rescore: seen.append(new.version))

    with caplog.at_level(logging.ERROR):
        assert holder.switch(V2, sha256="b" * 64) is True

    assert holder.current is V2 and seen == ["2"]
    assert "a switch listener failed" in caplog.text


# ---------------------------------------------------------------- the record and the file


def test_published_model_round_trips_through_the_codec_with_the_text_verbatim() -> None:
    text = with_version("2") + "\r\n# trailing comment, kept\n"
    published = published_model(V2, text, rescore=True, now=AT, by="ana@laptop")

    decoded = decode_published_model(encode(published))

    assert decoded == published
    assert not isinstance(decoded, Rejection)
    assert decoded.text == text and decoded.sha256 == text_sha256(text)
    assert (decoded.name, decoded.version, decoded.rescore) == ("default", "2", True)


def test_read_model_returns_the_model_and_the_text_it_was_parsed_from(tmp_path: Path) -> None:
    path = tmp_path / "model.yaml"
    path.write_text(with_version("7"), encoding="utf-8")

    model, text = read_model(path)

    assert model.version == "7" and text == with_version("7")


def test_read_model_words_errors_like_model_check(tmp_path: Path) -> None:
    invalid = tmp_path / "invalid.yaml"
    invalid.write_text(INVALID, encoding="utf-8")
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"\xff\xfe\x00")

    with pytest.raises(ModelError) as bad_model:
        read_model(invalid)
    with pytest.raises(ModelError) as missing:
        read_model(tmp_path / "missing.yaml")
    with pytest.raises(ModelError) as not_text:
        read_model(binary)

    assert str(bad_model.value).startswith(f"{invalid}:{version_line(INVALID)}: version: ")
    assert str(missing.value).startswith(f"{tmp_path / 'missing.yaml'}: cannot read")
    assert str(not_text.value).startswith(f"{binary}:1: not UTF-8 text")


# ---------------------------------------------------------------- the feed's reactions


def _sample(registry: CollectorRegistry, metric: str, **labels: str) -> float | None:
    return registry.get_sample_value(metric, labels)


def _feed(registry: CollectorRegistry, holder: ModelHolder) -> ModelFeed:
    return ModelFeed(
        topic="t.lead.model",
        kafka=KafkaConnection(
            bootstrap="127.0.0.1:1"
        ),  # never contacted: `apply` is called directly
        holder=holder,
        metrics=Metrics.create(registry),
        fetch_wait_ms=100,
    )


def test_the_feed_switches_counts_and_moves_the_info_gauge(
    caplog: pytest.LogCaptureFixture,
) -> None:
    registry = CollectorRegistry()
    holder = ModelHolder(V1, sha256=text_sha256(with_version("1")))
    feed = _feed(registry, holder)
    assert _sample(registry, "leadstream_model_info", name="default", version="1") == 1

    with caplog.at_level(logging.INFO):
        feed.apply(record(with_version("2")), offset=3)

    assert holder.current.version == "2"
    assert _sample(registry, "leadstream_model_switches_total") == 1
    assert _sample(registry, "leadstream_model_info", name="default", version="2") == 1
    assert _sample(registry, "leadstream_model_info", name="default", version="1") is None
    assert "switched from default v1 to default v2 (t.lead.model@3" in caplog.text


def test_the_feed_rejects_an_invalid_model_keeps_the_old_one_and_logs_the_errors(
    caplog: pytest.LogCaptureFixture,
) -> None:
    registry = CollectorRegistry()
    holder = ModelHolder(V1, sha256=text_sha256(with_version("1")))
    feed = _feed(registry, holder)

    with caplog.at_level(logging.ERROR):
        feed.apply(record(INVALID), offset=5)
        feed.apply(b"garbage", offset=6)

    assert holder.current is V1
    assert _sample(registry, "leadstream_model_rejected_total") == 2
    assert _sample(registry, "leadstream_model_switches_total") == 0
    assert _sample(registry, "leadstream_model_info", name="default", version="1") == 1
    line = version_line(INVALID)
    assert (
        "lead model default v2 on t.lead.model@5 rejected, keeping default v1: "
        f"t.lead.model@5:{line}: version: "
    ) in caplog.text
    assert "lead model record on t.lead.model@6 rejected, keeping default v1: " in caplog.text


def test_a_record_read_at_start_up_chooses_the_model_but_only_a_live_one_rescores() -> None:
    registry = CollectorRegistry()
    holder = ModelHolder(V1)
    feed = _feed(registry, holder)
    feed._live_from = 2  # two records were on the topic when the worker connected
    seen: list[tuple[str, bool]] = []
    holder.on_switch(lambda old, new, rescore: seen.append((new.version, rescore)))

    feed.apply(record(with_version("2"), rescore=True), offset=1)
    feed.apply(record(with_version("3"), version="3", rescore=True), offset=2)

    assert seen == [("2", False), ("3", True)]
