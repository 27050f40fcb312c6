"""Rep notifications, the pure part: the channels file, payloads, signatures, retries, circuits.

Nothing here does I/O or reads a clock: `streams/notifier.py` consumes `rep.alerts`, asks
this module what to send where, sends it, and reports back what happened.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import random
import re
from collections import Counter
from collections.abc import Container, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import quote

import orjson
import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from schemas.decisions import RepAlert
from schemas.notify import ChannelType, DlqCause, UndeliveredAlert
from streams.codec import encode
from streams.inbox import DEFAULT_LINK_DAYS, token_for
from streams.lead_model import _line_of

__all__ = [
    "ALERT_ID_HEADER",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "BatchPlan",
    "Channel",
    "ChannelsConfig",
    "ChannelsError",
    "Circuit",
    "CircuitPolicy",
    "DeliveredSet",
    "Delivery",
    "Email",
    "EmailChannel",
    "Failure",
    "HttpPost",
    "RetryPolicy",
    "SlackChannel",
    "Smtp",
    "WebhookChannel",
    "admit",
    "backoff_s",
    "channel_id",
    "circuit_failed",
    "circuit_succeeded",
    "delivery_key",
    "email_message",
    "http_failure",
    "lead_link",
    "load_channels",
    "parse_channels",
    "plan_batch",
    "render",
    "schedule",
    "sign",
    "slack_payload",
    "to_mime",
    "undelivered",
    "verify",
    "webhook_request",
]

SIGNATURE_HEADER = "X-Leadstream-Signature"
TIMESTAMP_HEADER = "X-Leadstream-Timestamp"
#: The same on every attempt at one alert: receivers deduplicate retries by it.
ALERT_ID_HEADER = "X-Leadstream-Alert-Id"
_USER_AGENT = "Leadstream-Notifier/1"

# ------------------------------------------------------------------ the channels file


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


_HTTP_URL = r"^https?://[^\s/?#]+\S*$"


def _http_url(value: str) -> str:
    if not re.match(_HTTP_URL, value):
        raise ValueError("must be an http:// or https:// URL")
    return value


class SlackChannel(_Strict):
    """A Slack incoming webhook; its URL is a credential, so it is kept secret."""

    type: Literal["slack"]
    webhook_url: SecretStr

    @field_validator("webhook_url")
    @classmethod
    def _url(cls, value: SecretStr) -> SecretStr:
        _http_url(value.get_secret_value())
        return value


class WebhookChannel(_Strict):
    """A generic webhook: the alert as JSON, signed with `secret` (HMAC-SHA256)."""

    type: Literal["webhook"]
    url: Annotated[str, Field(pattern=_HTTP_URL)]
    secret: SecretStr

    @field_validator("secret")
    @classmethod
    def _long_enough(cls, value: SecretStr) -> SecretStr:
        if len(value.get_secret_value()) < 16:
            raise ValueError("the secret must be at least 16 characters")
        return value


class EmailChannel(_Strict):
    """An email to `to`, sent through the file's `smtp` server."""

    type: Literal["email"]
    to: Annotated[str, Field(pattern=r"^[^@\s,<>]+@[^@\s,<>]+\.[^@\s,<>]+$")]


Channel = Annotated[SlackChannel | WebhookChannel | EmailChannel, Field(discriminator="type")]


class Smtp(_Strict):
    """The SMTP server email channels go through."""

    host: Annotated[str, Field(min_length=1)]
    port: Annotated[int, Field(ge=1, le=65535)] = 587
    security: Literal["starttls", "tls", "none"] = Field(
        default="starttls",
        description="starttls (587): upgrade after connecting; tls (465): TLS from the first "
        "byte; none: plaintext (a relay on localhost only).",
    )
    username: str | None = None
    password: SecretStr | None = None
    sender: Annotated[str, Field(alias="from", min_length=3)]
    timeout_s: Annotated[float, Field(gt=0)] = 30.0


class ChannelsConfig(_Strict):
    """Which channels each rep (by the lead model's rep id) is notified on."""

    link_base: Annotated[str, Field(pattern=_HTTP_URL)] | None = Field(
        default=None,
        description="Links to a lead are `<link_base>?lead=<lead_id>` (e.g. the rep inbox).",
    )
    inbox_secret: SecretStr | None = Field(
        default=None,
        description="The worker's LEADSTREAM_INBOX_SECRET (e.g. `${LEADSTREAM_INBOX_SECRET}`): "
        "with `{token}` in link_base, each rep's link opens their own inbox.",
    )
    inbox_link_days: float = Field(
        default=DEFAULT_LINK_DAYS,
        gt=0,
        le=366,
        description="How long the inbox link of a notification opens (the worker's default).",
    )
    smtp: Smtp | None = None
    reps: dict[Annotated[str, Field(min_length=1)], tuple[Channel, ...]] = {}

    def channels(self) -> dict[str, SlackChannel | WebhookChannel | EmailChannel]:
        """Every distinct channel of the file, by channel id."""
        return {channel_id(c): c for chans in self.reps.values() for c in chans}


class ChannelsError(Exception):
    """A channels file that cannot be used; `errors` holds one `FILE:LINE: ...` per problem."""

    def __init__(self, path: Path | str, errors: list[str]) -> None:
        self.path = str(path)
        self.errors = errors
        super().__init__("\n".join(errors))


def load_channels(path: Path | str, *, env: Mapping[str, str]) -> ChannelsConfig:
    """Read and validate a channels file; `${NAME}` in a value is `env[NAME]`."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ChannelsError(path, [f"{path}: cannot read: {exc.strerror or exc}"]) from exc
    except UnicodeDecodeError as exc:
        raise ChannelsError(path, [f"{path}:1: not UTF-8 text: {exc.reason}"]) from exc
    return parse_channels(text, source=str(path), env=env)


_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def parse_channels(text: str, *, source: str, env: Mapping[str, str]) -> ChannelsConfig:
    """The channels file in `text`; raise ChannelsError listing every problem by line."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark is not None else source
        raise ChannelsError(source, [f"{where}: not valid YAML: {exc}"]) from exc
    if not isinstance(data, dict):
        raise ChannelsError(source, [f"{source}:1: the channels file must be a YAML mapping"])
    errors: list[str] = []

    def resolve(value: Any, loc: tuple[Any, ...]) -> Any:
        if isinstance(value, dict):
            return {k: resolve(v, (*loc, k)) for k, v in value.items()}
        if isinstance(value, list):
            return [resolve(v, (*loc, i)) for i, v in enumerate(value)]
        if isinstance(value, str):

            def sub(match: re.Match[str]) -> str:
                name = match[1]
                if name not in env:
                    where = ".".join(str(p) for p in loc)
                    line = _line_of(root, loc)
                    errors.append(
                        f"{source}:{line}: {where}: environment variable {name} is not set"
                    )
                    return ""
                return env[name]

            return _ENV_REF.sub(sub, value)
        return value

    data = resolve(data, ())
    if errors:
        raise ChannelsError(source, errors)
    try:
        config = ChannelsConfig.model_validate(data)
    except ValidationError as exc:
        for err in exc.errors():
            loc = _without_tags(tuple(err["loc"]))
            where = ".".join(str(p) for p in loc) or "(top level)"
            errors.append(f"{source}:{_line_of(root, loc)}: {where}: {err['msg']}")
        raise ChannelsError(source, errors) from exc
    if config.smtp is None:
        for rep, chans in config.reps.items():
            for i, chan in enumerate(chans):
                if chan.type == "email":
                    line = _line_of(root, ("reps", rep, i))
                    errors.append(
                        f"{source}:{line}: reps.{rep}.{i}: an email channel needs `smtp:` "
                        "settings in the file"
                    )
    if config.smtp is not None and (config.smtp.username is None) != (config.smtp.password is None):
        line = _line_of(root, ("smtp",))
        errors.append(f"{source}:{line}: smtp: give both username and password, or neither")
    if errors:
        raise ChannelsError(source, errors)
    return config


def _without_tags(loc: tuple[Any, ...]) -> tuple[Any, ...]:
    """pydantic puts the union tag in the location (reps.ann.0.slack.url); the file has not."""
    out: list[Any] = []
    for i, part in enumerate(loc):
        if i > 0 and isinstance(loc[i - 1], int) and part in ("slack", "webhook", "email"):
            continue
        out.append(part)
    return tuple(out)


def channel_id(channel: SlackChannel | WebhookChannel | EmailChannel) -> str:
    """`<type>:<12 hex of SHA-256 of the destination>`: stable while the destination is,
    and no URL, secret or address in topic keys or logs."""
    if isinstance(channel, SlackChannel):
        destination = channel.webhook_url.get_secret_value()
    elif isinstance(channel, WebhookChannel):
        destination = channel.url
    else:
        destination = channel.to.lower()
    return f"{channel.type}:{hashlib.sha256(destination.encode()).hexdigest()[:12]}"


# ------------------------------------------------------------------ payloads


@dataclass(frozen=True, slots=True)
class HttpPost:
    """A JSON POST (Slack, webhook)."""

    url: str
    body: bytes
    headers: tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class Email:
    """A plain-text email."""

    sender: str
    to: str
    subject: str
    text: str
    message_id: str
    date: datetime


def lead_link(
    link_base: str | None,
    lead_id: str,
    *,
    rep_id: str = "",
    inbox_secret: str | None = None,
    expires_at: datetime | None = None,
) -> str | None:
    """`<link_base>?lead=<lead_id>`, or None without a link base. A `{token}` in the base
    becomes the rep's signed inbox token (streams.inbox), open until `expires_at`, so the
    link opens their inbox."""
    if link_base is None:
        return None
    if "{token}" in link_base:
        if inbox_secret is None or expires_at is None:
            return None  # a link that would not open: better none
        token = token_for(rep_id, inbox_secret, expires_at=expires_at)
        link_base = link_base.replace("{token}", token)
    joiner = "&" if "?" in link_base else "?"
    return f"{link_base}{joiner}lead={quote(lead_id, safe='')}"


def _mrkdwn(text: str) -> str:
    """Slack's three control characters, escaped (user text must not become mentions)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _utc(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _lag(alert: RepAlert) -> str:
    return f"{max(0.0, (alert.created_at - alert.event_at).total_seconds()):.1f} s"


def slack_payload(alert: RepAlert, *, link: str | None) -> dict[str, Any]:
    """An incoming-webhook message: who, company, why hot, timeline and a link to the lead."""
    who = alert.email or alert.lead_id
    fields = [
        {"type": "mrkdwn", "text": f"*Who*\n{_mrkdwn(who)}"},
        {"type": "mrkdwn", "text": f"*Company*\n{_mrkdwn(alert.company or 'unknown')}"},
        {"type": "mrkdwn", "text": f"*Score*\n{alert.score}"},
        {"type": "mrkdwn", "text": f"*Trigger*\n{_mrkdwn(alert.trigger)}"},
    ]
    event_s = int(alert.event_at.timestamp())
    timeline = (
        # Slack shows <!date^...> in each reader's own time zone; the text after | is the
        # fallback for clients that cannot.
        f"*Timeline*: event <!date^{event_s}^{{date_short_pretty}} {{time}}|"
        f"{_utc(alert.event_at)}>, alerted {_lag(alert)} later"
    )
    blocks: list[dict[str, Any]] = [
        {
            "type": "header",
            "text": {"type": "plain_text", "text": _cut(f"Hot lead: {alert.message}", 150)},
        },
        {"type": "section", "fields": fields},
        {
            "type": "section",
            "text": {
                "type": "mrkdwn",
                "text": _cut(f"*Why hot*\n{_mrkdwn(alert.message)}", 3000),
            },
        },
        {"type": "context", "elements": [{"type": "mrkdwn", "text": timeline}]},
    ]
    if link is not None:
        blocks.append(
            {
                "type": "actions",
                "elements": [
                    {
                        "type": "button",
                        "text": {"type": "plain_text", "text": "Open lead"},
                        "url": link,
                        "style": "primary",
                    }
                ],
            }
        )
    footer = f"for {_mrkdwn(alert.rep_name)} · lead {_mrkdwn(alert.lead_id)}"
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": footer}]})
    # `text` is what notifications and screen readers show.
    text = _cut(f"Hot lead: {alert.message} ({who}, score {alert.score})", 3000)
    return {"text": text, "blocks": blocks}


def _json_post(url: str, body: bytes, *extra: tuple[str, str]) -> HttpPost:
    headers = (("Content-Type", "application/json"), ("User-Agent", _USER_AGENT), *extra)
    return HttpPost(url=url, body=body, headers=headers)


def sign(secret: str | bytes, timestamp: int | str, body: bytes) -> str:
    """`sha256=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>`."""
    key = secret.encode() if isinstance(secret, str) else secret
    signed = str(timestamp).encode() + b"." + body
    return "sha256=" + hmac.new(key, signed, hashlib.sha256).hexdigest()


def verify(
    secret: str | bytes,
    timestamp: str | None,
    body: bytes,
    signature: str | None,
    *,
    now: datetime,
    tolerance_s: float = 300,
) -> bool:
    """For receivers: True if `signature` signs `body` at `timestamp`, and `timestamp`
    (Unix seconds) is within `tolerance_s` of `now` (a replayed old request fails)."""
    if not timestamp or not signature or not timestamp.isdigit():
        return False
    if abs(now.timestamp() - int(timestamp)) > tolerance_s:
        return False
    return hmac.compare_digest(sign(secret, timestamp, body), signature)


def webhook_request(alert: RepAlert, channel: WebhookChannel, *, now: datetime) -> HttpPost:
    """The alert's JSON, signed at `now` (each attempt is signed anew)."""
    body = encode(alert)
    timestamp = str(int(now.timestamp()))
    return _json_post(
        channel.url,
        body,
        (TIMESTAMP_HEADER, timestamp),
        (SIGNATURE_HEADER, sign(channel.secret.get_secret_value(), timestamp, body)),
        (ALERT_ID_HEADER, alert.alert_id),
    )


def _one_line(text: str) -> str:
    return " ".join(text.split())


def email_message(
    alert: RepAlert, channel: EmailChannel, *, sender: str, link: str | None
) -> Email:
    """The plain-text email of an alert."""
    lines = [
        f"{alert.rep_name},",
        "",
        f"{alert.message}.",
        "",
        f"Who:      {alert.email or alert.lead_id}",
        f"Company:  {alert.company or 'unknown'}",
        f"Score:    {alert.score} (lead model {alert.model_version})",
        f"Trigger:  {alert.trigger}",
        f"Event at: {_utc(alert.event_at)}",
        f"Alerted:  {_utc(alert.created_at)} ({_lag(alert)} later)",
        "",
    ]
    if link is not None:
        lines += [f"Open the lead: {link}", ""]
    lines += ["-- ", f"Leadstream, alert {alert.alert_id}, lead {alert.lead_id}"]
    safe_id = re.sub(r"[^A-Za-z0-9._-]", "-", alert.alert_id)
    digest = channel_id(channel).split(":", 1)[1]
    return Email(
        sender=sender,
        to=channel.to,
        subject=_cut(_one_line(f"Hot lead: {alert.message}"), 200),
        text="\n".join(lines) + "\n",
        # The same on a retry, so a mail client shows a duplicate once.
        message_id=f"<{safe_id}.{digest}@leadstream>",
        date=alert.created_at,
    )


def to_mime(email: Email) -> EmailMessage:
    """The message as the SMTP client sends it."""
    message = EmailMessage()
    message["From"] = email.sender
    message["To"] = email.to
    message["Subject"] = email.subject
    message["Message-ID"] = email.message_id
    message["Date"] = format_datetime(email.date.astimezone(UTC))
    message.set_content(email.text)
    return message


def render(
    alert: RepAlert,
    channel: SlackChannel | WebhookChannel | EmailChannel,
    *,
    config: ChannelsConfig,
    now: datetime,
) -> HttpPost | Email:
    """What one attempt at delivering `alert` on `channel` sends."""
    link = lead_link(
        config.link_base,
        alert.lead_id,
        rep_id=alert.rep_id,
        inbox_secret=config.inbox_secret.get_secret_value() if config.inbox_secret else None,
        expires_at=now + timedelta(days=config.inbox_link_days),
    )
    if isinstance(channel, SlackChannel):
        body = orjson.dumps(slack_payload(alert, link=link))
        return _json_post(channel.webhook_url.get_secret_value(), body)
    if isinstance(channel, WebhookChannel):
        return webhook_request(alert, channel, now=now)
    assert config.smtp is not None  # parse_channels refuses email channels without smtp
    return email_message(alert, channel, sender=config.smtp.sender, link=link)


# ------------------------------------------------------------------ outcomes and retries


@dataclass(frozen=True, slots=True)
class Failure:
    """An attempt that failed: what was said, whether trying again can help, and how long
    the receiver asked to wait (Retry-After)."""

    message: str
    retryable: bool
    retry_after_s: float | None = None


def http_failure(status: int, body: str, *, retry_after: str | None = None) -> Failure | None:
    """None for a 2xx; otherwise the failure. 5xx, 408, 425 and 429 are worth retrying;
    other 4xx mean the request itself is refused (a revoked Slack hook answers 404/410)."""
    if 200 <= status < 300:
        return None
    text = _one_line(body)
    message = f"HTTP {status}" + (f": {_cut(text, 300)}" if text else "")
    retryable = status >= 500 or status in (408, 425, 429)
    wait = None
    if retryable and retry_after is not None and retry_after.strip().isdigit():
        wait = float(retry_after.strip())
    return Failure(message, retryable, wait)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Attempts per delivery and the exponential backoff between them."""

    max_attempts: int = 5
    base_s: float = 1.0
    max_s: float = 60.0


def backoff_s(
    attempt: int, *, policy: RetryPolicy, rand: float, retry_after_s: float | None = None
) -> float:
    """Seconds to wait after failed attempt `attempt` (1-based): "full jitter", a uniform
    draw in [0, min(max_s, base_s * 2**(attempt-1))) with `rand` in [0, 1), so that channels
    failing together do not retry together. A receiver's Retry-After is honoured up to max_s."""
    ceiling = min(policy.max_s, policy.base_s * math.pow(2, attempt - 1))
    delay = rand * ceiling
    if retry_after_s is not None:
        delay = max(delay, min(retry_after_s, policy.max_s))
    return delay


def schedule(policy: RetryPolicy, rng: random.Random) -> list[float]:
    """The waits between the attempts of one delivery that fails every time."""
    return [
        backoff_s(attempt, policy=policy, rand=rng.random())
        for attempt in range(1, policy.max_attempts)
    ]


# ------------------------------------------------------------------ circuit breaker

CircuitState = Literal["closed", "open", "half_open"]


@dataclass(frozen=True, slots=True)
class CircuitPolicy:
    """Open after `failures` consecutive failures; let one attempt through after `cooldown_s`."""

    failures: int = 5
    cooldown_s: float = 60.0


@dataclass(frozen=True, slots=True)
class Circuit:
    """One channel's breaker. Times are seconds of a monotonic clock the caller passes in."""

    state: CircuitState = "closed"
    failures: int = 0  # consecutive
    opened_at: float = 0.0
    probing: bool = False  # half-open: the one trial attempt is out
    last_error: str | None = None


def admit(circuit: Circuit, *, now: float, policy: CircuitPolicy) -> tuple[Circuit, bool]:
    """May an attempt go out now? Closed: yes. Open: no, until the cool-down has passed;
    then the circuit is half-open and exactly one trial attempt goes out."""
    if circuit.state == "closed":
        return circuit, True
    if circuit.state == "open":
        if now - circuit.opened_at < policy.cooldown_s:
            return circuit, False
        return replace(circuit, state="half_open", probing=True), True
    if circuit.probing:
        return circuit, False
    return replace(circuit, probing=True), True


def circuit_succeeded(circuit: Circuit) -> Circuit:
    """An attempt got through: closed, the failure count reset."""
    return Circuit()


def circuit_failed(circuit: Circuit, *, now: float, policy: CircuitPolicy, error: str) -> Circuit:
    """An attempt failed: a failed trial re-opens at once; closed opens at the threshold."""
    failures = circuit.failures + 1
    if circuit.state == "half_open":
        return Circuit("open", failures, now, False, error)
    if circuit.state == "open":  # an attempt admitted before it opened, failing late
        return replace(circuit, failures=failures, last_error=error)
    if failures >= policy.failures:
        return Circuit("open", failures, now, False, error)
    return replace(circuit, failures=failures, last_error=error)


# ------------------------------------------------------------------ at most once


def delivery_key(alert_id: str, channel: str) -> str:
    """The key of a delivery on `rep.alerts.delivered`: `<alert_id>|<channel_id>`."""
    return f"{alert_id}|{channel}"


@dataclass
class DeliveredSet:
    """Deliveries made, by delivery key, for alerts created within the last `window_s`.

    Alerts older than the window are not delivered at all (see `plan_batch`), so forgetting
    their deliveries can never lead to a second one.
    """

    window_s: float
    _created_s: dict[str, float] = field(default_factory=dict)

    def add(self, key: str, *, alert_created_at: datetime, now: datetime) -> None:
        created = alert_created_at.timestamp()
        if created >= now.timestamp() - self.window_s:
            self._created_s[key] = created

    def __contains__(self, key: object) -> bool:
        return key in self._created_s

    def __len__(self) -> int:
        return len(self._created_s)

    def prune(self, *, now: datetime) -> int:
        """Forget deliveries of alerts now older than the window; return how many."""
        oldest = now.timestamp() - self.window_s
        old = [k for k, created in self._created_s.items() if created < oldest]
        for key in old:
            del self._created_s[key]
        return len(old)


@dataclass(frozen=True, slots=True)
class Delivery:
    """One alert to one channel."""

    alert: RepAlert
    channel: SlackChannel | WebhookChannel | EmailChannel
    channel_id: str

    @property
    def key(self) -> str:
        return delivery_key(self.alert.alert_id, self.channel_id)


@dataclass(frozen=True)
class BatchPlan:
    """What a batch of alerts asks for: the deliveries to make, and what is left out."""

    deliveries: tuple[Delivery, ...]
    accepted: int  # alerts with at least one channel, within the window
    no_channels: int  # alerts for reps with no channel in the file
    expired: int  # alerts older than the window: too old to be news, and to deduplicate
    already_delivered: Mapping[ChannelType, int]


def plan_batch(
    alerts: Iterable[RepAlert],
    *,
    config: ChannelsConfig,
    delivered: Container[str],
    now: datetime,
    window_s: float,
) -> BatchPlan:
    """Each alert to each of its rep's channels, except deliveries already made (or twice
    in the batch), alerts of reps without channels and alerts older than the window."""
    deliveries: list[Delivery] = []
    planned: set[str] = set()
    done: Counter[ChannelType] = Counter()
    accepted = no_channels = expired = 0
    oldest = now.timestamp() - window_s
    for alert in alerts:
        if alert.created_at.timestamp() < oldest:
            expired += 1
            continue
        channels = config.reps.get(alert.rep_id, ())
        if not channels:
            no_channels += 1
            continue
        accepted += 1
        for channel in channels:
            delivery = Delivery(alert, channel, channel_id(channel))
            if delivery.key in delivered:
                done[channel.type] += 1
            elif delivery.key not in planned:
                planned.add(delivery.key)
                deliveries.append(delivery)
    return BatchPlan(tuple(deliveries), accepted, no_channels, expired, dict(done))


def undelivered(
    delivery: Delivery, *, cause: DlqCause, attempts: int, last_error: str, now: datetime
) -> UndeliveredAlert:
    """The `rep.alerts.dlq` record of a delivery given up."""
    return UndeliveredAlert(
        alert=delivery.alert,
        rep_id=delivery.alert.rep_id,
        channel=delivery.channel.type,
        channel_id=delivery.channel_id,
        cause=cause,
        attempts=attempts,
        last_error=last_error,
        failed_at=now,
    )
