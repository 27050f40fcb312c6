"""`leadstream explain`: read the topics a lead's story is on, print it."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TypeVar

from pydantic import BaseModel

from schemas.decisions import HandOff, LeadMerged, LeadScored, RepAlert, SlaEvent
from schemas.feedback import SalesFeedback
from schemas.internal import PersonEvent
from streams.codec import Rejection, decode_output, decode_person_event
from streams.explain import lead_ids, render_story, story
from streams.kafka_connection import KafkaConnection
from streams.kafka_io import read_topic
from streams.leads import lead_id_for
from streams.topics import Topics

__all__ = ["run_explain"]

_M = TypeVar("_M", bound=BaseModel)


def run_explain(
    lead_id: str,
    *,
    broker: str,
    kafka: KafkaConnection,
    topics: Topics,
    progress: bool,
    out: Callable[[str], object] = sys.stdout.write,
) -> int:

    def read(topic: str) -> list[bytes]:
        return [r.value for r in read_topic(kafka, topic, progress=progress)]

    def of(cls: type[_M], topic: str) -> list[_M]:
        return [m for v in read(topic) if (m := decode_output(cls, v)) is not None]

    try:
        merges = of(LeadMerged, topics.merged)
        current, ids = lead_ids(lead_id, merges)
        events: list[tuple[str, PersonEvent]] = []
        for value in read(topics.raw):
            event = decode_person_event(value)
            if not isinstance(event, Rejection):
                events.append((lead_id_for(event.pk), event))
        lines = story(
            ids=ids,
            events=events,
            scored=of(LeadScored, topics.scored),
            routed=of(HandOff, topics.routed),
            alerts=of(RepAlert, topics.alerts),
            merges=merges,
            sla=of(SlaEvent, topics.sla),
            feedback=of(SalesFeedback, topics.feedback),
        )
    except Exception as exc:  # unreachable broker, timeouts
        sys.stderr.write(
            f"leadstream: cannot read the topics from {broker}: {kafka.failure(exc)}\n"
        )
        return 1
    out(render_story(lead_id, current, ids, lines))
    return 0 if lines else 1
