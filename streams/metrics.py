"""Prometheus metrics, created against a registry that is passed in."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import get_args

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from schemas.decisions import DlqReason, LeadScored, SlaEvent
from schemas.feedback import REJECT_REASONS, SalesFeedback
from schemas.internal import LeadState
from schemas.notify import ChannelType, DlqCause
from streams.kpi import NO_CURRENCY, NONE

__all__ = [
    "CONTENT_TYPE_LATEST",
    "OTHER",
    "STATE_BYTES_MAX_AGE_S",
    "IngestMetrics",
    "KpiMetrics",
    "LabelValues",
    "Metrics",
    "NotifierMetrics",
    "render",
    "state_gauges",
]

# Event time to alert: seconds to minutes matter; the SLA conversation starts at 5 minutes.
_LATENCY_BUCKETS_S = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 900, 3600)
# Hand-off to acceptance: 30 s to a day (hot leads in minutes, MQLs in hours).
_SPEED_TO_LEAD_BUCKETS_S = (30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400, 28800, 86400)
#: The label value of everything past a label's bound.
OTHER = "other"
#: Funnel stages a lead can enter: the sales funnel and the ways out of it.
FUNNEL_STAGES = ("mql", "sal", "opportunity", "won", "lost", "recycled")


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
    forgotten: Counter
    model_switches: Counter
    model_rejected: Counter
    model_info: Gauge
    core_info: Gauge
    accounts_loaded: Gauge
    account_records_rejected: Counter
    intake_lag: Gauge  # topic: records behind the end of the intake's assigned partitions
    sla_steps: Counter  # step: SlaEvent.step
    input_rewinds: Counter  # stage: "leads" | "accounts"
    handed_over: Counter  # person-events records applied in-process (streams/app.py)
    intake_held: Counter  # seconds the intake waited for the leads stage (read-ahead bound)
    recovery_rewinds: Counter  # stalled table recoveries sought back (streams/recovery_watch.py)
    state_writes: Histogram  # seconds of each write of a partition's lead state (streams/app.py)

    @classmethod
    def create(cls, registry: CollectorRegistry) -> Metrics:
        forgotten = Counter(
            "leadstream_erasures_total",
            "Erasure requests answered on leads.forgotten, by whether a lead was found.",
            ["found"],
            registry=registry,
        )
        for found in ("true", "false"):
            forgotten.labels(found=found)
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
        rewinds = Counter(
            "leadstream_input_rewinds_total",
            "Times a stage found its consumer had skipped records and sought back to them.",
            ["stage"],
            registry=registry,
        )
        for stage in ("leads", "accounts"):
            rewinds.labels(stage=stage)
        return cls(
            input_rewinds=rewinds,
            recovery_rewinds=Counter(
                "leadstream_recovery_rewinds_total",
                "Changelog partitions a stalled table recovery sought back to, its consumer "
                "being past records it never delivered (LEADSTREAM_RECOVERY_STALL_S).",
                registry=registry,
            ),
            state_writes=Histogram(
                "leadstream_state_write_seconds",
                "Seconds each write of a partition's lead state took: waiting for the "
                "acknowledgement of the outputs of the records it covers and the contact "
                "updates' send, then writing the changed leads to the changelog "
                "(LEADSTREAM_STATE_FLUSH_MS).",
                buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 1.5, 2.5, 5, 10, 30, 60),
                registry=registry,
            ),
            handed_over=Counter(
                "leadstream_handed_over_records_total",
                "Person-events records the leads stage applied as its own worker wrote them "
                "(the intake, the stage's identity messages), before its consumer fetched them.",
                registry=registry,
            ),
            intake_held=Counter(
                "leadstream_intake_held_seconds_total",
                "Seconds the intake waited before forwarding a fetch for this worker's leads "
                "stage to apply what it had written (its read-ahead bound; LEADSTREAM_HANDOVER).",
                registry=registry,
            ),
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
            forgotten=forgotten,
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
            core_info=Gauge(
                "leadstream_core_info",
                "1 for the scoring core this worker runs: compiled (mypyc) or python.",
                ["core"],
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


@dataclass
class LabelValues:
    """Bounds a label's values: `allowed` only, or else the first `limit` distinct values
    seen; everything else is `other` (an email address always), and a missing value is
    `missing`."""

    allowed: frozenset[str] = frozenset()
    limit: int = 20
    missing: str = NONE
    seen: set[str] = field(default_factory=set)

    def __call__(self, value: str | None) -> str:
        if not value:
            return self.missing
        if self.allowed:
            return value if value in self.allowed else OTHER
        if "@" in value:  # a UTM source set to someone's email: never a label value
            return OTHER
        if value in self.seen:
            return value
        if len(self.seen) < self.limit:
            self.seen.add(value)
            return value
        return OTHER


@dataclass(frozen=True)
class KpiMetrics:
    """The shared KPIs (streams/kpi.py) counted live, as records are emitted.

    `source` is a lead's first-touch UTM source, bounded by `LabelValues` (an allowlist
    from the `kpi_sources` setting, else the first 20 seen); `currency` is an ISO 4217 code
    (the first 10 seen, `XXX` for an amount without one).
    """

    funnel_entries: Counter  # stage, source
    revenue_won: Counter  # source, currency
    speed_to_lead: Histogram  # priority
    sla_breaches: Counter  # priority
    rejections: Counter  # reason
    sources: LabelValues
    currencies: LabelValues

    @classmethod
    def create(cls, registry: CollectorRegistry, *, sources: Iterable[str] = ()) -> KpiMetrics:
        allowed = frozenset(sources)
        funnel = Counter(
            "leadstream_funnel_entries_total",
            "Leads entering a stage (a stage change on leads.scored), by stage and first-touch "
            "UTM source.",
            ["stage", "source"],
            registry=registry,
        )
        for stage in FUNNEL_STAGES:  # zeros for the bounded set, so ratios work from start
            for source in (*sorted(allowed), OTHER, NONE) if allowed else (NONE,):
                funnel.labels(stage=stage, source=source)
        speed = Histogram(
            "leadstream_speed_to_lead_seconds",
            "Hand-off to acceptance (the SLA step accepted), by priority.",
            ["priority"],
            buckets=_SPEED_TO_LEAD_BUCKETS_S,
            registry=registry,
        )
        breaches = Counter(
            "leadstream_sla_breaches_total",
            "Hand-off SLA steps escalated or reassigned, by priority.",
            ["priority"],
            registry=registry,
        )
        for priority in get_args(SlaEvent.model_fields["priority"].annotation):
            speed.labels(priority=priority)
            breaches.labels(priority=priority)
        rejections = Counter(
            "leadstream_rejections_total",
            "Leads rejected by sales (feedback status rejected), by reason.",
            ["reason"],
            registry=registry,
        )
        for reason in REJECT_REASONS:
            rejections.labels(reason=reason)
        return cls(
            funnel_entries=funnel,
            revenue_won=Counter(
                "leadstream_revenue_won_total",
                "Won amounts on sfa.feedback, in units of the currency (not converted), by "
                "first-touch UTM source and ISO 4217 currency.",
                ["source", "currency"],
                registry=registry,
            ),
            speed_to_lead=speed,
            sla_breaches=breaches,
            rejections=rejections,
            sources=LabelValues(allowed=allowed, limit=20),
            currencies=LabelValues(limit=10, missing=NO_CURRENCY),
        )

    def count(
        self,
        decisions: Iterable[object],
        *,
        leads: Mapping[str, LeadState],
        feedback: Iterable[tuple[SalesFeedback, LeadState]] = (),
    ) -> None:
        """Count emitted records; `leads` are the changed leads (by any key) whose first
        touch labels them, `feedback` the sales feedback applied with its lead."""
        by_id = {lead.lead_id: lead for lead in leads.values() if lead.alias_of is None}
        for decision in decisions:
            if isinstance(decision, LeadScored):
                if decision.stage != decision.previous_stage and decision.stage in FUNNEL_STAGES:
                    lead = by_id.get(decision.lead_id)
                    source = self.sources(lead.source if lead is not None else None)
                    self.funnel_entries.labels(stage=decision.stage, source=source).inc()
            elif isinstance(decision, SlaEvent):
                if decision.step == "accepted" and decision.time_to_accept_s is not None:
                    self.speed_to_lead.labels(priority=decision.priority).observe(
                        decision.time_to_accept_s
                    )
                elif decision.step in ("escalated", "reassigned"):
                    self.sla_breaches.labels(priority=decision.priority).inc()
        for item, lead in feedback:
            if item.status == "won" and item.amount:
                self.revenue_won.labels(
                    source=self.sources(lead.source), currency=self.currencies(item.currency)
                ).inc(item.amount)
            elif item.status == "rejected" and item.reason in REJECT_REASONS:
                self.rejections.labels(reason=item.reason).inc()


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


#: How old a `leadstream_state_bytes` value may be (summing it walks every lead).
STATE_BYTES_MAX_AGE_S = 10.0


def state_gauges(
    registry: CollectorRegistry,
    *,
    leads: Callable[[], float],
    state_bytes: Callable[[], float],
    clock: Callable[[], float],
    max_age_s: float = STATE_BYTES_MAX_AGE_S,
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
