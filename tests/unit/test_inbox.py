"""The rep inbox's core: signed links, the feedback a click makes, the recent alerts per rep."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from schemas.decisions import RepAlert
from schemas.feedback import REJECT_REASONS, SalesFeedback
from streams.cli import main
from streams.inbox import (
    Click,
    Decision,
    Inbox,
    Refusal,
    alert_view,
    feedback_for,
    inbox_url,
    rep_of,
    token_expiry,
    token_for,
)

SECRET = "s3cret-for-the-inbox-tests"
REPS = ("uma", "jun", "queue")
NOW = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)


def alert(n: int = 1, *, rep: str = "uma", lead: str | None = None) -> RepAlert:
    return RepAlert(
        alert_id=f"al_{rep}_{n}",
        rep_id=rep,
        rep_name=rep.title(),
        rep_email=f"{rep}@sales.test",
        lead_id=lead or f"ld_{n}",
        email=f"person{n}@acme.example",
        company="Acme",
        trigger="whitepaper-download",
        message=f"Person {n} downloaded a whitepaper",
        score=40 + n,
        model_version="test-1",
        event_at=NOW - timedelta(seconds=3),
        created_at=NOW,
    )


# ---------------------------------------------------------------- tokens


EXPIRES = NOW + timedelta(days=30)


def tok(rep: str, secret: str = SECRET, *, expires_at: datetime = EXPIRES) -> str:
    return token_for(rep, secret, expires_at=expires_at)


def rep_at(token: str | None, secret: str = SECRET, *, now: datetime = NOW) -> str | None:
    return rep_of(token, secret, REPS, now=now)


@pytest.mark.parametrize("rep", ["uma", "jun", "queue"])
def test_a_token_names_its_rep(rep: str) -> None:
    assert rep_at(tok(rep)) == rep


def test_a_token_is_url_safe_carries_its_expiry_and_the_link_carries_it() -> None:
    token = tok("uma")
    assert set(token) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.")
    assert token.split(".")[1] == str(int(EXPIRES.timestamp()))
    assert token_expiry(token) == EXPIRES
    assert inbox_url("https://inbox.example.com/", token) == (
        f"https://inbox.example.com/inbox?token={token}"
    )


def test_a_token_opens_until_its_expiry_and_not_from_then_on() -> None:
    token = tok("uma")
    assert rep_at(token, now=EXPIRES - timedelta(seconds=1)) == "uma"
    assert rep_at(token, now=EXPIRES) is None
    assert rep_at(token, now=EXPIRES + timedelta(days=400)) is None


def test_a_later_expiry_cannot_be_written_into_a_token() -> None:
    rep, _, mac = tok("uma").split(".")
    later = str(int((EXPIRES + timedelta(days=365)).timestamp()))
    assert rep_at(f"{rep}.{later}.{mac}", now=EXPIRES + timedelta(days=1)) is None
    assert rep_at(f"{rep}.{later}.{mac}") is None  # not even before the real expiry


def test_a_link_of_the_old_format_no_longer_opens() -> None:
    import base64
    import hashlib
    import hmac

    def b64(raw: bytes) -> str:
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    v1_mac = hmac.new(SECRET.encode(), b"leadstream-inbox-v1\x00uma", hashlib.sha256).digest()
    assert rep_at(f"{b64(b'uma')}.{b64(v1_mac)}") is None


def test_tokens_differ_per_rep_per_secret_and_per_expiry() -> None:
    assert tok("uma") != tok("jun")
    assert tok("uma") != tok("uma", SECRET + "-rotated")
    assert tok("uma") != tok("uma", expires_at=EXPIRES + timedelta(days=1))


def test_a_token_signed_with_another_secret_is_refused() -> None:
    assert rep_at(tok("uma", "an-old-secret-value")) is None


def test_a_rep_who_left_the_model_has_no_inbox() -> None:
    assert rep_at(tok("gone")) is None


def test_a_token_cannot_be_changed_into_another_reps() -> None:
    # Swapping the rep part keeps uma's signature, which does not hold for jun.
    _, expires, uma_sig = tok("uma").split(".")
    jun_part = tok("jun").split(".")[0]
    assert rep_at(f"{jun_part}.{expires}.{uma_sig}") is None


@pytest.mark.parametrize(
    "token",
    [
        None,
        "",
        ".",
        "..",
        "uma",
        "dW1h",
        "dW1h.",
        "dW1h.1.",
        ".abc",
        "dW1h.!!!",
        "dW1h.x.abc",
        "dW1h.-1.abc",
        "dW1h.١٢٣.abc",
        "dW1h.99999999999999999999.abc",
        "a.b.c.d",
        "dW1h.1.x" * 200,
        "é.1.é",
    ],
)
def test_malformed_tokens_are_refused_without_an_error(token: str | None) -> None:
    assert rep_at(token) is None
    if token is not None:
        token_expiry(token)  # never raises either


def test_a_truncated_signature_is_refused() -> None:
    assert rep_at(tok("uma")[:-1]) is None


# ---------------------------------------------------------------- feedback


def test_accept_makes_an_accepted_feedback_for_the_lead_by_the_rep() -> None:
    click = Click(lead_id="ld_1", alert_id="al_uma_1", status="accepted", reason="no_budget")

    feedback = feedback_for(click, alert=alert(), rep_id="uma", now=NOW)

    assert isinstance(feedback, SalesFeedback)
    assert (feedback.lead_id, feedback.rep_id, feedback.status) == ("ld_1", "uma", "accepted")
    assert (feedback.reason, feedback.reason_text) == (None, None)  # only rejections have one
    assert feedback.occurred_at == NOW


@pytest.mark.parametrize("reason", [r for r in REJECT_REASONS if r != "other"])
def test_reject_with_a_listed_reason(reason: str) -> None:
    click = Click(lead_id="ld_1", alert_id="al_uma_1", status="rejected", reason=reason)

    feedback = feedback_for(click, alert=alert(), rep_id="uma", now=NOW)

    assert isinstance(feedback, SalesFeedback)
    assert (feedback.status, feedback.reason, feedback.reason_text) == ("rejected", reason, None)


def test_reject_with_other_keeps_the_text_trimmed() -> None:
    click = Click("ld_1", "al_uma_1", "rejected", "other", "  a competitor's employee ")

    feedback = feedback_for(click, alert=alert(), rep_id="uma", now=NOW)

    assert isinstance(feedback, SalesFeedback)
    assert (feedback.reason, feedback.reason_text) == ("other", "a competitor's employee")


@pytest.mark.parametrize(
    ("click", "message"),
    [
        (
            Click("ld_1", "al_uma_1", "rejected"),
            "a rejection needs a reason: one of " + ", ".join(REJECT_REASONS),
        ),
        (
            Click("ld_1", "al_uma_1", "rejected", "not-a-reason"),
            "a rejection needs a reason: one of " + ", ".join(REJECT_REASONS),
        ),
        (
            Click("ld_1", "al_uma_1", "rejected", "other", "   "),
            "say why in a few words when the reason is 'other'",
        ),
        (
            Click("ld_1", "al_uma_1", "rejected", "other", "x" * 501),
            "the reason text is over 500 characters",
        ),
        (Click("ld_1", "al_uma_1", "won"), "status must be one of accepted, rejected"),
        (Click("ld_1", "al_uma_1", ""), "status must be one of accepted, rejected"),
    ],
)
def test_clicks_that_make_no_feedback_say_why(click: Click, message: str) -> None:
    assert feedback_for(click, alert=alert(), rep_id="uma", now=NOW) == Refusal(400, message)


def test_a_rep_cannot_answer_for_another_reps_alert() -> None:
    jun_alert = alert(rep="jun", lead="ld_9")
    click = Click(lead_id="ld_9", alert_id=jun_alert.alert_id, status="accepted")

    # The adapter looks the alert up in the rep's own inbox: none there, or a forged one.
    assert feedback_for(click, alert=None, rep_id="uma", now=NOW) == Refusal(
        404, "this alert is not in your inbox"
    )
    assert feedback_for(click, alert=jun_alert, rep_id="uma", now=NOW) == Refusal(
        404, "this alert is not in your inbox"
    )


def test_the_lead_must_be_the_alerts() -> None:
    click = Click(lead_id="ld_other", alert_id="al_uma_1", status="accepted")
    assert feedback_for(click, alert=alert(), rep_id="uma", now=NOW) == Refusal(
        404, "this alert is not in your inbox"
    )


def test_a_double_click_is_one_feedback_and_another_answer_is_another() -> None:
    def feedback_id(click: Click, now: datetime) -> str:
        feedback = feedback_for(click, alert=alert(), rep_id="uma", now=now)
        assert isinstance(feedback, SalesFeedback)
        return feedback.feedback_id

    accept = Click("ld_1", "al_uma_1", "accepted")
    reject = Click("ld_1", "al_uma_1", "rejected", "bad_timing")
    first = feedback_id(accept, NOW)

    assert feedback_id(accept, NOW + timedelta(seconds=1)) == first
    assert feedback_id(reject, NOW) != first
    assert first.startswith("fb_inbox_") and len(first) <= 128


# ---------------------------------------------------------------- the recent alerts


def test_a_rep_sees_their_own_alerts_newest_first() -> None:
    inbox = Inbox()
    for n in (1, 2, 3):
        inbox.add(alert(n))
    inbox.add(alert(1, rep="jun"))

    assert [a.alert_id for a in inbox.recent("uma")] == ["al_uma_3", "al_uma_2", "al_uma_1"]
    assert [a.alert_id for a in inbox.recent("jun")] == ["al_jun_1"]
    assert inbox.recent("queue") == []


def test_only_the_newest_alerts_are_kept_per_rep() -> None:
    inbox = Inbox(per_rep=3)
    for n in range(1, 7):
        inbox.add(alert(n))

    assert [a.alert_id for a in inbox.recent("uma")] == ["al_uma_6", "al_uma_5", "al_uma_4"]
    assert inbox.find("uma", "al_uma_1") is None


def test_a_redelivered_alert_is_kept_once() -> None:
    inbox = Inbox()
    assert inbox.add(alert(1)) is True
    assert inbox.add(alert(2)) is True
    assert inbox.add(alert(1)) is False

    assert [a.alert_id for a in inbox.recent("uma")] == ["al_uma_2", "al_uma_1"]


def test_find_is_per_rep() -> None:
    inbox = Inbox()
    inbox.add(alert(1, rep="jun"))

    assert inbox.find("jun", "al_jun_1") == alert(1, rep="jun")
    assert inbox.find("uma", "al_jun_1") is None


def test_an_answer_is_shown_with_its_alert_until_the_alert_is_dropped() -> None:
    inbox = Inbox(per_rep=2)
    inbox.add(alert(1))
    accepted = Decision("accepted", None, None)
    inbox.decide("uma", "al_uma_1", accepted)
    inbox.decide("jun", "al_uma_1", accepted)  # not jun's: nothing recorded

    assert inbox.decision("uma", "al_uma_1") == accepted
    assert inbox.decision("jun", "al_uma_1") is None
    assert alert_view(alert(1), accepted)["decision"] == {
        "status": "accepted",
        "reason": None,
        "reason_text": None,
    }

    inbox.add(alert(2))
    inbox.add(alert(3))
    assert inbox.decision("uma", "al_uma_1") is None


def test_the_page_gets_who_company_message_score_and_times() -> None:
    assert alert_view(alert(2), None) == {
        "alert_id": "al_uma_2",
        "lead_id": "ld_2",
        "email": "person2@acme.example",
        "company": "Acme",
        "message": "Person 2 downloaded a whitepaper",
        "score": 42,
        "trigger": "whitepaper-download",
        "event_at": "2026-11-26T08:59:57+00:00",
        "created_at": "2026-11-26T09:00:00+00:00",
        "decision": None,
    }


# ---------------------------------------------------------------- leadstream inbox-link

MODEL = Path(__file__).parents[1] / "integration" / "lead_model.yaml"


def test_inbox_link_prints_the_reps_signed_url(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("LEADSTREAM_INBOX_SECRET", SECRET)
    monkeypatch.setenv("LEADSTREAM_INBOX_PUBLIC_URL", "https://leads.example.com/")

    assert main(["inbox-link", "jp-rep", "--model", str(MODEL)]) == 0

    captured = capsys.readouterr()
    url = captured.out.strip()
    assert url.startswith("https://leads.example.com/inbox?token=")
    token = url.split("token=")[1]
    now = datetime.now(UTC)
    assert rep_of(token, SECRET, ("jp-rep",), now=now) == "jp-rep"
    # Open for the default 30 days, and the expiry is said (on stderr: stdout is the link).
    expires = token_expiry(token)
    assert expires is not None
    assert timedelta(days=29.9) < expires - now <= timedelta(days=30)
    assert (
        captured.err
        == f"expires {expires.isoformat().replace('+00:00', 'Z')} (LEADSTREAM_INBOX_LINK_DAYS=30)\n"
    )
    assert rep_of(token, SECRET, ("jp-rep",), now=now + timedelta(days=30)) is None


def test_inbox_link_days_sets_the_expiry(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("LEADSTREAM_INBOX_SECRET", SECRET)
    monkeypatch.setenv("LEADSTREAM_INBOX_LINK_DAYS", "1.5")

    assert main(["inbox-link", "jp-rep", "--model", str(MODEL)]) == 0

    captured = capsys.readouterr()
    expires = token_expiry(captured.out.strip().split("token=")[1])
    assert expires is not None
    assert timedelta(hours=35.9) < expires - datetime.now(UTC) <= timedelta(hours=36)
    assert "(LEADSTREAM_INBOX_LINK_DAYS=1.5)" in captured.err


def test_inbox_link_defaults_to_the_web_port(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("LEADSTREAM_INBOX_SECRET", SECRET)
    monkeypatch.delenv("LEADSTREAM_INBOX_PUBLIC_URL", raising=False)
    monkeypatch.setenv("LEADSTREAM_WEB_PORT", "7070")

    assert main(["inbox-link", "us-rep", "--model", str(MODEL)]) == 0

    assert capsys.readouterr().out.startswith("http://127.0.0.1:7070/inbox?token=")


@pytest.mark.parametrize(
    ("secret", "rep", "message"),
    [
        (SECRET, "nobody", "leadstream: no rep 'nobody' in "),
        (None, "us-rep", "leadstream: no inbox secret: set LEADSTREAM_INBOX_SECRET"),
        ("", "us-rep", "leadstream: no inbox secret: set LEADSTREAM_INBOX_SECRET"),
        ("short", "us-rep", "the inbox secret needs at least 16 characters"),
    ],
)
def test_inbox_link_refuses_unknown_reps_and_a_missing_secret(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    secret: str | None,
    rep: str,
    message: str,
) -> None:
    if secret is None:
        monkeypatch.delenv("LEADSTREAM_INBOX_SECRET", raising=False)
    else:
        monkeypatch.setenv("LEADSTREAM_INBOX_SECRET", secret)

    with contextlib.suppress(SystemExit):  # a bad setting exits 2 through SystemExit
        assert main(["inbox-link", rep, "--model", str(MODEL)]) == 2

    captured = capsys.readouterr()
    assert captured.out == ""
    assert message in captured.err
    if rep == "nobody":
        assert "(reps: us-rep, jp-rep, queue)" in captured.err
