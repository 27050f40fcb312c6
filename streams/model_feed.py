"""The live lead model: which one a worker scores with, and the `lead.model` feed that changes it.

Pure part: `ModelHolder` (the current model and who to tell when it changes) and `consider`
(what a `lead.model` record means for a worker). Adapters: `ModelFeed`, the worker's reader
of `lead.model`, and `publish`, the writer behind `leadstream model publish`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import mode
from aiokafka import AIOKafkaConsumer, TopicPartition

from schemas.model_record import PublishedModel, text_sha256
from streams.codec import Rejection, decode_published_model, encode
from streams.kafka_connection import KafkaConnection
from streams.kafka_io import create_topics, open_partition
from streams.lead_model import LeadModel, ModelError, load_model, parse_model
from streams.metrics import Metrics
from streams.producer import BatchProducer, Record
from streams.topics import MODEL_TOPIC_CONFIG, MODEL_TOPIC_PARTITIONS

__all__ = [
    "Keep",
    "ModelFeed",
    "ModelHolder",
    "Switch",
    "SwitchListener",
    "consider",
    "publish",
    "published_model",
    "read_model",
]

log = logging.getLogger(__name__)

#: Called after a switch with (old model, new model, rescore).
SwitchListener = Callable[[LeadModel, LeadModel, bool], None]


class ModelHolder:
    """The lead model a worker scores with now; `switch` replaces it and tells the listeners.

    Readers take `current` once per unit of work (the leads agent: once per micro-batch), so
    a new model applies from the next batch on, never halfway through one.
    """

    def __init__(self, model: LeadModel, *, sha256: str | None = None) -> None:
        self._model = model
        self._sha256 = sha256  # of the model's text; None when not known
        self._listeners: list[SwitchListener] = []

    @property
    def current(self) -> LeadModel:
        return self._model

    @property
    def sha256(self) -> str | None:
        return self._sha256

    def on_switch(self, listener: SwitchListener) -> None:
        """Call `listener(old, new, rescore)` after every switch, in registration order."""
        self._listeners.append(listener)

    def is_current(self, model: LeadModel, sha256: str | None) -> bool:
        """Same version and the same text (content not known counts as different)."""
        return (
            sha256 is not None and sha256 == self._sha256 and model.version == self._model.version
        )

    def switch(self, model: LeadModel, *, sha256: str | None, rescore: bool = False) -> bool:
        """Make `model` current; False (and nothing happens) if it already is."""
        if self.is_current(model, sha256):
            return False
        old, self._model, self._sha256 = self._model, model, sha256
        for listener in list(self._listeners):
            try:
                listener(old, model, rescore)
            except Exception:
                # The switch stands: a failing listener must not leave workers on mixed models.
                log.exception("lead model: a switch listener failed (%r)", listener)
        return True


@dataclass(frozen=True, slots=True)
class Switch:
    """Score with `model` from now on; `record` is the publish it came from."""

    model: LeadModel
    record: PublishedModel


@dataclass(frozen=True, slots=True)
class Keep:
    """Keep the current model. `rejected`: the record was unusable (an error to report);
    otherwise it was the model already in use. `record` when the record could be read."""

    reason: str
    rejected: bool
    record: PublishedModel | None = None


def consider(
    value: bytes | None, *, current: LeadModel, current_sha256: str | None, source: str
) -> Switch | Keep:
    """What a `lead.model` record means for a worker scoring with `current`.

    `source` names the record in error lines (`<source>:<line>: field: message`, the line
    being in the published YAML).
    """
    record = decode_published_model(value)
    if isinstance(record, Rejection):
        return Keep(f"unreadable record ({record.reason}): {record.message}", rejected=True)
    try:
        model = parse_model(record.text, source=source)
    except ModelError as exc:
        return Keep("; ".join(exc.errors), rejected=True, record=record)
    if (model.name, model.version) != (record.name, record.version):
        return Keep(
            f"the record says {record.name} v{record.version} but its text is "
            f"{model.name} v{model.version}",
            rejected=True,
            record=record,
        )
    if record.sha256 == current_sha256 and model.version == current.version:
        return Keep(
            f"{model.name} v{model.version} is already in use", rejected=False, record=record
        )
    return Switch(model, record)


def published_model(
    model: LeadModel, text: str, *, rescore: bool, now: datetime, by: str | None
) -> PublishedModel:
    """The `lead.model` record for `model`, parsed from `text` (published verbatim)."""
    return PublishedModel(
        name=model.name,
        version=model.version,
        text=text,
        sha256=text_sha256(text),
        rescore=rescore,
        published_at=now,
        published_by=by,
    )


def read_model(path: Path) -> tuple[LeadModel, str]:
    """The model in `path` and the exact text it was parsed from; ModelError like load_model."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        load_model(path)  # raises the ModelError every other command words a bad path with
        raise
    except UnicodeDecodeError as exc:
        raise ModelError(path, [f"{path}:1: not UTF-8 text: {exc.reason}"]) from exc
    return parse_model(text, source=str(path)), text


async def publish(
    kafka: KafkaConnection | str, topic: str, record: PublishedModel, *, replication: int = 1
) -> None:
    """Create `topic` if missing (one partition, compacted), write `record` to partition 0,
    keyed by model name, and return once the broker has acknowledged it."""
    await create_topics(
        kafka, [topic], MODEL_TOPIC_PARTITIONS, replication, configs=MODEL_TOPIC_CONFIG
    )
    producer = BatchProducer(kafka=kafka)
    try:
        await producer.send([Record(topic, record.name.encode(), encode(record), partition=0)])
    finally:
        await producer.stop()


class ModelFeed(mode.Service):
    """Keeps a worker's ModelHolder on the newest valid model published on `lead.model`.

    No consumer group: every worker reads all of partition 0 from the beginning. `catch_up`
    reads up to the end as it was at start-up (so the newest valid publish beats the model
    file); the service's task then applies each new record as it arrives.
    """

    def __init__(
        self,
        *,
        topic: str,
        kafka: KafkaConnection,
        holder: ModelHolder,
        metrics: Metrics,
        fetch_wait_ms: int,
        catch_up_timeout_s: float = 10.0,
        **kwargs: object,
    ) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self._topic = topic
        self._tp = TopicPartition(topic, 0)
        self._kafka = kafka
        self._holder = holder
        self._metrics = metrics
        self._fetch_wait_ms = fetch_wait_ms
        self._timeout_s = catch_up_timeout_s
        self._consumer: AIOKafkaConsumer | None = None
        # Records below this offset were published before this worker connected: they
        # choose its model but do not rescore (that happened when they were published).
        self._live_from = 0
        current = holder.current
        metrics.model_info.labels(name=current.name, version=current.version).set(1)
        holder.on_switch(self._count_switch)

    def _count_switch(self, old: LeadModel, new: LeadModel, rescore: bool) -> None:
        info = self._metrics.model_info
        info.remove(old.name, old.version)
        info.labels(name=new.name, version=new.version).set(1)
        self._metrics.model_switches.inc()

    async def catch_up(self) -> None:
        """Apply everything on `lead.model` up to its current end, or give up after the
        timeout and keep the current model (the task goes on trying)."""
        file_model = self._holder.current
        try:
            await asyncio.wait_for(self._catch_up(), self._timeout_s)
        except Exception as exc:
            log.warning(
                "lead model: %s not read within %.0f s (%r); using %s v%s until it is",
                self._topic,
                self._timeout_s,
                exc,
                file_model.name,
                file_model.version,
            )
            return
        now = self._holder.current
        if now is file_model:
            log.info(
                "lead model: using the model file's %s v%s (%s)",
                now.name,
                now.version,
                f"{self._topic} holds no other valid model"
                if self._live_from
                else f"nothing published on {self._topic}",
            )
        else:
            log.info(
                "lead model: using %s v%s published on %s instead of the model file's %s v%s",
                now.name,
                now.version,
                self._topic,
                file_model.name,
                file_model.version,
            )

    async def _catch_up(self) -> None:
        consumer = self._consumer or await self._connect()
        while await consumer.position(self._tp) < self._live_from:
            await self._poll(consumer, timeout_ms=200)

    async def _connect(self) -> AIOKafkaConsumer:
        consumer, end = await open_partition(
            self._kafka,
            self._topic,
            partition=self._tp.partition,
            fetch_wait_ms=self._fetch_wait_ms,
        )
        self._consumer, self._live_from = consumer, end
        return consumer

    async def _poll(self, consumer: AIOKafkaConsumer, *, timeout_ms: int) -> None:
        fetched = await consumer.getmany(self._tp, timeout_ms=timeout_ms)
        for record in fetched.get(self._tp, []):
            self.apply(record.value, offset=record.offset)

    def apply(self, value: bytes | None, *, offset: int) -> None:
        """Act on the record at `offset` of `lead.model`: switch, or log why not."""
        current = self._holder.current
        where = f"{self._topic}@{offset}"
        decision = consider(
            value, current=current, current_sha256=self._holder.sha256, source=where
        )
        if isinstance(decision, Keep):
            if decision.rejected:
                self._metrics.model_rejected.inc()
                what = (
                    f"{decision.record.name} v{decision.record.version}"
                    if decision.record is not None
                    else "record"
                )
                log.error(
                    "lead model %s on %s rejected, keeping %s v%s: %s",
                    what,
                    where,
                    current.name,
                    current.version,
                    decision.reason,
                )
            return
        published = decision.record
        rescore = published.rescore and offset >= self._live_from
        self._holder.switch(decision.model, sha256=published.sha256, rescore=rescore)
        log.info(
            "lead model: switched from %s v%s to %s v%s (%s, published %s by %s)%s",
            current.name,
            current.version,
            decision.model.name,
            decision.model.version,
            where,
            published.published_at.isoformat(),
            published.published_by or "unknown",
            "; rescoring stored leads" if rescore else "",
        )

    @mode.Service.task
    async def _run(self) -> None:
        while not self.should_stop:
            try:
                consumer = self._consumer
                if consumer is None:
                    consumer = await asyncio.wait_for(self._connect(), self._timeout_s)
                await self._poll(consumer, timeout_ms=1000)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if self.should_stop:
                    return
                # The feed must never stop the worker: it keeps scoring with the model it has.
                log.warning("lead model: reading %s failed (%r); retrying", self._topic, exc)
                await self.sleep(2.0)

    async def on_shutdown(self) -> None:
        # After the task is cancelled (mode stops tasks before on_shutdown).
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            await consumer.stop()
