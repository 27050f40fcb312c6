"""`leadstream checklist`: read the lead model and the topics, judge the 15 items, print them."""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import orjson
from aiokafka.structs import ConsumerRecord

from schemas.decisions import HandOff, LeadMerged, SlaEvent
from schemas.feedback import SalesFeedback
from streams.checklist import Evidence, evaluate, render_checklist
from streams.codec import decode_output
from streams.csv_import import SOURCE_EVENTS
from streams.kafka_connection import KafkaConnection
from streams.kafka_io import read_topic
from streams.lead_model import LeadModel, ModelError, load_model
from streams.model_feed import consider
from streams.topics import Topics

__all__ = ["count_sources", "run_checklist", "span_words"]


def span_words(since: str, until: str | None) -> str:
    """--since/--until as evidence sentences say them: '30d' -> 'in the last 30 days'."""
    since = since.strip()
    if since[-1:] in ("d", "h") and since[:-1].isdigit():
        n, unit = int(since[:-1]), "day" if since[-1] == "d" else "hour"
        words = f"in the last {n} {unit}" + ("s" if n != 1 else "")
    else:
        words = f"since {since}"
    return words + (f" until {until}" if until else "")


def count_sources(values: list[bytes]) -> tuple[int, dict[str, int]]:
    """engagement.raw values -> (online touchpoints: page and track events, offline events
    by `properties.source`).

    Offline is what `leadstream import events` writes: a track whose `properties.source` is
    one of its sources (trade_show, seminar, ...). Anything unreadable is not counted."""
    online, offline = 0, Counter[str]()
    for value in values:
        try:
            message = orjson.loads(value)
        except orjson.JSONDecodeError:
            continue
        if not isinstance(message, dict):
            continue
        properties = message.get("properties")
        source = properties.get("source") if isinstance(properties, dict) else None
        kind = message.get("type")
        if kind == "track" and isinstance(source, str) and source in SOURCE_EVENTS:
            offline[source] += 1
        elif kind in ("track", "page"):  # identify and group are who, not a touchpoint
            online += 1
    return online, dict(offline)


def _published(records: list[ConsumerRecord], fallback: LeadModel) -> LeadModel | None:
    """The newest valid model on lead.model, as a worker starting now would pick it."""
    newest = None
    for record in records:
        decision = consider(
            record.value, current=fallback, current_sha256=None, source="lead.model"
        )
        model = getattr(decision, "model", None)
        if model is not None:
            newest = model
    return newest


def run_checklist(
    *,
    broker: str,
    kafka: KafkaConnection,
    topics: Topics,
    model_path: Path,
    model_given: bool,
    since: datetime,
    until: datetime,
    span: str,
    progress: bool,
    out: Callable[[str], object] = sys.stdout.write,
) -> int:
    """`model_given`: --model was passed, so the file wins over what is published."""
    since_ms, until_ms = int(since.timestamp() * 1000), int(until.timestamp() * 1000)
    try:
        file_model = load_model(model_path)
    except ModelError as exc:
        sys.stderr.write("\n".join(exc.errors) + "\n")
        return 1

    def read(topic: str, *, from_ms: int = since_ms) -> list[ConsumerRecord]:
        return read_topic(kafka, topic, since_ms=from_ms, until_ms=until_ms, progress=progress)

    def values(topic: str) -> list[bytes]:
        return [r.value for r in read(topic)]

    try:
        published = None if model_given else _published(read(topics.model, from_ms=0), file_model)
        handoffs = [h for v in values(topics.routed) if (h := decode_output(HandOff, v))]
        feedback = [f for v in values(topics.feedback) if (f := _feedback(v))]
        sla = [s for v in values(topics.sla) if (s := decode_output(SlaEvent, v))]
        merges = [m for v in values(topics.merged) if (m := decode_output(LeadMerged, v))]
        online, offline = count_sources(values(topics.raw))
    except Exception as exc:  # unreachable broker, missing topic, timeout
        sys.stderr.write(
            f"leadstream: cannot read the topics from {broker}: {kafka.failure(exc)}\n"
        )
        return 1
    if published is not None:
        model, source = published, "published on lead.model"
    else:
        model, source = file_model, f"the model file {model_path.name}"
    evidence = Evidence(
        since=since,
        until=until,
        model=model,
        model_source=source,
        handoffs=tuple(handoffs),
        feedback=tuple(feedback),
        sla=tuple(sla),
        merges=tuple(merges),
        online_events=online,
        offline_by_source=offline,
    )
    out(render_checklist(evaluate(evidence, span=span)))
    return 0


def _feedback(value: bytes) -> SalesFeedback | None:
    try:
        return SalesFeedback.model_validate_json(value)
    except ValueError:
        return None
