"""The rep inbox's decisions: signed rep links, the feedback a click makes, recent alerts per rep.

Pure: no I/O, no clock of its own. The HTTP side (page, live stream, clicks) and the reader of
`rep.alerts` are in `streams.inbox_http`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections import OrderedDict
from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, Literal

from pydantic import ValidationError

from schemas.decisions import RepAlert
from schemas.feedback import REJECT_REASONS, SalesFeedback

__all__ = [
    "DEFAULT_LINK_DAYS",
    "INBOX_STATUSES",
    "RECENT_PER_REP",
    "Click",
    "Decision",
    "Inbox",
    "Refusal",
    "alert_view",
    "feedback_for",
    "feedback_id",
    "inbox_url",
    "rep_of",
    "token_expiry",
    "token_for",
]

#: Alerts kept per rep for the page and for checking clicks: a rep's inbox shows this many.
RECENT_PER_REP: Final = 50
#: What a rep can answer from the inbox; the SFA reports the later stages.
INBOX_STATUSES: Final = ("accepted", "rejected")
InboxStatus = Literal["accepted", "rejected"]

#: How long an inbox link opens by default (LEADSTREAM_INBOX_LINK_DAYS).
DEFAULT_LINK_DAYS: Final = 30

# Domain separation: a MAC made for the inbox is worth nothing elsewhere. v2 signs the expiry
# too; v1 links (no expiry) no longer open.
_CONTEXT: Final = b"leadstream-inbox-v2\x00"
_MAX_TOKEN_CHARS: Final = 512


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(rep_id: str, expires_s: int, secret: str) -> bytes:
    signed = _CONTEXT + rep_id.encode("utf-8") + b"\x00" + str(expires_s).encode("ascii")
    return hmac.new(secret.encode("utf-8"), signed, hashlib.sha256).digest()


def token_for(rep_id: str, secret: str, *, expires_at: datetime) -> str:
    """The rep's inbox token: `<rep id>.<expiry, Unix s>.<HMAC-SHA256>`, safe in a URL.

    The rep id and the MAC are base64url; the MAC covers the rep id and the expiry both.
    """
    expires_s = int(expires_at.timestamp())
    return f"{_b64(rep_id.encode('utf-8'))}.{expires_s}.{_b64(_mac(rep_id, expires_s, secret))}"


def token_expiry(token: str) -> datetime | None:
    """When `token` stops opening the inbox (unverified: for showing, not for deciding)."""
    parts = token.split(".")
    expires_s = _expiry_s(parts[1]) if len(parts) == 3 else None
    return None if expires_s is None else datetime.fromtimestamp(expires_s, UTC)


def _expiry_s(text: str) -> int | None:
    # At most 11 digits: any date a datetime can hold, and no huge number to parse.
    return int(text) if text.isascii() and text.isdigit() and len(text) <= 11 else None


def rep_of(token: str | None, secret: str, reps: Collection[str], *, now: datetime) -> str | None:
    """The rep `token` was made for, if its signature holds, it has not expired at `now`,
    and the rep is in `reps`.

    The signature is compared in constant time; anything malformed is simply None.
    """
    if not token or len(token) > _MAX_TOKEN_CHARS or token.count(".") != 2:
        return None
    encoded_rep, expires, encoded_mac = token.split(".")
    expires_s = _expiry_s(expires)
    if expires_s is None:
        return None
    try:
        rep_id = _unb64(encoded_rep).decode("utf-8")
        mac = _unb64(encoded_mac)
    except (binascii.Error, ValueError):
        return None
    if not hmac.compare_digest(mac, _mac(rep_id, expires_s, secret)):
        return None
    if now.timestamp() >= expires_s:
        return None
    return rep_id if rep_id in reps else None


def inbox_url(base_url: str, token: str) -> str:
    """The link a rep opens: `<base>/inbox?token=...`."""
    return f"{base_url.rstrip('/')}/inbox?token={token}"


@dataclass(frozen=True, slots=True)
class Click:
    """Accept or Reject pressed on one alert of the inbox, as the page posts it."""

    lead_id: str
    alert_id: str
    status: str
    reason: str | None = None
    reason_text: str | None = None


@dataclass(frozen=True, slots=True)
class Refusal:
    """A click that makes no feedback: the HTTP status and a sentence for the rep."""

    status: int
    message: str


@dataclass(frozen=True, slots=True)
class Decision:
    """What a rep answered to an alert, as the inbox shows it."""

    status: InboxStatus
    reason: str | None
    reason_text: str | None


def feedback_id(lead_id: str, alert_id: str, status: str) -> str:
    """Deterministic: pressing the same button twice (or a retried post) is one feedback."""
    digest = hashlib.sha256(f"{lead_id}\x00{alert_id}\x00{status}".encode()).hexdigest()
    return f"fb_inbox_{digest[:32]}"


def feedback_for(
    click: Click, *, alert: RepAlert | None, rep_id: str, now: datetime
) -> SalesFeedback | Refusal:
    """The `sfa.feedback` record for `click` by `rep_id`, or why there is none.

    `alert` is the rep's own alert of that id (None if the rep has no such alert): a rep can
    act only on their own leads, and another rep's alert reads exactly like a missing one.
    """
    if alert is None or alert.rep_id != rep_id or alert.lead_id != click.lead_id:
        return Refusal(404, "this alert is not in your inbox")
    if click.status not in INBOX_STATUSES:
        return Refusal(400, f"status must be one of {', '.join(INBOX_STATUSES)}")
    reason = reason_text = None
    if click.status == "rejected":
        reason = click.reason
        reason_text = (click.reason_text or "").strip() or None
        if reason not in REJECT_REASONS:
            return Refusal(400, f"a rejection needs a reason: one of {', '.join(REJECT_REASONS)}")
        if reason == "other" and reason_text is None:
            return Refusal(400, "say why in a few words when the reason is 'other'")
        if reason_text is not None and len(reason_text) > 500:
            return Refusal(400, "the reason text is over 500 characters")
    try:
        return SalesFeedback(
            feedback_id=feedback_id(click.lead_id, click.alert_id, click.status),
            lead_id=click.lead_id,
            rep_id=rep_id,
            status=click.status,
            reason=reason,
            reason_text=reason_text,
            occurred_at=now,
        )
    except ValidationError as exc:  # e.g. ids over the schema's lengths
        return Refusal(400, exc.errors(include_url=False)[0]["msg"])


class Inbox:
    """The newest alerts of each rep (at most `per_rep`, newest first) and their answers.

    Fed in topic order; a re-delivered alert (same `alert_id`) is kept once. Answers are
    this process's own: another worker serving the same rep does not see them.
    """

    def __init__(self, *, per_rep: int = RECENT_PER_REP) -> None:
        self._per_rep = per_rep
        self._alerts: dict[str, OrderedDict[str, RepAlert]] = {}
        self._decisions: dict[tuple[str, str], Decision] = {}

    def add(self, alert: RepAlert) -> bool:
        """Keep `alert`; False if it was already there (nothing changes)."""
        alerts = self._alerts.setdefault(alert.rep_id, OrderedDict())
        if alert.alert_id in alerts:
            return False
        alerts[alert.alert_id] = alert
        while len(alerts) > self._per_rep:
            dropped, _ = alerts.popitem(last=False)
            self._decisions.pop((alert.rep_id, dropped), None)
        return True

    def recent(self, rep_id: str) -> list[RepAlert]:
        """The rep's alerts, newest first."""
        return list(reversed(self._alerts.get(rep_id, {}).values()))

    def find(self, rep_id: str, alert_id: str) -> RepAlert | None:
        """The rep's alert of that id; None for another rep's or one no longer kept."""
        alerts = self._alerts.get(rep_id)
        return None if alerts is None else alerts.get(alert_id)

    def decide(self, rep_id: str, alert_id: str, decision: Decision) -> None:
        if alert_id in self._alerts.get(rep_id, {}):
            self._decisions[(rep_id, alert_id)] = decision

    def decision(self, rep_id: str, alert_id: str) -> Decision | None:
        return self._decisions.get((rep_id, alert_id))


def alert_view(alert: RepAlert, decision: Decision | None) -> dict[str, Any]:
    """What the page gets of an alert (JSON-ready): who, company, message, score, times."""
    return {
        "alert_id": alert.alert_id,
        "lead_id": alert.lead_id,
        "email": alert.email,
        "company": alert.company,
        "message": alert.message,
        "score": alert.score,
        "trigger": alert.trigger,
        "event_at": alert.event_at.isoformat(),
        "created_at": alert.created_at.isoformat(),
        "decision": None
        if decision is None
        else {
            "status": decision.status,
            "reason": decision.reason,
            "reason_text": decision.reason_text,
        },
    }
