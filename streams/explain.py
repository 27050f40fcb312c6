"""`leadstream explain LEAD_ID`: one lead's whole story, from what the topics hold.

Pure: `story` takes the records already read and decoded and returns the lines to print.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from schemas.decisions import HandOff, LeadMerged, LeadScored, RepAlert, SlaEvent
from schemas.feedback import SalesFeedback
from schemas.internal import PersonEvent

__all__ = ["Line", "lead_ids", "render_story", "story"]


@dataclass(frozen=True, slots=True, order=True)
class Line:
    at: datetime
    order: int  # ties: events before what they caused
    what: str
    detail: tuple[str, ...] = ()


def lead_ids(lead_id: str, merges: Iterable[LeadMerged]) -> tuple[str, set[str]]:
    """The lead a lead id lives on as now (after merges), and every id it has had."""
    merges = list(merges)
    into = {m: merge.lead_id for merge in merges for m in merge.merged_lead_ids}
    current = lead_id
    for _ in range(64):  # merged ids form chains; bounded, in case of a cycle in bad data
        if current not in into:
            break
        current = into[current]
    ids = {current}
    grew = True
    while grew:
        before = len(ids)
        ids |= {m for merge in merges if merge.lead_id in ids for m in merge.merged_lead_ids}
        grew = len(ids) > before
    return current, ids


def story(
    *,
    ids: set[str],
    events: Iterable[tuple[str, PersonEvent]],  # (lead id of the event's person key, event)
    scored: Iterable[LeadScored],
    routed: Iterable[HandOff],
    alerts: Iterable[RepAlert],
    merges: Iterable[LeadMerged],
    sla: Iterable[SlaEvent],
    feedback: Iterable[SalesFeedback],
) -> list[Line]:
    lines: list[Line] = []
    for lead_id, e in events:
        if lead_id in ids:
            what = {"track": f"event: {e.name}", "page": f"page view: {e.name}"}.get(
                e.kind, f"{e.kind}" + (f" ({', '.join(sorted(e.traits))})" if e.traits else "")
            )
            lines.append(Line(_dt(e.ts_ms), 0, what, (f"messageId {e.mid}, key {e.pk}",)))
    for s in scored:
        if s.lead_id in ids:
            what = f"score {s.previous_score} -> {s.score}, fit {s.fit} ({s.grade})"
            if s.stage != s.previous_stage:
                what += f"; stage {s.previous_stage} -> {s.stage}: {s.reason}"
            detail = tuple(f"{x.points:+d}  {x.rule}  {x.label} (x{x.count})" for x in s.breakdown)
            lines.append(Line(s.occurred_at, 1, what, detail))
    for h in routed:
        if h.lead_id in ids:
            detail = (
                f"routing rule {h.routing_rule}"
                + (f", team {h.routing_team}" if h.routing_team else ""),
                *(f"  {step}" for step in h.routing_trail),
                f"timeline {h.purchase_timeline}, budget {h.budget}, authority {h.authority}",
            )
            lines.append(
                Line(
                    h.created_at, 2, f"handed off to {h.rep_name} ({h.rep_id}): {h.reason}", detail
                )
            )
    for a in alerts:
        if a.lead_id in ids:
            lines.append(Line(a.created_at, 3, f"alert to {a.rep_name}: {a.message}", (a.trigger,)))
    for m in merges:
        if m.lead_id in ids:
            merged = ", ".join(m.merged_lead_ids)
            lines.append(Line(m.created_at, 4, f"merged {merged} into {m.lead_id} (same {m.why})"))
    for step in sla:
        if step.lead_id in ids:
            to = f" -> {step.to_rep_id}" if step.to_rep_id else ""
            what = f"SLA {step.step} ({step.priority}, {step.rep_id}{to}): {step.reason}"
            lines.append(Line(step.created_at, 5, what))
    for f in feedback:
        if f.lead_id in ids:
            said = ": ".join(x for x in (f.reason, f.reason_text) if x)
            amount = f" {f.amount:,.0f} {f.currency or ''}".rstrip() if f.amount is not None else ""
            lines.append(
                Line(
                    f.occurred_at, 6, f"sales: {f.status}{amount}" + (f" ({said})" if said else "")
                )
            )
    return sorted(lines)


def render_story(lead_id: str, current: str, ids: set[str], lines: list[Line]) -> str:
    head = f"Lead {lead_id}"
    if current != lead_id:
        head += f" (merged into {current})"
    others = sorted(ids - {current})
    if others:
        head += f"; also known as {', '.join(others)}"
    out = [head, ""]
    if not lines:
        out.append("nothing on the topics for this lead")
    for line in lines:
        out.append(f"{line.at:%Y-%m-%d %H:%M:%S}  {line.what}")
        out.extend(f"                     {d}" for d in line.detail)
    return "\n".join(out) + "\n"


def _dt(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)
