"""`leadstream forget`: publish an erasure request and wait for the worker's answer."""

from __future__ import annotations

import asyncio
import logging
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TextIO

from aiokafka.structs import ConsumerRecord
from pydantic import ValidationError

from schemas.decisions import LeadForgotten
from schemas.erasure import ErasureRequest
from streams.codec import decode_output, encode
from streams.kafka_connection import KafkaConnection
from streams.kafka_io import create_topics, read_until
from streams.producer import BatchProducer, Record
from streams.topics import ERASURE_TOPIC_CONFIG, FORGOTTEN_TOPIC_CONFIG, Topics

__all__ = ["ForgetTarget", "describe", "run_forget"]

#: Exit codes: erased; broker unreachable or no answer in time; bad input; nobody found.
ERASED, FAILED, BAD_INPUT, NOT_FOUND = 0, 1, 2, 3


@dataclass(frozen=True)
class ForgetTarget:
    broker: str  # for messages
    kafka: KafkaConnection
    topics: Topics
    partitions: int
    replication: int = 1


def run_forget(
    *,
    email: str | None,
    user_id: str | None,
    reason: str,
    target: ForgetTarget,
    wait: bool,
    timeout_s: float,
    now: datetime,
    progress: bool,
    out: TextIO = sys.stdout,
    err: TextIO = sys.stderr,
) -> int:
    """Publish the request; with `wait`, read `leads.forgotten` until the worker answers it."""
    try:
        request = ErasureRequest(
            request_id=uuid.uuid4().hex,
            email=email.strip() if email is not None else None,
            user_id=user_id,
            reason=reason,
            requested_at=now,
        )
    except ValidationError as exc:
        problem = exc.errors(include_url=False, include_input=False)[0]
        where = ".".join(str(p) for p in problem["loc"]) or "request"
        why = "not an email address" if where == "email" else problem["msg"]
        print(f"leadstream forget: {where}: {why}", file=err)
        return BAD_INPUT
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)  # one line below says it all
    try:
        asyncio.run(asyncio.wait_for(_publish(target, request), timeout=30))
    except Exception as exc:  # connection refused, unknown host, timeouts
        print(f"leadstream forget: cannot publish to {target.broker}: {exc!r}", file=err)
        return FAILED
    print(
        f"erasure request {request.request_id} published to {target.topics.erasure}",
        file=out,
        flush=True,
    )
    if not wait:
        print(f"the worker answers on {target.topics.forgotten} (request_id above)", file=out)
        return ERASED
    started = time.monotonic()

    def tick() -> None:
        if progress:
            waited = time.monotonic() - started
            err.write(f"\r  waiting for the worker's answer on {target.topics.forgotten}: ")
            err.write(f"{waited:.0f} s of {timeout_s:.0f} s")
            err.flush()

    try:
        answer = asyncio.run(
            _answer(target.kafka, target.topics.forgotten, request, timeout_s, tick)
        )
    except Exception as exc:
        print(f"\nleadstream forget: cannot read {target.topics.forgotten}: {exc!r}", file=err)
        return FAILED
    finally:
        if progress:
            err.write("\n")
    if answer is None:
        print(
            f"leadstream forget: no answer on {target.topics.forgotten} within {timeout_s:.0f} s "
            "(is a worker running?); the request stays on "
            f"{target.topics.erasure} and is applied when a worker reads it",
            file=err,
        )
        return FAILED
    print(describe(answer), file=out)
    return ERASED if answer.found else NOT_FOUND


def describe(answer: LeadForgotten) -> str:
    """What the worker removed, as the command prints it."""
    what = "email" if answer.identifier == "email" else "userId"
    digest = answer.identifier_sha256[:12]
    if not answer.found:
        return f"no lead is known by this {what} (sha256 {digest}...): nothing to erase"
    merged = (
        f" and the {len(answer.merged_lead_ids)} lead(s) merged into it "
        f"({', '.join(answer.merged_lead_ids)})"
        if answer.merged_lead_ids
        else ""
    )
    sla = "; its hand-off SLA clock" if answer.sla_stopped else ""
    ids = ", ".join((str(answer.lead_id), *answer.merged_lead_ids))
    return (
        f"forgot lead {answer.lead_id}{merged}: its state, "
        f"{answer.identifiers_deleted} identifier entries{sla}\n"
        f"tombstone on leads.forgotten, key {answer.lead_id} ({what} sha256 {digest}...)\n"
        f"records written before now (leads.scored, leads.routed, rep.alerts, ...) stay until "
        f"their topics' retention: downstream systems delete them by lead id: {ids}"
    )


async def _publish(target: ForgetTarget, request: ErasureRequest) -> None:
    # Both topics, so the request is kept and the answer can be waited for before any
    # worker ran (a worker creates them the same way).
    for name, configs in (
        (target.topics.erasure, ERASURE_TOPIC_CONFIG),
        (target.topics.forgotten, FORGOTTEN_TOPIC_CONFIG),
    ):
        await create_topics(
            target.kafka, [name], target.partitions, target.replication, configs=configs
        )
    producer = BatchProducer(kafka=target.kafka)
    try:
        await producer.send(
            [Record(target.topics.erasure, request.request_id.encode(), encode(request))]
        )
    finally:
        await producer.stop()


async def _answer(
    kafka: KafkaConnection,
    topic: str,
    request: ErasureRequest,
    timeout_s: float,
    tick: Callable[[], None],
) -> LeadForgotten | None:
    """The worker's answer to `request` on `leads.forgotten`, or None by the deadline."""
    found: list[LeadForgotten] = []
    read = 0

    def done(records: list[ConsumerRecord]) -> bool:
        nonlocal read
        tick()
        for record in records[read:]:
            answer = decode_output(LeadForgotten, record.value)
            if answer is not None and answer.request_id == request.request_id:
                found.append(answer)
        read = len(records)
        return bool(found)

    await read_until(kafka, topic, done, timeout_s=timeout_s)
    return found[0] if found else None
