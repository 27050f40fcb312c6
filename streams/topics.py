"""Topic and table names, partition counts and key invariants, in one place."""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

__all__ = [
    "ACCOUNTS_TABLE",
    "CRM_ACCOUNTS_TOPIC_CONFIG",
    "CRM_ACCOUNTS_TOPIC_PARTITIONS",
    "DELIVERED_TOPIC_CONFIG",
    "DELIVERED_TOPIC_PARTITIONS",
    "ERASURE_TOPIC_CONFIG",
    "FORGOTTEN_TOPIC_CONFIG",
    "LEADS_TABLE",
    "MODEL_TOPIC_CONFIG",
    "MODEL_TOPIC_PARTITIONS",
    "Topics",
    "account_partition",
    "person_partition",
]

#: Faust table of lead state, keyed by person key; its changelog is `<app id>-leads-changelog`.
LEADS_TABLE = "leads"
#: Faust table of account roll-ups, keyed by account domain.
ACCOUNTS_TABLE = "accounts"

#: `lead.model` has one partition: every worker reads all of it, in publish order.
MODEL_TOPIC_PARTITIONS = 1
#: Compacted, so the newest publish of each model name is kept for good.
MODEL_TOPIC_CONFIG: Mapping[str, str] = MappingProxyType({"cleanup.policy": "compact"})

#: `crm.accounts` has one partition: every worker reads all of it into its account directory.
CRM_ACCOUNTS_TOPIC_PARTITIONS = 1
#: Compacted, so the newest record of each account_id is kept (a null value deletes it).
CRM_ACCOUNTS_TOPIC_CONFIG: Mapping[str, str] = MappingProxyType({"cleanup.policy": "compact"})

#: `rep.alerts.delivered` has one partition: every notifier reads all of it at start-up.
DELIVERED_TOPIC_PARTITIONS = 1
#: Compacted (one record per delivery key) and deleted after 14 days, longer than the
#: notifier's dedupe window (LEADSTREAM_NOTIFIER_DEDUPE_DAYS, 8) and rep.alerts' retention.
DELIVERED_TOPIC_CONFIG: Mapping[str, str] = MappingProxyType(
    {"cleanup.policy": "compact,delete", "retention.ms": str(14 * 24 * 3600 * 1000)}
)


#: `leadstream.erasure` requests name a person in clear (the worker must find them): kept
#: 7 days, long enough for a stopped worker to come back and read them, and no longer.
ERASURE_TOPIC_CONFIG: Mapping[str, str] = MappingProxyType(
    {"cleanup.policy": "delete", "retention.ms": str(7 * 24 * 3600 * 1000)}
)
#: `leads.forgotten` is the record downstream systems erase by: compacted, one per lead_id,
#: kept for good (it holds ids and a hash, no personal data in clear).
FORGOTTEN_TOPIC_CONFIG: Mapping[str, str] = MappingProxyType({"cleanup.policy": "compact"})


@dataclass(frozen=True)
class Topics:
    """Every topic Leadstream reads or writes.

    `prefix` exists so tests (and tenants sharing a cluster) can isolate their topics;
    production leaves it empty and gets the documented names.
    """

    prefix: str = ""

    @property
    def raw(self) -> str:
        """Input: one Segment message per record; any key (usually none)."""
        return f"{self.prefix}engagement.raw"

    @property
    def dlq(self) -> str:
        """Dead letters: raw inputs that could not be used, with the reason; key as received."""
        return f"{self.prefix}engagement.dlq"

    @property
    def person_events(self) -> str:
        """Repartition (the only one): micro-batches of validated events.

        Invariant: every event of person key K is in partition `person_partition(K, n)`,
        so one person's state lives in one partition. The record key is the partition label.
        """
        return f"{self.prefix}leadstream.person-events"

    @property
    def scored(self) -> str:
        """Output: every score or stage change; keyed by lead_id."""
        return f"{self.prefix}leads.scored"

    @property
    def routed(self) -> str:
        """Output: hand-offs the SFA consumes; keyed by lead_id."""
        return f"{self.prefix}leads.routed"

    @property
    def alerts(self) -> str:
        """Output: rep alerts; keyed by rep_id."""
        return f"{self.prefix}rep.alerts"

    @property
    def alerts_dlq(self) -> str:
        """Alerts the notifier could not deliver to a channel (`UndeliveredAlert`), with the
        last error; keyed by rep_id. Not in `all()`: the notifier creates it."""
        return f"{self.prefix}rep.alerts.dlq"

    @property
    def alerts_delivered(self) -> str:
        """Deliveries the notifier made (`Delivered`), keyed by `<alert_id>|<channel_id>`.

        Not in `all()`: DELIVERED_TOPIC_PARTITIONS partitions, DELIVERED_TOPIC_CONFIG
        (compacted, time-bounded). Every notifier reads it whole, without a group.
        """
        return f"{self.prefix}rep.alerts.delivered"

    @property
    def merged(self) -> str:
        """Output: leads found to be one person (`LeadMerged`); keyed by surviving lead_id."""
        return f"{self.prefix}leads.merged"

    @property
    def feedback(self) -> str:
        """Input: sales feedback from the SFA (`SalesFeedback`), keyed by lead_id; the rep
        inbox writes here too."""
        return f"{self.prefix}sfa.feedback"

    @property
    def erasure(self) -> str:
        """Input: erasure requests (`ErasureRequest`) from `leadstream forget`, keyed by
        request_id. Not in `all()`: ERASURE_TOPIC_CONFIG (kept 7 days); the intake reads it."""
        return f"{self.prefix}leadstream.erasure"

    @property
    def forgotten(self) -> str:
        """Output: erased leads (`LeadForgotten`); keyed by lead_id (by request_id when no
        lead was found). Not in `all()`: FORGOTTEN_TOPIC_CONFIG (compacted)."""
        return f"{self.prefix}leads.forgotten"

    @property
    def sla(self) -> str:
        """Output: every step of a hand-off's acceptance clock (`SlaEvent`); keyed by lead_id."""
        return f"{self.prefix}leads.sla"

    @property
    def account_updates(self) -> str:
        """Repartition: micro-batches of contact score changes (`ContactUpdateBatch`).

        Invariant: every update of account A is in partition `account_partition(A, n)`;
        the record key is the partition label.
        """
        return f"{self.prefix}leadstream.account-updates"

    @property
    def accounts_scored(self) -> str:
        """Output: account roll-ups (`AccountScored`); keyed by account domain."""
        return f"{self.prefix}accounts.scored"

    @property
    def model(self) -> str:
        """Published lead models (`PublishedModel`), keyed by model name; the newest wins.

        Not in `all()`: it has MODEL_TOPIC_PARTITIONS partitions, not the configured count,
        and MODEL_TOPIC_CONFIG (compacted). Every worker reads partition 0 without a group.
        """
        return f"{self.prefix}lead.model"

    @property
    def crm_accounts(self) -> str:
        """CRM accounts (`CrmAccount`), keyed by account_id; a null value deletes the account.

        Not in `all()`: CRM_ACCOUNTS_TOPIC_PARTITIONS partitions and CRM_ACCOUNTS_TOPIC_CONFIG
        (compacted). Every worker reads partition 0 whole, without a group.
        """
        return f"{self.prefix}crm.accounts"

    def all(self) -> tuple[str, ...]:
        """The topics with the configured partition count (person-partitioned or keyed)."""
        return (
            self.raw,
            self.dlq,
            self.person_events,
            self.scored,
            self.routed,
            self.alerts,
            self.merged,
            self.sla,
            self.feedback,
            self.account_updates,
            self.accounts_scored,
        )


def person_partition(person_key: str, partitions: int) -> int:
    """The partition of `leadstream.person-events` (and the leads table) for a person.

    CRC-32 because it is stable across Python versions and processes (unlike `hash`)
    and cheap; changing it would scatter existing state, so it never changes.
    """
    return zlib.crc32(person_key.encode("utf-8")) % partitions


def account_partition(account: str, partitions: int) -> int:
    """The partition of `leadstream.account-updates` (and the accounts table) for an account."""
    return zlib.crc32(account.encode("utf-8")) % partitions
