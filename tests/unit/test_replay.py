"""`leadstream model replay`: what two lead models would have decided on one hand-written log.

The story (two ISO weeks, 2026-W45 from Monday 2 November and 2026-W46), under model A
(MQL at 50 points) and model B (the same at 60):

- Xavier (acme.example, US): identify, /pricing (20), then a whitepaper (30) in W46 that
  the log lists *before* the pricing view. 50 points: an MQL in W46 under A only.
- Yvonne (acme.example, US): identify, /pricing twice, a whitepaper: 70, an MQL in W45
  under both; her second /pricing makes acme.example a buying group (2 contacts >= 20).
  The whitepaper line is sent twice (a retry): one duplicate.
- Zoe (gmail.com, DE): identify, then requests a demo: a hot alert to Ben.
- an anonymous visitor: /pricing, a webinar and a demo request, never identified.
- a line that is not JSON, a blank line, and a line without a messageId.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from streams.cli import main
from streams.lead_model import LeadModel, parse_model
from streams.leads import lead_id_for
from streams.replay import ReplayReport, decode_feedback, render_table, replay

NOW = datetime(2026, 12, 1, tzinfo=UTC)

MODEL_A = """\
version: "a-1"
name: test
scores:
  - id: engagement
    threshold: 50
    rules:
      - {id: pricing, page: "/pricing*", points: 20}
      - {id: whitepaper, event: Whitepaper Downloaded, points: 30}
      - {id: webinar, event: Webinar Attended, points: 10}
fit:
  grades: {A: 40, B: 20, C: 5}
  rules:
    - {id: size, trait: employees, min: 50, points: 10}
mql: {min_grade: C}
triggers:
  - {id: demo-request, event: Demo Requested, message: requested a demo}
accounts:
  buying_group: {min_contacts: 2, min_score: 20}
reps:
  - {id: carla, name: Carla Gomez, email: carla@sales.example, territory: {countries: [US]}}
  - {id: ben, name: Ben Schulz, email: ben@sales.example, territory: {countries: [DE]}}
  - {id: queue, name: Inside Sales Queue, email: queue@sales.example}
fallback_rep: queue
"""
MODEL_B = MODEL_A.replace('version: "a-1"', 'version: "b-1"').replace(
    "threshold: 50", "threshold: 60"
)

X, Y, Z, W = (lead_id_for(f"anon-{who}") for who in ("x", "y", "z", "w"))


def segment(kind: str, mid: str, anon: str, at: str, **fields: Any) -> bytes:
    return orjson.dumps(
        {
            "type": kind,
            "messageId": mid,
            "anonymousId": anon,
            "timestamp": at,
            "context": {"library": {"name": "analytics.js", "version": "5.2.0"}},
            **fields,
        }
    )


def person(email: str, country: str, employees: int | None = None) -> dict[str, Any]:
    traits: dict[str, Any] = {"email": email, "country": country}
    if employees is not None:
        traits["employees"] = employees
    return {"traits": traits}


# fmt: off
LOG: list[bytes] = [
    segment("identify", "x-1", "anon-x", "2026-11-02T09:00:00Z", userId="crm-x", **person("xavier@acme.example", "US", 100)),
    segment("track", "x-3", "anon-x", "2026-11-09T09:00:00Z", event="Whitepaper Downloaded", properties={"title": "Routing"}),
    segment("page", "x-2", "anon-x", "2026-11-03T09:00:00Z", properties={"path": "/pricing"}),
    segment("identify", "y-1", "anon-y", "2026-11-03T10:00:00Z", userId="crm-y", **person("yvonne@acme.example", "US", 100)),
    segment("page", "y-2", "anon-y", "2026-11-03T11:00:00Z", properties={"path": "/pricing"}),
    segment("page", "y-3", "anon-y", "2026-11-04T11:00:00Z", properties={"path": "/pricing/teams"}),
    segment("track", "y-4", "anon-y", "2026-11-05T11:00:00Z", event="Whitepaper Downloaded", properties={"title": "Routing"}),
    segment("track", "y-4", "anon-y", "2026-11-05T11:00:00Z", event="Whitepaper Downloaded", properties={"title": "Routing"}),
    segment("identify", "z-1", "anon-z", "2026-11-04T09:00:00Z", userId="crm-z", **person("zoe@gmail.com", "DE")),
    segment("track", "z-2", "anon-z", "2026-11-05T09:00:00Z", event="Demo Requested", properties={}),
    segment("page", "w-1", "anon-w", "2026-11-06T09:00:00Z", properties={"path": "/pricing"}),
    segment("track", "w-2", "anon-w", "2026-11-06T10:00:00Z", event="Webinar Attended", properties={"webinar": "Intro"}),
    segment("track", "w-3", "anon-w", "2026-11-06T11:00:00Z", event="Demo Requested", properties={}),
    b'{"type": "page", oops',
    b"",
    b'{"type": "track", "anonymousId": "a", "event": "x", "timestamp": "2026-11-06T00:00:00Z"}',
]

#: Xavier: opportunity, then won 20,000. Yvonne: lost. Zoe: opportunity. The anonymous
#: visitor: rejected. A lead the log never saw. One line that is not an outcome.
FEEDBACK: list[bytes] = [
    orjson.dumps({"feedback_id": "f-1", "lead_id": X, "status": "opportunity", "occurred_at": "2026-11-20T00:00:00Z"}),
    orjson.dumps({"feedback_id": "f-2", "lead_id": X, "status": "won", "occurred_at": "2026-11-27T00:00:00Z", "amount": 20000}),
    orjson.dumps({"feedback_id": "f-3", "lead_id": Y, "status": "lost", "occurred_at": "2026-11-21T00:00:00Z", "reason": "no budget"}),
    orjson.dumps({"feedback_id": "f-4", "lead_id": Z, "status": "opportunity", "occurred_at": "2026-11-22T00:00:00Z"}),
    orjson.dumps({"feedback_id": "f-5", "lead_id": W, "status": "rejected", "reason": "bad_timing", "occurred_at": "2026-11-22T00:00:00Z"}),
    orjson.dumps({"feedback_id": "f-6", "lead_id": "ld_0000000000000000", "status": "opportunity", "occurred_at": "2026-11-22T00:00:00Z"}),
    orjson.dumps({"feedback_id": "f-7", "lead_id": X, "status": "maybe", "occurred_at": "2026-11-22T00:00:00Z"}),
]
# fmt: on


@pytest.fixture(scope="module")
def models() -> list[LeadModel]:
    return [parse_model(MODEL_A), parse_model(MODEL_B)]


@pytest.fixture(scope="module")
def report(models: list[LeadModel]) -> ReplayReport:
    feedback = decode_feedback(FEEDBACK)
    return replay(LOG, models=models, feedback=feedback.outcomes, now=NOW)


def weeks(report: ReplayReport, model: int) -> dict[str, tuple[int, int, int]]:
    return {w.week: (w.mqls, w.hot_alerts, w.account_alerts) for w in report.models[model].weeks}


def test_mqls_and_alerts_per_week_by_event_time_not_log_order(report: ReplayReport) -> None:
    # Xavier's whitepaper (W46) comes before his pricing view (W45) in the log; in log
    # order he would reach 50 points on the pricing view, in W45.
    assert weeks(report, 0) == {"2026-W45": (1, 1, 1), "2026-W46": (1, 0, 0)}
    assert weeks(report, 1) == {"2026-W45": (1, 1, 1), "2026-W46": (0, 0, 0)}
    a, b = report.models
    assert (a.mqls, a.mql_leads, a.hot_alerts, a.account_alerts, a.handoffs) == (2, 2, 1, 1, 3)
    assert (b.mqls, b.mql_leads, b.hot_alerts, b.account_alerts, b.handoffs) == (1, 1, 1, 1, 2)
    assert (a.name, a.version, b.version) == ("test", "a-1", "b-1")


def test_final_stages_and_load_per_rep(report: ReplayReport) -> None:
    a, b = report.models
    assert a.stages == {"anonymous": 1, "known": 1, "mql": 2}
    assert b.stages == {"anonymous": 1, "known": 1, "engaged": 1, "mql": 1}
    # Carla: the two acme.example MQLs (hand-off and MQL alert each) and the buying group;
    # Ben: Zoe's demo request. The anonymous visitor's demo request waits for an identity.
    assert [(r.rep_id, r.name, r.handoffs, r.alerts) for r in a.reps] == [
        ("carla", "Carla Gomez", 2, 3),
        ("ben", "Ben Schulz", 1, 1),
        ("queue", "Inside Sales Queue", 0, 0),
    ]
    assert [(r.rep_id, r.handoffs, r.alerts) for r in b.reps] == [
        ("carla", 1, 2),
        ("ben", 1, 1),
        ("queue", 0, 0),
    ]


def test_the_leads_whose_status_differs_are_listed(report: ReplayReport) -> None:
    (comparison,) = report.comparisons
    assert (comparison.other, comparison.leads) == (1, 1)
    assert (comparison.mql_first_only, comparison.mql_other_only) == (1, 0)
    (xavier,) = comparison.examples
    assert (xavier.lead_id, xavier.stages, xavier.mql, xavier.scores) == (
        X,
        ("mql", "engaged"),
        (True, False),
        (50, 50),
    )


def test_precision_recall_lift_and_won_amounts_from_feedback(report: ReplayReport) -> None:
    # 4 leads; positive (opportunity or won): Xavier and Zoe, so P(positive) = 1/2.
    assert (report.leads, report.feedback, report.feedback_unmatched) == (4, 6, 1)
    a, b = (m.prediction for m in report.models)
    assert a is not None and b is not None
    assert (a.positives, a.mql_leads, a.true_positives) == (2, 2, 1)  # MQLs Xavier, Yvonne
    assert (a.precision, a.recall) == (0.5, 0.5)
    assert (b.positives, b.mql_leads, b.true_positives) == (2, 1, 0)  # MQL Yvonne only
    assert (b.precision, b.recall) == (0.0, 0.0)
    assert (a.won_mql, a.won_other, b.won_mql, b.won_other) == (20000, 0, 0, 20000)
    lifts = {r.rule: (r.leads, r.positives, r.lift) for r in a.rules}
    assert lifts["pricing"] == (3, 1, pytest.approx((1 / 3) / (1 / 2)))  # X, Y, anonymous
    assert lifts["whitepaper"] == (2, 1, pytest.approx(1.0))  # X, Y
    assert lifts["webinar"] == (1, 0, 0.0)  # the anonymous visitor
    assert [r.rule for r in b.rules] == ["pricing", "whitepaper", "webinar"]


def test_empty_sets_give_no_figure_instead_of_a_division_by_zero(models: list[LeadModel]) -> None:
    only_anonymous = LOG[10:13]
    rejected = decode_feedback(FEEDBACK[4:5]).outcomes
    done = replay(only_anonymous, models=models[:1], feedback=rejected, now=NOW)
    (model,) = done.models
    assert model.prediction is not None
    assert (model.prediction.positives, model.prediction.mql_leads) == (0, 0)
    assert (model.prediction.precision, model.prediction.recall) == (None, None)
    assert {r.rule: r.lift for r in model.prediction.rules} == {
        "pricing": None,
        "whitepaper": None,
        "webinar": None,
    }
    assert (model.prediction.won_mql, model.prediction.won_other) == (None, None)  # no amounts
    table = render_table(done)
    assert (row(table, "precision"), row(table, "recall")) == (["n/a"], ["n/a"])
    assert row(table, "pricing") == ["engagement", "1", "n/a"]


def test_a_deal_reported_twice_counts_once_at_its_latest_amount(models: list[LeadModel]) -> None:
    def won(at: str, amount: int) -> bytes:
        return orjson.dumps(
            {
                "feedback_id": "f-8",
                "lead_id": X,
                "status": "won",
                "occurred_at": at,
                "amount": amount,
            }
        )

    lines = [won("2026-11-27T00:00:00Z", 1), won("2026-11-28T00:00:00Z", 25000)]
    for order in (lines, lines[::-1]):  # the later date counts, wherever it is in the file
        done = replay(LOG, models=models, feedback=decode_feedback(order).outcomes, now=NOW)
        amounts = [
            (m.prediction.won_mql, m.prediction.won_other) for m in done.models if m.prediction
        ]
        assert amounts == [(25000, 0), (0, 25000)]  # Xavier is an MQL under A only


def test_bad_lines_are_counted_by_reason_with_their_numbers(report: ReplayReport) -> None:
    assert (report.lines, report.events, report.blank, report.rejected) == (16, 13, 1, 2)
    assert report.rejected_by_reason == {"invalid_json": 1, "missing_field": 1}
    assert [(b.line, b.reason) for b in report.first_rejected] == [
        (14, "invalid_json"),
        (16, "missing_field"),
    ]
    assert "messageId" in report.first_rejected[1].message
    assert [m.duplicates for m in report.models] == [1, 1]  # Yvonne's whitepaper, resent
    assert report.first_event_at == datetime(2026, 11, 2, 9, tzinfo=UTC)


def test_bad_feedback_lines_are_reported_not_used() -> None:
    feedback = decode_feedback([*FEEDBACK, b"", b"not json"])
    assert len(feedback.outcomes) == 6
    assert [(b.line, b.reason) for b in feedback.bad] == [(7, "invalid_value"), (9, "invalid_json")]
    assert feedback.bad[0].message.startswith("status: Input should be")


def test_progress_is_reported_per_model(models: list[LeadModel]) -> None:
    calls: list[tuple[int, int]] = []
    replay(LOG, models=models, now=NOW, progress=lambda done, total: calls.append((done, total)))
    assert calls[-1] == (26, 26)  # 13 events, two models


# --- the command --------------------------------------------------------------------------


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    paths = {
        "events": tmp_path / "events.jsonl",
        "a": tmp_path / "a.yaml",
        "b": tmp_path / "b.yaml",
        "feedback": tmp_path / "feedback.jsonl",
    }
    paths["events"].write_bytes(b"\n".join(LOG) + b"\n")
    paths["a"].write_text(MODEL_A)
    paths["b"].write_text(MODEL_B)
    paths["feedback"].write_bytes(b"\n".join(FEEDBACK) + b"\n")
    return paths


def replay_command(files: dict[str, Path], *extra: str) -> list[str]:
    return [
        "model",
        "replay",
        "--events",
        str(files["events"]),
        "--model",
        str(files["a"]),
        "--compare",
        str(files["b"]),
        "--feedback",
        str(files["feedback"]),
        *extra,
    ]


def row(table: str, first: str) -> list[str]:
    """The cells of the table row that starts with `first` (cells never contain spaces)."""
    found = [line.split() for line in table.splitlines() if line.startswith(first + " ")]
    assert len(found) == 1, (first, table)
    return found[0][len(first.split()) :]


def test_command_prints_the_tables(
    files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(replay_command(files, "--no-progress")) == 0
    out, err = capsys.readouterr()
    assert out.startswith(
        "Replayed 13 events of 16 lines (2026-11-02 to 2026-11-09), 4 leads; "
        "2 lines rejected, 1 blank, 1 duplicates skipped\n"
    )
    assert "  line 14: invalid_json: the value is not JSON" in out
    assert f"A = test va-1 ({files['a']})" in out
    assert f"B = test vb-1 ({files['b']})" in out
    # week: MQLs A B, hot alerts A B, account alerts A B
    assert row(out, "2026-W45") == ["1", "1", "1", "1", "1", "1"]
    assert row(out, "2026-W46") == ["1", "0", "0", "0", "0", "0"]
    assert row(out, "total") == ["2", "1", "1", "1", "1", "1"]
    assert row(out, "mql") == ["2", "1"]
    assert row(out, "engaged") == ["0", "1"]
    # rep, name, hand-offs A, alerts A, hand-offs B, alerts B
    assert row(out, "carla") == ["Carla", "Gomez", "2", "3", "1", "2"]
    assert "Leads whose final status differs, B vs A: 1 (MQL under A only 1, under B only 0)" in out
    assert row(out, X) == ["mql", "engaged", "yes", "no", "50", "50"]
    assert row(out, "precision") == ["50.0%", "0.0%"]
    assert row(out, "recall") == ["50.0%", "0.0%"]
    assert row(out, "won amount, MQL leads") == ["20,000", "0"]
    assert row(out, "won amount, other leads") == ["0", "20,000"]
    # rule, score, leads A, lift A, leads B, lift B
    assert row(out, "pricing") == ["engagement", "3", "0.67x", "3", "0.67x"]
    assert row(out, "webinar") == ["engagement", "1", "0.00x", "1", "0.00x"]
    assert "1 feedback lines rejected (listed on stderr)" in out
    assert err == f"{files['feedback']}:7: invalid_value: status: " + err.split("status: ", 1)[1]
    assert "replaying" not in err


def test_command_json_has_the_same_numbers(
    files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(replay_command(files, "--json", "--no-progress")) == 0
    doc = orjson.loads(capsys.readouterr().out)
    assert doc["files"]["models"] == [str(files["a"]), str(files["b"])]
    report = doc["report"]
    assert (report["events"], report["rejected"], report["leads"]) == (13, 2, 4)
    a, b = report["models"]
    assert [(w["week"], w["mqls"], w["hot_alerts"]) for w in a["weeks"]] == [
        ("2026-W45", 1, 1),
        ("2026-W46", 1, 0),
    ]
    assert [w["mqls"] for w in b["weeks"]] == [1, 0]
    assert {r["rep_id"]: (r["handoffs"], r["alerts"]) for r in a["reps"]}["carla"] == (2, 3)
    assert (a["prediction"]["precision"], a["prediction"]["recall"]) == (0.5, 0.5)
    assert report["comparisons"][0]["examples"][0]["lead_id"] == X
    assert doc["feedback_rejected"][0]["line"] == 7


def test_command_shows_progress_on_request(
    files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(replay_command(files, "--progress")) == 0
    assert "replaying: 26/26 events (100%)" in capsys.readouterr().err


def test_invalid_model_exits_1_with_file_and_line(
    files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    files["b"].write_text(MODEL_B.replace("threshold: 60", "threshold: 0"))
    assert main(replay_command(files)) == 1
    out, err = capsys.readouterr()
    line = MODEL_B.splitlines().index("    threshold: 60") + 1
    assert f"{files['b']}:{line}: scores.0.threshold: Input should be greater than 0" in err
    assert out == ""


def test_unreadable_file_exits_2_with_one_line(
    files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    files["events"].unlink()
    assert main(replay_command(files, "--no-progress")) == 2
    out, err = capsys.readouterr()
    assert err == f"leadstream: cannot read {files['events']}: No such file or directory\n"
    assert out == ""


def test_one_person_on_two_identifiers_is_one_lead_in_the_replay(models: list[LeadModel]) -> None:
    # A server-side whitepaper download by userId, then the browser that identifies with it.
    log = [
        orjson.dumps(
            {
                "type": "track",
                "messageId": "p-1",
                "userId": "crm-p",
                "event": "Whitepaper Downloaded",
                "timestamp": "2026-11-02T09:00:00Z",
            }
        ),
        segment("page", "p-2", "anon-p", "2026-11-03T09:00:00Z", properties={"path": "/pricing"}),
        segment(
            "identify",
            "p-3",
            "anon-p",
            "2026-11-03T10:00:00Z",
            userId="crm-p",
            **person("pat@acme.example", "US", 100),
        ),
    ]
    # Sales knew the server-side lead's id: its outcome counts for the merged lead.
    feedback = [
        orjson.dumps(
            {
                "feedback_id": "f-p",
                "lead_id": lead_id_for("crm-p"),
                "status": "won",
                "occurred_at": "2026-11-20T00:00:00Z",
                "amount": 5000,
            }
        )
    ]

    result = replay(log, models=models[:1], feedback=decode_feedback(feedback).outcomes, now=NOW)

    (a,) = result.models
    assert result.leads == 1 and result.feedback_unmatched == 0
    assert a.stages == {"mql": 1}  # pricing 20 + whitepaper 30, once each, on one lead
    assert a.prediction is not None
    assert (a.prediction.positives, a.prediction.mql_leads, a.prediction.true_positives) == (
        1,
        1,
        1,
    )
    assert a.prediction.won_mql == 5000
