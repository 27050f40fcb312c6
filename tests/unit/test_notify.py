"""The notifier's pure core: channels file, payloads, signatures, backoff, circuits, planning."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from schemas.decisions import RepAlert
from streams.notify import (
    ChannelsConfig,
    ChannelsError,
    Circuit,
    CircuitPolicy,
    DeliveredSet,
    Email,
    EmailChannel,
    HttpPost,
    RetryPolicy,
    SlackChannel,
    WebhookChannel,
    admit,
    backoff_s,
    channel_id,
    circuit_failed,
    circuit_succeeded,
    delivery_key,
    http_failure,
    lead_link,
    load_channels,
    parse_channels,
    plan_batch,
    render,
    schedule,
    sign,
    to_mime,
    verify,
)

NOW = datetime(2026, 11, 20, 9, 0, 5, tzinfo=UTC)
SECRET = "whsec_0123456789abcdef"

CHANNELS = """\
link_base: http://leadstream.example.com:6066/inbox
smtp:
  host: smtp.example.com
  port: 587
  security: starttls
  username: leadstream
  password: ${SMTP_PASSWORD}
  from: Leadstream <alerts@example.com>
reps:
  carla:
    - type: slack
      webhook_url: https://hooks.slack.com/services/T0/B0/xyz
    - type: webhook
      url: https://crm.example.com/hooks/leadstream
      secret: ${HOOK_SECRET}
    - type: email
      to: carla@sales.example.com
  ben: []
"""
ENV = {"SMTP_PASSWORD": "smtp-pass", "HOOK_SECRET": SECRET}


def alert(**changes: Any) -> RepAlert:
    values: dict[str, Any] = {
        "alert_id": "al_7f3a9c",
        "rep_id": "carla",
        "rep_name": "Carla Gomez",
        "rep_email": "carla@sales.example.com",
        "lead_id": "ld_606010091356806d",
        "email": "jane.doe@acme-robotics.com",
        "company": "Acme Robotics",
        "trigger": "whitepaper-download",
        "message": "Jane Doe downloaded a whitepaper",
        "score": 78,
        "model_version": "2026.11",
        "event_at": NOW - timedelta(seconds=3),
        "created_at": NOW - timedelta(seconds=0.1),
    }
    values.update(changes)
    return RepAlert(**values)


@pytest.fixture
def config() -> ChannelsConfig:
    return parse_channels(CHANNELS, source="channels.yaml", env=ENV)


def _channel(config: ChannelsConfig, kind: str) -> Any:
    return next(c for c in config.reps["carla"] if c.type == kind)


# ------------------------------------------------------------------ channels file


def test_channels_file_resolves_environment_references_and_keeps_secrets_secret(
    config: ChannelsConfig,
) -> None:
    hook = _channel(config, "webhook")
    assert hook.secret.get_secret_value() == SECRET
    assert config.smtp is not None and config.smtp.password is not None
    assert config.smtp.password.get_secret_value() == "smtp-pass"
    assert config.smtp.sender == "Leadstream <alerts@example.com>"
    assert SECRET not in repr(config) and "smtp-pass" not in repr(config)
    assert "hooks.slack.com" not in repr(config)  # a Slack hook URL is a credential too
    assert config.reps["ben"] == ()


def test_channels_file_errors_name_file_line_and_field(tmp_path: Path) -> None:
    path = tmp_path / "channels.yaml"
    path.write_text(
        "reps:\n"
        "  carla:\n"
        "    - type: webhook\n"
        "      url: ftp://nope\n"  # line 4
        "      secret: short\n"  # line 5
        "    - type: pager\n"  # line 6
        "    - type: slack\n"  # line 7: webhook_url missing
        "  ben:\n"
        "    - type: email\n"  # line 9
        "      to: ben@sales.example.com\n"
    )

    with pytest.raises(ChannelsError) as err:
        load_channels(path, env={})

    errors = err.value.errors
    assert any(e.startswith(f"{path}:4: reps.carla.0.url: String should match") for e in errors)
    assert (
        f"{path}:5: reps.carla.0.secret: Value error, the secret must be at least 16 characters"
        in errors
    )
    assert any(e.startswith(f"{path}:6: reps.carla.1: Input tag 'pager'") for e in errors)
    assert f"{path}:7: reps.carla.2.webhook_url: Field required" in errors


def test_email_channels_need_smtp_and_missing_variables_are_named() -> None:
    with pytest.raises(ChannelsError) as err:
        parse_channels(
            "reps:\n  ben:\n    - {type: email, to: ben@sales.example.com}\n",
            source="c.yaml",
            env={},
        )
    assert err.value.errors == [
        "c.yaml:3: reps.ben.0: an email channel needs `smtp:` settings in the file"
    ]

    with pytest.raises(ChannelsError) as err:
        parse_channels(CHANNELS, source="c.yaml", env={"SMTP_PASSWORD": "x"})
    assert err.value.errors == [
        "c.yaml:15: reps.carla.1.secret: environment variable HOOK_SECRET is not set"
    ]


def test_not_yaml_or_not_a_mapping() -> None:
    with pytest.raises(ChannelsError, match=r"^c.yaml:3: not valid YAML"):
        parse_channels("reps:\n  - [\n", source="c.yaml", env={})
    with pytest.raises(ChannelsError, match=r"^c.yaml:1: the channels file must be a YAML mapping"):
        parse_channels("- 1\n", source="c.yaml", env={})


def test_channel_ids_hash_the_destination(config: ChannelsConfig) -> None:
    ids = [channel_id(c) for c in config.reps["carla"]]
    assert [i.split(":")[0] for i in ids] == ["slack", "webhook", "email"]
    assert all(len(i.split(":")[1]) == 12 for i in ids)
    assert not any("example" in i or "slack.com" in i for i in ids)
    same = EmailChannel(type="email", to="Carla@Sales.Example.com")
    assert channel_id(same) == ids[2]  # addresses compare without case


# ------------------------------------------------------------------ payloads


def test_slack_message_has_who_company_why_timeline_and_a_link(config: ChannelsConfig) -> None:
    post = render(alert(), _channel(config, "slack"), config=config, now=NOW)

    assert isinstance(post, HttpPost)
    assert post.url == "https://hooks.slack.com/services/T0/B0/xyz"
    doc = orjson.loads(post.body)
    assert (
        doc["text"]
        == "Hot lead: Jane Doe downloaded a whitepaper (jane.doe@acme-robotics.com, score 78)"
    )
    blocks = doc["blocks"]
    assert blocks[0] == {
        "type": "header",
        "text": {"type": "plain_text", "text": "Hot lead: Jane Doe downloaded a whitepaper"},
    }
    fields = [f["text"] for f in blocks[1]["fields"]]
    assert fields == [
        "*Who*\njane.doe@acme-robotics.com",
        "*Company*\nAcme Robotics",
        "*Score*\n78",
        "*Trigger*\nwhitepaper-download",
    ]
    assert blocks[2]["text"]["text"] == "*Why hot*\nJane Doe downloaded a whitepaper"
    timeline = blocks[3]["elements"][0]["text"]
    assert timeline == (
        f"*Timeline*: event <!date^{int((NOW - timedelta(seconds=3)).timestamp())}"
        "^{date_short_pretty} {time}|2026-11-20 09:00:02 UTC>, alerted 2.9 s later"
    )
    button = blocks[4]["elements"][0]
    assert button["url"] == "http://leadstream.example.com:6066/inbox?lead=ld_606010091356806d"
    assert button["text"]["text"] == "Open lead"


def test_slack_escapes_what_leads_typed_and_leaves_out_the_link_without_a_base() -> None:
    config = ChannelsConfig.model_validate(
        {"reps": {"carla": [{"type": "slack", "webhook_url": "https://hooks.example/x"}]}}
    )
    post = render(
        alert(company="<!channel> & Co", email=None),
        config.reps["carla"][0],
        config=config,
        now=NOW,
    )
    assert isinstance(post, HttpPost)
    blocks = orjson.loads(post.body)["blocks"]
    fields = [f["text"] for f in blocks[1]["fields"]]
    assert fields[0] == "*Who*\nld_606010091356806d"  # no email: the lead id
    assert fields[1] == "*Company*\n&lt;!channel&gt; &amp; Co"
    assert all(b["type"] != "actions" for b in blocks)


def test_lead_link_keeps_an_existing_query() -> None:
    assert lead_link(None, "ld_1") is None
    assert lead_link("https://x.example/inbox?rep=carla", "ld 1") == (
        "https://x.example/inbox?rep=carla&lead=ld%201"
    )


def test_webhook_body_is_the_alert_json_signed_with_a_timestamp(config: ChannelsConfig) -> None:
    hook = _channel(config, "webhook")
    post = render(alert(), hook, config=config, now=NOW)

    assert isinstance(post, HttpPost)
    assert RepAlert.model_validate_json(post.body) == alert()
    headers = dict(post.headers)
    assert headers["Content-Type"] == "application/json"
    assert headers["X-Leadstream-Timestamp"] == str(int(NOW.timestamp()))
    assert headers["X-Leadstream-Alert-Id"] == "al_7f3a9c"
    assert headers["X-Leadstream-Signature"] == sign(
        SECRET, headers["X-Leadstream-Timestamp"], post.body
    )
    assert verify(
        SECRET,
        headers["X-Leadstream-Timestamp"],
        post.body,
        headers["X-Leadstream-Signature"],
        now=NOW + timedelta(seconds=2),
    )


def test_signature_is_hmac_sha256_of_timestamp_dot_body() -> None:
    # Pinned (as `printf "1700000000.{\"a\":1}" | openssl dgst -sha256 -hmac k` prints it):
    # receivers in other languages implement exactly this.
    assert sign("k", 1700000000, b'{"a":1}') == (
        "sha256=1b6ad1bc9bf48c52ce01939866d5877c6cc4e87ddad27e16673cb8c4964394a3"
    )


@pytest.mark.parametrize(
    ("why", "secret", "timestamp", "body", "age_s", "signature"),
    [
        ("tampered body", SECRET, None, b'{"score":99}', 0, None),
        ("old timestamp (a replay)", SECRET, None, None, 301, None),
        ("timestamp from the future", SECRET, None, None, -301, None),
        ("other secret", "whsec_another_secret_value", None, None, 0, None),
        ("timestamp changed", SECRET, "1", None, 0, None),
        ("no signature", SECRET, None, None, 0, ""),
        ("not a number", SECRET, "soon", None, 0, None),
    ],
)
def test_verify_rejects(
    why: str,
    secret: str,
    timestamp: str | None,
    body: bytes | None,
    age_s: int,
    signature: str | None,
) -> None:
    sent_body = b'{"score":78}'
    sent_at = str(int(NOW.timestamp()))
    good = sign(SECRET, sent_at, sent_body)
    assert verify(SECRET, sent_at, sent_body, good, now=NOW)
    assert not verify(
        secret,
        timestamp if timestamp is not None else sent_at,
        body if body is not None else sent_body,
        signature if signature is not None else good,
        now=NOW + timedelta(seconds=age_s),
    ), why


def test_email_subject_and_text(config: ChannelsConfig) -> None:
    email = render(
        alert(message="Jane Doe\r\nBcc: all@example.com"),
        _channel(config, "email"),
        config=config,
        now=NOW,
    )

    assert isinstance(email, Email)
    assert email.subject == "Hot lead: Jane Doe Bcc: all@example.com"  # one line: no injection
    mime = to_mime(email)
    assert mime["To"] == "carla@sales.example.com"
    assert mime["From"] == "Leadstream <alerts@example.com>"
    assert mime["Message-ID"].startswith("<al_7f3a9c.") and mime["Message-ID"].endswith(
        "@leadstream>"
    )
    text = mime.get_content()
    assert "Who:      jane.doe@acme-robotics.com\n" in text
    assert "Company:  Acme Robotics\n" in text
    assert "Score:    78 (lead model 2026.11)\n" in text
    assert "Event at: 2026-11-20 09:00:02 UTC\n" in text
    assert (
        "Open the lead: http://leadstream.example.com:6066/inbox?lead=ld_606010091356806d\n" in text
    )


# ------------------------------------------------------------------ retries


@pytest.mark.parametrize(
    ("status", "retryable"),
    [
        (500, True),
        (502, True),
        (503, True),
        (429, True),
        (408, True),
        (400, False),
        (404, False),
        (410, False),
        (403, False),
    ],
)
def test_which_http_answers_are_retried(status: int, retryable: bool) -> None:
    failure = http_failure(status, " no_service \n")
    assert failure is not None
    assert failure.retryable is retryable
    assert failure.message == f"HTTP {status}: no_service"


def test_2xx_is_success_and_retry_after_is_read() -> None:
    assert http_failure(200, "ok") is None
    assert http_failure(204, "") is None
    failure = http_failure(429, "rate_limited", retry_after="30")
    assert failure is not None and failure.retry_after_s == 30.0


def test_backoff_is_exponential_with_full_jitter_and_seeded() -> None:
    policy = RetryPolicy(max_attempts=6, base_s=1.0, max_s=10.0)

    first = schedule(policy, random.Random(7))
    assert first == schedule(policy, random.Random(7))  # the seed decides
    assert first != schedule(policy, random.Random(8))
    assert len(first) == 5
    ceilings = [1.0, 2.0, 4.0, 8.0, 10.0]
    assert all(0 <= wait < cap for wait, cap in zip(first, ceilings, strict=True))
    # the ceiling: rand -> 1 reaches it, capped at max_s
    assert [backoff_s(n, policy=policy, rand=0.999999) for n in range(1, 7)] == pytest.approx(
        [1, 2, 4, 8, 10, 10], rel=1e-5
    )
    assert backoff_s(3, policy=policy, rand=0.0) == 0.0
    # Retry-After wins over a shorter draw, but never past max_s
    assert backoff_s(1, policy=policy, rand=0.5, retry_after_s=7) == 7
    assert backoff_s(1, policy=policy, rand=0.5, retry_after_s=3600) == 10


def test_many_channels_retrying_together_spread_out() -> None:
    policy = RetryPolicy(base_s=1.0, max_s=60.0)
    rng = random.Random(42)
    waits = [backoff_s(4, policy=policy, rand=rng.random()) for _ in range(200)]
    assert min(waits) < 1.0 and max(waits) > 7.0  # spread over [0, 8), not one instant


# ------------------------------------------------------------------ circuit breaker


def test_circuit_opens_after_consecutive_failures_and_half_opens_after_the_cooldown() -> None:
    policy = CircuitPolicy(failures=3, cooldown_s=60)
    c = Circuit()
    for t in (0.0, 1.0):
        c, ok = admit(c, now=t, policy=policy)
        assert ok
        c = circuit_failed(c, now=t, policy=policy, error="HTTP 500")
        assert c.state == "closed"
    c = circuit_failed(c, now=2.0, policy=policy, error="HTTP 503: down")
    assert (c.state, c.failures, c.last_error) == ("open", 3, "HTTP 503: down")

    c, ok = admit(c, now=61.9, policy=policy)
    assert not ok and c.state == "open"  # cooling down
    c, ok = admit(c, now=62.0, policy=policy)
    assert ok and c.state == "half_open"  # one trial
    c2, ok2 = admit(c, now=62.1, policy=policy)
    assert not ok2 and c2 == c  # only one trial at a time

    reopened = circuit_failed(c, now=63.0, policy=policy, error="HTTP 500")
    assert reopened.state == "open" and reopened.opened_at == 63.0
    assert admit(reopened, now=100.0, policy=policy)[1] is False

    closed = circuit_succeeded(c)
    assert closed == Circuit()
    assert admit(closed, now=63.0, policy=policy) == (closed, True)


def test_a_success_resets_the_count_of_consecutive_failures() -> None:
    policy = CircuitPolicy(failures=2, cooldown_s=60)
    c = circuit_failed(Circuit(), now=0, policy=policy, error="x")
    c = circuit_succeeded(c)
    c = circuit_failed(c, now=1, policy=policy, error="x")
    assert c.state == "closed"


# ------------------------------------------------------------------ planning, at most once


def test_plan_skips_delivered_duplicates_unknown_reps_and_expired_alerts(
    config: ChannelsConfig,
) -> None:
    slack = _channel(config, "slack")
    delivered = DeliveredSet(window_s=86_400)
    delivered.add(delivery_key("al_1", channel_id(slack)), alert_created_at=NOW, now=NOW)

    plan = plan_batch(
        [
            alert(alert_id="al_1"),
            alert(alert_id="al_1"),  # the same alert twice in a batch
            alert(alert_id="al_2", rep_id="ben"),  # a rep with no channels
            alert(alert_id="al_3", rep_id="nobody"),  # a rep not in the file
            alert(alert_id="al_4", created_at=NOW - timedelta(days=2)),
        ],
        config=config,
        delivered=delivered,
        now=NOW,
        window_s=86_400,
    )

    assert [(d.alert.alert_id, d.channel.type) for d in plan.deliveries] == [
        ("al_1", "webhook"),
        ("al_1", "email"),
    ]
    assert (plan.accepted, plan.no_channels, plan.expired) == (2, 2, 1)
    assert plan.already_delivered == {"slack": 2}


def test_delivered_set_forgets_alerts_older_than_the_window() -> None:
    delivered = DeliveredSet(window_s=3600)
    delivered.add("old|c", alert_created_at=NOW - timedelta(hours=2), now=NOW)
    delivered.add("new|c", alert_created_at=NOW - timedelta(minutes=59), now=NOW)
    assert "old|c" not in delivered and "new|c" in delivered

    assert delivered.prune(now=NOW + timedelta(minutes=2)) == 1
    assert "new|c" not in delivered and len(delivered) == 0


def test_channels_config_lists_each_destination_once() -> None:
    hook = {"type": "webhook", "url": "https://h.example/x", "secret": SECRET}
    config = ChannelsConfig.model_validate({"reps": {"a": [hook], "b": [hook]}})
    channels = config.channels()
    assert len(channels) == 1
    assert isinstance(next(iter(channels.values())), WebhookChannel)
    assert not isinstance(next(iter(channels.values())), SlackChannel)


# ------------------------------------------------------------------ the command


def test_the_command_refuses_to_start_without_a_valid_channels_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from streams.cli import main

    monkeypatch.delenv("LEADSTREAM_CHANNELS_FILE", raising=False)
    assert main(["notifier"]) == 2
    assert "no channels file: pass --channels FILE" in capsys.readouterr().err

    bad = tmp_path / "channels.yaml"
    bad.write_text(
        "reps:\n  carla:\n    - {type: webhook, url: 'https://h.example/x', secret: '${NOPE}'}\n"
    )
    monkeypatch.delenv("NOPE", raising=False)
    assert main(["notifier", "--channels", str(bad)]) == 2
    assert capsys.readouterr().err == (
        "leadstream: the channels file is invalid:\n"
        f"{bad}:3: reps.carla.0.secret: environment variable NOPE is not set\n"
    )


def test_a_token_placeholder_makes_the_link_open_the_reps_own_inbox() -> None:
    from streams.inbox import rep_of
    from streams.notify import lead_link

    link = lead_link(
        "http://inbox.example:6066/inbox?token={token}",
        "ld_1",
        rep_id="carla",
        inbox_secret="s" * 20,
        expires_at=datetime(2026, 12, 26, tzinfo=UTC),
    )

    assert link is not None and link.startswith("http://inbox.example:6066/inbox?token=")
    assert link.endswith("&lead=ld_1")
    token = link.split("token=", 1)[1].split("&", 1)[0]
    before, after = datetime(2026, 12, 25, tzinfo=UTC), datetime(2026, 12, 26, tzinfo=UTC)
    assert rep_of(token, "s" * 20, {"carla", "ben"}, now=before) == "carla"
    assert rep_of(token, "s" * 20, {"carla", "ben"}, now=after) is None  # the link expired
    # Without the secret there is no link that would open: none at all.
    assert lead_link("http://x.example/inbox?token={token}", "ld_1", rep_id="carla") is None
