"""Prometheus metrics, created against a registry that is passed in."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import get_args

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from schemas.decisions import DlqReason, SlaEvent
from schemas.notify import ChannelType, DlqCause

__all__ = [
    "CONTENT_TYPE_LATEST",
    "IngestMetrics",
    "Metrics",
    "NotifierMetrics",
    "render",
    "state_gauges",
]

# Event time to alert: seconds to minutes matter; the SLA conversation starts at 5 minutes.
_LATENCY_BUCKETS_S = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 900, 3600)


@dataclass(frozen=True)
class Metrics:
    events_received: Counter
    events_valid: Counter
    events_deduplicated: Counter
    events_processed: Counter
    events_dead_lettered: Counter
    alerts: Counter
    handoffs: Counter
    scored: Counter
    alert_latency: Histogram
    accounts_scored: Counter
    account_alerts: Counter
    rescored: Counter
    model_switches: Counter
    model_rejected: Counter
    model_info: Gauge
    accounts_loaded: Gauge
    account_records_rejected: Counter
    intake_lag: Gauge  # topic: records behind the end of the intake's assigned partitions
    sla_steps: Counter  # step: SlaEvent.step

    @classmethod
    def create(cls, registry: CollectorRegistry) -> Metrics:
        dead = Counter(
            "leadstream_events_dead_lettered_total",
            "Raw events sent to the DLQ, by reason.",
            ["reason"],
            registry=registry,
        )
        for reason in get_args(DlqReason):
            dead.labels(reason=reason)  # export zeros so rate() and alerts work from start
        sla_steps = Counter(
            "leadstream_sla_steps_total",
            "Hand-off SLA steps written to leads.sla, by step.",
            ["step"],
            registry=registry,
        )
        for step in get_args(SlaEvent.model_fields["step"].annotation):
            sla_steps.labels(step=step)
        return cls(
            events_received=Counter(
                "leadstream_events_received_total",
                "Raw records read from engagement.raw.",
                registry=registry,
            ),
            events_valid=Counter(
                "leadstream_events_valid_total",
                "Raw records that passed validation.",
                registry=registry,
            ),
            events_deduplicated=Counter(
                "leadstream_events_deduplicated_total",
                "Valid events ignored because their messageId was already applied.",
                registry=registry,
            ),
            events_processed=Counter(
                "leadstream_events_processed_total",
                "Valid events the leads stage has applied (duplicates included).",
                registry=registry,
            ),
            events_dead_lettered=dead,
            alerts=Counter("leadstream_alerts_total", "Rep alerts emitted.", registry=registry),
            handoffs=Counter(
                "leadstream_handoffs_total",
                "Hand-offs emitted on leads.routed, by reason.",
                ["reason"],
                registry=registry,
            ),
            scored=Counter(
                "leadstream_score_changes_total",
                "Score or stage changes emitted on leads.scored.",
                registry=registry,
            ),
            alert_latency=Histogram(
                "leadstream_event_to_alert_seconds",
                "Event time to the alert being sent on rep.alerts.",
                buckets=_LATENCY_BUCKETS_S,
                registry=registry,
            ),
            accounts_scored=Counter(
                "leadstream_account_changes_total",
                "Account roll-up changes emitted on accounts.scored.",
                registry=registry,
            ),
            account_alerts=Counter(
                "leadstream_account_alerts_total",
                "Buying-group alerts sent to account owners on rep.alerts.",
                registry=registry,
            ),
            rescored=Counter(
                "leadstream_leads_rescored_total",
                "Leads whose history was replayed through a model published with --rescore.",
                registry=registry,
            ),
            model_switches=Counter(
                "leadstream_model_switches_total",
                "Switches to a lead model published on lead.model.",
                registry=registry,
            ),
            model_rejected=Counter(
                "leadstream_model_rejected_total",
                "Records on lead.model not used: unreadable, or not a valid lead model.",
                registry=registry,
            ),
            model_info=Gauge(
                "leadstream_model_info",
                "1 for the lead model this worker scores with.",
                ["name", "version"],
                registry=registry,
            ),
            accounts_loaded=Gauge(
                "leadstream_accounts_loaded",
                "CRM accounts in this worker's account directory (from crm.accounts).",
                registry=registry,
            ),
            account_records_rejected=Counter(
                "leadstream_account_records_rejected_total",
                "Records on crm.accounts not used: unreadable, not an account, or a key mismatch.",
                registry=registry,
            ),
            intake_lag=Gauge(
                "leadstream_intake_lag_records",
                "Records the intake has yet to read (high watermark minus position), summed "
                "over its assigned partitions, by topic; set after every fetch.",
                ["topic"],
                registry=registry,
            ),
            sla_steps=sla_steps,
        )


@dataclass(frozen=True)
class IngestMetrics:
    """The Segment HTTP ingest: on the worker's web port, or `leadstream ingest`'s own."""

    requests: Counter  # endpoint (the five of the API), code (the statuses it answers)
    messages: Counter  # result: valid, or invalid (produced, and dead-lettered by the intake)

    @classmethod
    def create(cls, registry: CollectorRegistry) -> IngestMetrics:
        messages = Counter(
            "leadstream_ingest_messages_total",
            "Messages produced to engagement.raw by the HTTP ingest; invalid ones go on to "
            "the DLQ.",
            ["result"],
            registry=registry,
        )
        for result in ("valid", "invalid"):
            messages.labels(result=result)
        return cls(
            requests=Counter(
                "leadstream_ingest_requests_total",
                "HTTP ingest requests answered, by endpoint and status code.",
                ["endpoint", "code"],
                registry=registry,
            ),
            messages=messages,
        )


@dataclass(frozen=True)
class NotifierMetrics:
    """`leadstream notifier`: on its own web port. `channel` is a channel type."""

    alerts: Counter  # result: accepted, no_channels, expired, unreadable
    deliveries: Counter  # channel, outcome: delivered, dead_lettered, already_delivered
    retries: Counter  # channel
    dead_letters: Counter  # channel, cause (schemas.notify.DlqCause)
    circuits: Gauge  # channel, state: channels of the type in each circuit state
    delivery_latency: Histogram  # channel: alert created to delivered

    @classmethod
    def create(cls, registry: CollectorRegistry) -> NotifierMetrics:
        channels = get_args(ChannelType)
        alerts = Counter(
            "leadstream_notifier_alerts_total",
            "Alerts read from rep.alerts, by what became of them.",
            ["result"],
            registry=registry,
        )
        for result in ("accepted", "no_channels", "expired", "unreadable"):
            alerts.labels(result=result)
        deliveries = Counter(
            "leadstream_notifier_deliveries_total",
            "Deliveries of an alert to one channel, by channel type and outcome.",
            ["channel", "outcome"],
            registry=registry,
        )
        retries = Counter(
            "leadstream_notifier_retries_total",
            "Attempts made again after a failed one, by channel type.",
            ["channel"],
            registry=registry,
        )
        dead = Counter(
            "leadstream_notifier_dead_letters_total",
            "Deliveries given up and written to rep.alerts.dlq, by channel type and cause.",
            ["channel", "cause"],
            registry=registry,
        )
        for channel in channels:
            retries.labels(channel=channel)
            for outcome in ("delivered", "dead_lettered", "already_delivered"):
                deliveries.labels(channel=channel, outcome=outcome)
            for cause in get_args(DlqCause):
                dead.labels(channel=channel, cause=cause)
        return cls(
            alerts=alerts,
            deliveries=deliveries,
            retries=retries,
            dead_letters=dead,
            circuits=Gauge(
                "leadstream_notifier_circuits",
                "Channels of each type whose circuit is closed, open or half_open.",
                ["channel", "state"],
                registry=registry,
            ),
            delivery_latency=Histogram(
                "leadstream_notifier_alert_to_delivery_seconds",
                "From the alert's created_at to its delivery on a channel.",
                ["channel"],
                buckets=_LATENCY_BUCKETS_S,
                registry=registry,
            ),
        )


def state_gauges(
    registry: CollectorRegistry,
    *,
    leads: Callable[[], float],
    state_bytes: Callable[[], float],
    clock: Callable[[], float],
    max_age_s: float = 10.0,
) -> None:
    """Gauges read at scrape time from the worker's local lead table.

    Summing the state's bytes walks every lead, so it is recomputed at most every
    `max_age_s` seconds: a scrape never costs O(leads) more often than that.
    """
    cached = [float("-inf"), 0.0]  # computed at, value

    def bytes_now() -> float:
        now = clock()
        if now - cached[0] >= max_age_s:
            cached[0], cached[1] = now, state_bytes()
        return cached[1]

    Gauge(
        "leadstream_leads_stored", "Leads in this worker's local table.", registry=registry
    ).set_function(leads)
    Gauge(
        "leadstream_state_bytes",
        "Encoded bytes of lead state in this worker's local table.",
        registry=registry,
    ).set_function(bytes_now)


def render(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)
