"""The data-quality report: duplicates merged, missing timelines, free mail, unmatched leads
and dead letters over a time range, from what Leadstream wrote to its topics."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from schemas.decisions import UNKNOWN, DeadLetter, HandOff, LeadMerged
from streams.matching import email_domain

__all__ = ["QualityReport", "quality_report", "render_quality"]


@dataclass(frozen=True, slots=True)
class QualityReport:
    since: datetime
    until: datetime
    merges: int  # leads.merged records: people found under more than one identity
    merged_leads: int  # leads folded into another
    merges_by_why: dict[str, int]
    handoffs: int  # distinct leads handed to sales in the range (latest hand-off each)
    unknown_timeline: int
    free_mail: int  # handed-off leads whose email is a free-mail address
    unmatched: int  # handed-off leads matched to no CRM account
    no_email: int
    dead_letters: int
    dead_by_reason: dict[str, int] = field(default_factory=dict)


def quality_report(
    *,
    since: datetime,
    until: datetime,
    merges: Iterable[LeadMerged],
    handoffs: Iterable[HandOff],
    dead_letters: Iterable[DeadLetter],
    free_mail: frozenset[str],
) -> QualityReport:
    """Figures over records already filtered to [since, until); `free_mail`: the domains
    that say nothing about an employer (streams.matching.free_mail_domains)."""
    merged = list(merges)
    latest: dict[str, HandOff] = {}
    for handoff in handoffs:  # a lead handed off twice counts once, as it is now
        held = latest.get(handoff.lead_id)
        if held is None or held.created_at <= handoff.created_at:
            latest[handoff.lead_id] = handoff
    leads = list(latest.values())
    dead = Counter(d.reason for d in dead_letters)
    return QualityReport(
        since=since,
        until=until,
        merges=len(merged),
        merged_leads=sum(len(m.merged_lead_ids) for m in merged),
        merges_by_why=dict(Counter(m.why for m in merged)),
        handoffs=len(leads),
        unknown_timeline=sum(1 for h in leads if h.purchase_timeline == UNKNOWN),
        free_mail=sum(1 for h in leads if email_domain(h.email) in free_mail),
        unmatched=sum(1 for h in leads if h.account_id is None),
        no_email=sum(1 for h in leads if not h.email),
        dead_letters=sum(dead.values()),
        dead_by_reason=dict(dead.most_common()),
    )


def render_quality(report: QualityReport) -> str:
    def share(n: int) -> str:
        return f"{n:,} ({n / report.handoffs:.0%})" if report.handoffs else f"{n:,} (n/a)"

    why = ", ".join(f"{k} {v:,}" for k, v in sorted(report.merges_by_why.items())) or "none"
    lines = [
        f"Data quality {report.since:%Y-%m-%d %H:%M} to {report.until:%Y-%m-%d %H:%M} UTC",
        "",
        f"duplicates merged          {report.merged_leads:,} leads in {report.merges:,} merges"
        f" ({why})",
        f"leads handed to sales      {report.handoffs:,}",
        f"  with unknown timeline    {share(report.unknown_timeline)}",
        f"  with a free-mail address {share(report.free_mail)}",
        f"  matched to no CRM account {share(report.unmatched)}",
        f"  with no email            {share(report.no_email)}",
        f"dead letters               {report.dead_letters:,}",
    ]
    lines += [f"  {reason:<24} {n:,}" for reason, n in report.dead_by_reason.items()]
    return "\n".join(lines) + "\n"
