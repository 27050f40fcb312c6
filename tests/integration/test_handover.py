"""The intake hands its person-events records to the leads stage in-process: applied once,
committed as before, and not when switched off. Every test runs with the intake in the
worker's process and in a process of its own (the default from 2 CPUs): the handover and
its read-ahead bound take different paths in each."""

from __future__ import annotations

import signal
from collections.abc import Callable
from typing import Any

import pytest

from streams.topics import person_partition
from tests.integration.conftest import PARTITIONS, wait_for
from tests.integration.segment import identify, page, track
from tests.metrics_text import metric

pytestmark = pytest.mark.integration


@pytest.fixture(params=["false", "true"], ids=["intake-in-worker", "intake-process"])
def make_worker(make_worker: Callable[..., Any], request: pytest.FixtureRequest) -> Any:
    """The tier's workers, with LEADSTREAM_INTAKE_PROCESS set to this run's mode."""

    def make(**kwargs: Any) -> Any:
        return make_worker(**{"LEADSTREAM_INTAKE_PROCESS": request.param, **kwargs})

    return make


def _handed_over(metrics: str) -> float:
    return metric(metrics, "leadstream_handed_over_records_total")


def _held(metrics: str) -> float:
    return metric(metrics, "leadstream_intake_held_seconds_total")


def _restart_scores_on(
    make_worker: Any, handover: str, event: dict[str, Any], scores: list[int]
) -> Any:
    """A new worker after a clean stop: it scores `event` on from the state written (the
    whole `leads.scored` is `scores`) and reads nothing the stopped worker applied again."""
    restarted = make_worker(LEADSTREAM_HANDOVER=handover)
    restarted.send(event)
    scored = restarted.read(restarted.topics.scored, lambda r: len(r) >= len(scores))
    assert [s["score"] for s in scored] == scores
    wait_for(
        lambda: "leadstream_events_processed_total 1.0" in restarted.metrics(),
        timeout_s=10,
        what="only the new event processed (nothing applied before read again)",
    )
    return restarted


@pytest.mark.parametrize("handover", ["true", "false"])
def test_each_event_is_applied_once_whichever_way_it_reaches_the_leads_stage(
    make_worker: Any, handover: str
) -> None:
    worker = make_worker(LEADSTREAM_HANDOVER=handover)
    # The first record of a partition comes through the consumer (the stage learns where
    # the partition reads on); the next ones are handed over as the intake writes them.
    worker.send(identify("h-1", anon="anon-h", email="ana@hand.example", country="US"))
    worker.read(worker.topics.scored, lambda r: len(r) >= 1)
    for n, path in enumerate(["/pricing", "/pricing/teams"], start=2):
        worker.send(page(f"h-{n}", path, anon="anon-h"))
        worker.read(worker.topics.scored, lambda r, n=n: len(r) >= n)
    worker.send(track("h-4", "Whitepaper Downloaded", anon="anon-h"))

    scored = worker.read(worker.topics.scored, lambda r: any(s["score"] >= 50 for s in r))
    assert [s["score"] for s in scored] == [0, 10, 20, 50]
    alerts = worker.read(worker.topics.alerts, lambda r: len(r) >= 1, timeout_s=10)
    assert [a["trigger"] for a in alerts] == ["whitepaper-download"]
    wait_for(
        lambda: "leadstream_events_processed_total 4.0" in worker.metrics(),
        timeout_s=10,
        what="four events processed",
    )
    if handover == "true":
        assert _handed_over(worker.metrics()) >= 1
    else:
        assert _handed_over(worker.metrics()) == 0

    # Handed-over records are acknowledged when the consumer delivers them: a clean stop
    # commits them, so a new worker replays nothing and scores on from the state.
    assert worker.kill(signal.SIGTERM, timeout_s=30) == 0, worker.log()[-3000:]
    restarted = _restart_scores_on(
        make_worker, handover, page("h-5", "/pricing", anon="anon-h"), [0, 10, 20, 50, 60]
    )
    alerts = restarted.read(restarted.topics.alerts, lambda r: len(r) >= 2, timeout_s=10)
    assert [a["trigger"] for a in alerts] == ["whitepaper-download", "pricing-3x-7d"]


def test_a_clean_stop_commits_what_was_handed_over_before_the_consumer_delivers_it(
    make_worker: Any,
) -> None:
    # A long fetch wait on the person-events hop: Tansu holds each fetch that long, so the
    # consumer delivers a handed-over record seconds after it was applied.
    worker = make_worker(LEADSTREAM_HANDOVER="true", LEADSTREAM_FETCH_WAIT_MS="8000")
    worker.send(identify("s-1", anon="anon-s", email="sam@stop.example", country="US"))
    worker.read(worker.topics.scored, lambda r: len(r) >= 1)
    worker.send(page("s-2", "/pricing", anon="anon-s"))
    worker.read(worker.topics.scored, lambda r: len(r) >= 2, timeout_s=5)
    assert _handed_over(worker.metrics()) >= 1

    # Stopped at once: the consumer has not delivered s-2 yet, so Faust has nothing to
    # commit for it; the worker commits it after writing its state.
    assert worker.kill(signal.SIGTERM, timeout_s=30) == 0, worker.log()[-3000:]
    _restart_scores_on(make_worker, "true", page("s-3", "/pricing", anon="anon-s"), [0, 10, 20])


def test_an_identity_message_to_a_partition_of_the_same_worker_is_handed_over_too(
    make_worker: Any,
) -> None:
    # An identify makes the leads stage write a Link to the partition of the userId. If
    # that record were left to the consumer, every record after it in that partition
    # would wait for it: 8 s here, the fetch wait of the person-events hop.
    worker = make_worker(LEADSTREAM_HANDOVER="true", LEADSTREAM_FETCH_WAIT_MS="8000")
    anon_x = "anon-x"
    user = next(
        u
        for u in (f"user-{n}" for n in range(100))
        if person_partition(u, PARTITIONS) != person_partition(anon_x, PARTITIONS)
    )
    anon_y = next(
        a
        for a in (f"anon-y{n}" for n in range(100))
        if person_partition(a, PARTITIONS) == person_partition(user, PARTITIONS)
    )
    # The stage learns where each partition reads on from its first record, which comes
    # through the consumer: one event each for the two partitions first.
    worker.send(page("i-1", "/pricing", anon=anon_x))
    worker.send(page("i-2", "/pricing", anon=anon_y))
    worker.read(worker.topics.scored, lambda r: len(r) >= 2, timeout_s=30)
    before = _handed_over(worker.metrics())

    worker.send(identify("i-3", anon=anon_x, user=user))
    # The identify's record, then the Link the stage wrote for the userId.
    wait_for(
        lambda: _handed_over(worker.metrics()) >= before + 2,
        timeout_s=6,
        what="the identify and its Link handed over",
    )
    worker.send(page("i-4", "/pricing", anon=anon_y))
    scored = worker.read(
        worker.topics.scored, lambda r: any(s["message_id"] == "i-4" for s in r), timeout_s=6
    )
    lead_y = next(s["lead_id"] for s in scored if s["message_id"] == "i-2")
    assert [s["score"] for s in scored if s["lead_id"] == lead_y] == [10, 20]
    assert _handed_over(worker.metrics()) >= before + 3


def test_a_backlog_read_at_start_up_is_handed_over_not_read_ahead_of_the_leads_stage(
    make_worker: Any,
) -> None:
    # 400 events wait before the worker starts; the intake reads them 20 at a time. Reading
    # on while the stage is not ready, or while it catches up on a record it could not take,
    # would leave every record after that to the consumer: none handed over.
    worker = make_worker(start=False, LEADSTREAM_INTAKE_BATCH_MAX="20")
    people = [f"anon-b{n}" for n in range(8)]
    assert {person_partition(p, PARTITIONS) for p in people} == set(range(PARTITIONS))
    worker.send(*(page(f"b-{n}", "/pricing", anon=people[n % 8]) for n in range(400)))
    worker.start()

    scored = worker.read(worker.topics.scored, lambda r: len(r) >= 400, timeout_s=60)
    assert sorted(s["message_id"] for s in scored) == sorted(f"b-{n}" for n in range(400))
    records = worker.read(
        worker.topics.person_events,
        lambda r: sum(len(b["events"]) for b in r) >= 400,
        timeout_s=10,
    )
    wait_for(
        lambda: "leadstream_events_processed_total 400.0" in worker.metrics(),
        timeout_s=10,
        what="400 events processed",
    )
    metrics = worker.metrics()
    # The first record of each partition comes through the consumer; most of the others
    # are handed over, the intake waiting for the stage to catch up when one was not.
    assert _handed_over(metrics) >= len(records) / 2, (_handed_over(metrics), len(records))
    assert _held(metrics) > 0, "the intake never waited for the stage"


def test_a_backlog_of_new_people_keeps_being_handed_over_past_the_stage_s_own_links(
    make_worker: Any,
) -> None:
    # Each identify makes the stage write a Link to the userId's partition, between the
    # intake's records. An intake record that lands behind a Link not yet applied is not the
    # one its partition expects: parked until the Link is applied (else it went to the
    # consumer, and so did every record after it while the intake read on). Fetches of 250
    # records, so the backlog is many more records than the read-ahead's slack
    # (READ_AHEAD_SLACK_RECORDS). Measured with the intake in its own process, before the
    # parking: 103-105 of ~122 records handed over with the intake waiting for the Links,
    # 24-36 without; with that wait gone, 49 of 122 with the parking switched off.
    # (With fetches of 1,000 it was 12 of 36 either way: the slack covered the whole
    # backlog.)
    worker = make_worker(start=False, LEADSTREAM_INTAKE_BATCH_MAX="250")
    events = []
    for n in range(1500):
        events.append(identify(f"n-{n}", anon=f"anon-n{n}", user=f"user-n{n}"))
        events.append(page(f"n-{n}-p", "/pricing", anon=f"anon-n{n}"))
    worker.send(*events)
    worker.start()

    worker.read(worker.topics.scored, lambda r: len(r) >= 1500, timeout_s=60)
    wait_for(
        lambda: "leadstream_events_processed_total 3000.0" in worker.metrics(),
        timeout_s=30,
        what="3,000 events processed",
    )
    records = worker.read(
        worker.topics.person_events,
        lambda r: sum(len(b["events"]) for b in r) >= 3000,
        timeout_s=10,
    )
    handed = _handed_over(worker.metrics())
    assert handed >= len(records) * 2 / 3, (handed, len(records))


def test_the_intake_reads_on_while_the_stage_s_links_are_on_their_way_back(
    make_worker: Any,
) -> None:
    # Each identify makes the stage write a Link to the userId's partition. The intake need
    # not wait for those Links before it forwards more (each wait was a produce round trip
    # at the p90 of the latency): a record of its that lands behind one not yet applied is
    # parked until it is, then applied, instead of going to the consumer.
    worker = make_worker(LEADSTREAM_INTAKE_BATCH_MAX="4")
    people = [f"anon-b{n}" for n in range(8)]
    assert {person_partition(p, PARTITIONS) for p in people} == set(range(PARTITIONS))
    # Every partition's first record comes through the consumer: the stage learns where
    # each reads on (until then the intake waits for it).
    worker.send(*(page(f"w-{n}", "/pricing", anon=people[n]) for n in range(8)))
    worker.read(worker.topics.scored, lambda r: len(r) >= 8, timeout_s=30)
    wait_for(
        lambda: "leadstream_events_processed_total 8.0" in worker.metrics(),
        timeout_s=30,
        what="8 events processed",
    )
    held, handed = _held(worker.metrics()), _handed_over(worker.metrics())

    worker.send(*(identify(f"l-{n}", anon=f"anon-l{n}", user=f"user-l{n}") for n in range(300)))
    wait_for(
        lambda: "leadstream_events_processed_total 308.0" in worker.metrics(),
        timeout_s=60,
        what="308 events processed",
    )
    metrics = worker.metrics()
    # Fetches of 4 records, and 300 Links: within the read-ahead's slack throughout.
    assert _held(metrics) == held, "the intake waited for the stage"
    records = worker.read(
        worker.topics.person_events,
        lambda r: sum(len(b.get("events", ())) for b in r) >= 308,
        timeout_s=10,
    )
    # The intake's records (at most 4 events each) and the stage's Links: most of both
    # applied as written, none left to the consumer for want of waiting.
    assert _handed_over(metrics) - handed >= (len(records) - 8) * 2 / 3, (
        _handed_over(metrics) - handed,
        len(records),
    )
