"""`leadstream report kpi`: read the topics, compute the shared KPIs, print them (and write
the HTML page)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel

from schemas.decisions import HandOff, LeadMerged, LeadScored, SlaEvent
from schemas.feedback import SalesFeedback
from streams.codec import Rejection, decode_event, decode_output
from streams.kafka_connection import KafkaConnection
from streams.kafka_io import read_topic
from streams.kpi import (
    Attribution,
    Cost,
    CostError,
    Dimension,
    Touch,
    kpi_report,
    read_costs,
    render_kpi,
)
from streams.kpi_html import render_kpi_html
from streams.leads import lead_id_for
from streams.normalize import person_key
from streams.topics import Topics

__all__ = ["run_kpi", "touch_of"]

_M = TypeVar("_M", bound=BaseModel)


def touch_of(value: bytes) -> Touch | None:
    """The UTM touch a raw Segment message carries in `context.campaign`, if any."""
    if b"campaign" not in value:  # most events carry none: skip the full decode
        return None
    event = decode_event(value)
    if isinstance(event, Rejection):
        return None
    campaign = event.context.get("campaign")
    if not isinstance(campaign, dict):
        return None
    source = campaign.get("source")
    name = campaign.get("name")
    source = source.strip() if isinstance(source, str) and source.strip() else None
    name = name.strip() if isinstance(name, str) and name.strip() else None
    if source is None and name is None:
        return None
    return Touch(lead_id_for(person_key(event)), event.timestamp, source, name)


def run_kpi(
    *,
    broker: str,
    kafka: KafkaConnection,
    topics: Topics,
    since: datetime,
    until: datetime,
    by: Dimension | None,
    attribution: Attribution,
    costs_file: Path | None,
    html: Path | None,
    progress: bool,
    out: Callable[[str], object] = sys.stdout.write,
) -> int:
    costs: list[Cost] = []
    cost_errors: list[CostError] = []
    if costs_file is not None:
        try:
            text = costs_file.read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError) as exc:
            sys.stderr.write(f"leadstream: cannot read {costs_file}: {exc}\n")
            return 2
        costs, cost_errors = read_costs(text)
        for err in cost_errors:
            sys.stderr.write(f"{costs_file}:{err.line}: {err.message}\n")

    def read(topic: str) -> list[bytes]:
        # From the beginning: where a lead came from may predate the range.
        return [r.value for r in read_topic(kafka, topic, progress=progress)]

    def of(cls: type[_M], topic: str) -> list[_M]:
        return [m for v in read(topic) if (m := decode_output(cls, v)) is not None]

    try:
        touches = [t for v in read(topics.raw) if (t := touch_of(v)) is not None]
        report = kpi_report(
            since=since,
            until=until,
            touches=touches,
            scored=of(LeadScored, topics.scored),
            routed=of(HandOff, topics.routed),
            sla=of(SlaEvent, topics.sla),
            feedback=of(SalesFeedback, topics.feedback),
            merges=of(LeadMerged, topics.merged),
            costs=costs,
            cost_errors=cost_errors,
            by=by,
            attribution=attribution,
        )
    except Exception as exc:  # unreachable broker, missing topic, timeout
        sys.stderr.write(
            f"leadstream: cannot read the topics from {broker}: {kafka.failure(exc)}\n"
        )
        return 1
    out(render_kpi(report))
    if html is not None:
        try:
            html.write_text(render_kpi_html(report), encoding="utf-8")
        except OSError as exc:
            sys.stderr.write(f"leadstream: cannot write {html}: {exc}\n")
            return 2
        out(f"\nHTML report written to {html}\n")
    return 0
