"""CSV imports on messy files: encodings, blank lines, short and long rows, Japanese headers."""

from __future__ import annotations

import io
from datetime import UTC, date, datetime
from pathlib import Path

import orjson
import pytest

from schemas.crm import CrmAccount
from streams.codec import decode_crm_account, decode_event
from streams.csv_import import (
    CsvImportError,
    decode_bytes,
    load_mapping,
    prepare_accounts,
    prepare_events,
)
from streams.import_cli import ImportTarget, ProgressBar, run_import
from streams.kafka_connection import KafkaConnection

NOW = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)
EVENTS = load_mapping(None, kind="events")
ACCOUNTS = load_mapping(None, kind="accounts")

VISITORS_JA = (
    "来場日,氏名,会社名,メールアドレス,役職,従業員数,電話番号,備考\r\n"
    "\r\n"
    '2026/11/20,山田 太郎,株式会社アクメ,Taro.Yamada@ACME.co.jp,部長,120,03-1234-5678,"ブース A-3, 午後"\r\n'
    "2026/11/20,佐藤 花子,㈱ベータ,hanako@docomo.ne.jp\r\n"
    "２０２６／１１／２１,鈴木 一郎,ガンマ工業,\r\n"
    "2026/11/21,田中\r\n"
    "\r\n"
    "2026/11/22,高橋 次郎,デルタ,jiro@delta.example.jp,,,,,unexpected\r\n"
    "2026/11/22,伊藤 三郎,イプシロン,saburo@eps.example.jp,,約50\r\n"
    "2026-13-01,渡辺,ゼータ,w@zeta.example.jp\r\n"
    '2026/11/20,山田 太郎,株式会社アクメ,Taro.Yamada@ACME.co.jp,部長,120,03-1234-5678,"ブース A-3, 午後"\r\n'
)


def messages(prepared_records: list[tuple[bytes, bytes]]) -> list[dict[str, object]]:
    return [orjson.loads(value) for _, value in prepared_records]


@pytest.mark.parametrize(
    ("encoded", "encoding"),
    [
        (b"\xef\xbb\xbf" + VISITORS_JA.encode("utf-8"), "utf-8 (BOM)"),
        (VISITORS_JA.encode("utf-8"), "utf-8"),
        (VISITORS_JA.encode("cp932"), "shift_jis (cp932)"),
        (VISITORS_JA.encode("utf-16"), "utf-16 (BOM)"),
    ],
)
def test_a_messy_japanese_visitor_list_in_any_encoding(encoded: bytes, encoding: str) -> None:
    prepared = prepare_events(encoded, mapping=EVENTS, source="trade_show")

    assert prepared.encoding == encoding
    assert prepared.rows == 8 and prepared.blank == 2
    assert prepared.columns["email"] == "メールアドレス" and prepared.columns["date"] == "来場日"
    assert [(r.line, r.reason) for r in prepared.rejected] == [
        (5, "empty_required"),
        (6, "missing_column"),
        (8, "too_many_cells"),
        (9, "invalid_value"),
        (10, "invalid_value"),
    ]
    assert "'メールアドレス' (email) is empty" in prepared.rejected[0].message
    assert "the row has 2 of 8 columns" in prepared.rejected[1].message
    assert "'約50' is not a whole number" in prepared.rejected[3].message
    assert "'2026-13-01' is not a year-first date" in prepared.rejected[4].message
    assert prepared.accepted == 2 and prepared.duplicates == 1
    assert prepared.rejected_by_reason() == {
        "empty_required": 1,
        "invalid_value": 2,
        "missing_column": 1,
        "too_many_cells": 1,
    }

    identify, track, identify2, track2 = messages(prepared.records)
    assert track2["userId"] == "hanako@docomo.ne.jp" and track2["event"] == "Trade Show Visited"
    assert identify["type"] == "identify" and track["type"] == "track"
    assert identify["userId"] == track["userId"] == "taro.yamada@acme.co.jp"
    assert identify["traits"] == {
        "email": "taro.yamada@acme.co.jp",
        "name": "山田 太郎",
        "company": "株式会社アクメ",
        "title": "部長",
        "phone": "03-1234-5678",
        "employees": 120,
    }
    assert track["event"] == "Trade Show Visited"
    assert track["properties"] == {"source": "trade_show"}
    assert track["timestamp"] == "2026-11-20T00:00:00Z"
    assert identify2["traits"] == {  # ㈱ kept as typed: NFKC reads it as (株)
        "email": "hanako@docomo.ne.jp",
        "name": "佐藤 花子",
        "company": "(株)ベータ",
    }
    assert [key for key, _ in prepared.records] == [b"taro.yamada@acme.co.jp"] * 2 + [
        b"hanako@docomo.ne.jp"
    ] * 2
    for _, value in prepared.records:
        assert not hasattr(decode_event(value), "reason")  # what the worker accepts


def test_quoted_commas_and_line_breaks_stay_in_their_cell() -> None:
    csv = (
        'email,company,date\n"a@x.example","Acme, Inc.",2026-11-20\n'
        '"b@y.example","Two\nLines Ltd",2026-11-20\nc@z.example,Zed,2026-11-20\n'
        "d@w.example\n"
    )
    prepared = prepare_events(csv.encode(), mapping=EVENTS, source="seminar")

    companies = [m["traits"]["company"] for m in messages(prepared.records)[::2]]  # type: ignore[index]
    assert companies == ["Acme, Inc.", "Two\nLines Ltd", "Zed"]
    # The row after a two-line cell is numbered as an editor shows it.
    assert [(r.line, r.reason) for r in prepared.rejected] == [(6, "missing_column")]


def test_message_ids_are_the_same_when_the_same_rows_are_imported_again() -> None:
    one = "email,date\na@x.example,2026-11-20\nb@y.example,2026-11-20\n"
    other = "email,date,notes\nc@z.example,2026-11-21,new\nb@y.example,2026-11-20,edited\n"

    first = messages(prepare_events(one.encode(), mapping=EVENTS, source="seminar").records)
    again = messages(prepare_events(one.encode(), mapping=EVENTS, source="seminar").records)
    edited = messages(prepare_events(other.encode(), mapping=EVENTS, source="seminar").records)
    show = messages(prepare_events(one.encode(), mapping=EVENTS, source="trade_show").records)

    ids = [m["messageId"] for m in first]
    assert ids == [m["messageId"] for m in again]
    assert len(set(ids)) == 4
    assert {m["messageId"] for m in edited[2:]} == set(ids[2:])  # b's rows: same content
    assert not {m["messageId"] for m in show} & set(ids)  # another source is another event


def test_a_mapping_file_names_columns_the_crm_id_and_the_time_zone() -> None:
    mapping = load_mapping(
        "columns:\n"
        "  user_id: 顧客ID\n"
        "  email: [E-Mail, 連絡先メール]\n"
        "  date: 交換日時\n"
        "  campaign: 展示会\n"
        "event: Card Exchanged\n"
        'date_format: "%Y/%m/%d %H:%M"\n'
        'utc_offset: "+09:00"\n',
        kind="events",
    )
    csv = (
        "顧客ID,連絡先メール,交換日時,展示会,余計な列\n"
        "CRM-001,Kenji@Example.JP,2026/11/20 10:30,Japan Robot Week,x\n"
        "CRM-002,,2026/11/20 11:00,Japan Robot Week,y\n"
        ",k@example.jp,2026/11/20 11:00,Japan Robot Week,z\n"
    )
    prepared = prepare_events(csv.encode(), mapping=mapping, source="business_card")

    identify, track, identify2, _ = messages(prepared.records)
    assert track["userId"] == "CRM-001" and identify["traits"]["email"] == "kenji@example.jp"  # type: ignore[index]
    assert identify2["userId"] == "CRM-002" and "email" not in identify2["traits"]  # type: ignore[operator]
    assert track["event"] == "Card Exchanged"
    assert track["properties"] == {"source": "business_card", "name": "Japan Robot Week"}
    assert track["timestamp"] == "2026-11-20T01:30:00Z"
    assert [(r.line, r.reason) for r in prepared.rejected] == [(4, "empty_required")]


def test_a_default_date_stands_in_for_a_file_without_dates() -> None:
    prepared = prepare_events(
        b"email\nx@acme.example\n",
        mapping=EVENTS,
        source="business_card",
        default_date=date(2026, 11, 3),
    )

    track = messages(prepared.records)[1]
    assert track["event"] == "Business Card Scanned"
    assert track["timestamp"] == "2026-11-03T00:00:00Z"


@pytest.mark.parametrize(
    ("data", "mapping", "source", "words"),
    [
        (b"", None, "seminar", "no header row"),
        (b"\n\n  \n", None, "seminar", "no header row"),
        (b"a,b\n\x85\x40\n", None, "seminar", "neither UTF-8 nor Shift_JIS"),
        (b"name,company\nx,y\n", None, "seminar", "has no column for email"),
        (b"email\nx@y.example\n", None, "seminar", "has no column for date"),
        (b"email,date\n", None, "party", "source 'party' has no default event name"),
        (b"email,date\n", "columns: {mail: x}\n", "seminar", "unknown field(s) mail"),
        (b"email,date\n", "columns: {email: Mail}\n", "seminar", "no column 'Mail'"),
        (b"email,date\n", "utc_offset: JST\n", "seminar", "utc_offset must look like"),
        (b"email,date\n", "columns: [1, 2]\n", "seminar", "columns"),
        (b"email,date\n", "columns: {email: [a\n", "seminar", "not YAML"),
    ],
)
def test_files_and_mappings_that_cannot_be_used_say_why(
    data: bytes, mapping: str | None, source: str, words: str
) -> None:
    with pytest.raises(CsvImportError, match=r".*") as caught:
        prepare_events(data, mapping=load_mapping(mapping, kind="events"), source=source)
    assert words in str(caught.value)


def test_accounts_from_a_shift_jis_crm_export() -> None:
    csv = (
        "取引先ID,会社名,ウェブサイト,従業員数,業種,国,地域,担当営業,更新日\n"
        'A-001,トヨタ自動車株式会社,https://global.toyota/jp/; toyota.co.jp,"70,000",製造,日本,関東,jun,2026/10/01\n'
        "A-002,㈱メルカリ,www.mercari.com,2000名,IT,jp,,,\n"
        "A-003,Acme Robotics Inc.,acme robotics.com,,,,,,\n"
        "A-004,,nameless.example\n"
        "A-005,Globex,globex.com,,,Atlantis\n"
    ).encode("cp932")
    prepared = prepare_accounts(csv, mapping=ACCOUNTS, now=NOW)

    assert prepared.encoding == "shift_jis (cp932)"
    assert [(r.line, r.reason) for r in prepared.rejected] == [
        (4, "invalid_value"),
        (5, "empty_required"),
        (6, "invalid_value"),
    ]
    assert "'robotics.com'" not in prepared.rejected[0].message  # the bad item is named
    assert "'acme' is not a domain name" in prepared.rejected[0].message
    assert "'Atlantis' is not a 2-letter country code" in prepared.rejected[2].message
    toyota, mercari = (decode_crm_account(v) for _, v in prepared.records)
    assert isinstance(toyota, CrmAccount) and isinstance(mercari, CrmAccount)
    assert [k for k, _ in prepared.records] == [b"A-001", b"A-002"]
    assert toyota.domains == ("global.toyota", "toyota.co.jp")
    assert (toyota.employees, toyota.industry, toyota.country) == (70000, "製造", "JP")
    assert (toyota.region, toyota.owner_rep) == ("関東", "jun")
    assert toyota.updated_at == datetime(2026, 10, 1, tzinfo=UTC)
    assert mercari.name == "(株)メルカリ" and mercari.employees == 2000
    assert mercari.domains == ("mercari.com",) and mercari.country == "JP"
    assert mercari.updated_at == NOW  # no date: the import's time


def test_accounts_need_an_id_and_a_name_column() -> None:
    with pytest.raises(CsvImportError, match="no column for account_id"):
        prepare_accounts(b"name,domain\nAcme,acme.com\n", mapping=ACCOUNTS, now=NOW)


def test_decode_bytes_prefers_utf8_when_a_file_is_valid_both_ways() -> None:
    assert decode_bytes(b"Acme,acme.com\n").encoding == "utf-8"
    assert decode_bytes("会社名\n".encode()).text == "会社名\n"


# --- the command's adapter, without a broker ------------------------------------------------


def run(tmp_path: Path, csv: str, *, dry_run: bool, progress: bool = False) -> tuple[int, str, str]:
    path = tmp_path / "visitors.csv"
    path.write_bytes(csv.encode("cp932"))
    out, err = io.StringIO(), io.StringIO()
    code = run_import(
        "events",
        file=path,
        mapping=None,
        # Nothing listens there: a dry run must not even try it.
        target=ImportTarget(
            broker="kafka://127.0.0.1:9",
            kafka=KafkaConnection(bootstrap="127.0.0.1:9"),
            topic="raw",
        ),
        source="seminar",
        dry_run=dry_run,
        progress=progress,
        now=NOW,
        out=out,
        err=err,
    )
    return code, out.getvalue(), err.getvalue()


def test_a_dry_run_reports_and_sends_nothing(tmp_path: Path) -> None:
    code, out, err = run(tmp_path, VISITORS_JA, dry_run=True)

    assert code == 1  # rows were rejected
    assert f"{tmp_path}/visitors.csv: shift_jis (cp932), 8 row(s), 2 blank line(s) skipped" in out
    assert "columns: email <- メールアドレス" in out
    assert out.strip().endswith(
        "would produce 2 row(s) as 4 messages to raw; rejected 5 row(s): empty_required 1, "
        "invalid_value 2, missing_column 1, too_many_cells 1; 1 duplicate row(s) skipped; "
        "dry run: nothing was sent"
    )
    assert f"{tmp_path}/visitors.csv:6: missing_column: no '氏名' (name)" not in err
    assert f"{tmp_path}/visitors.csv:6: missing_column: no '会社名'" not in err
    assert f"{tmp_path}/visitors.csv:6: missing_column: no 'メールアドレス' (email)" in err
    assert "cannot import" not in err


def test_without_dry_run_an_unreachable_broker_is_one_line(tmp_path: Path) -> None:
    code, _, err = run(tmp_path, "email,date\na@x.example,2026-11-20\n", dry_run=False)

    assert code == 1
    assert "leadstream: cannot import to kafka://127.0.0.1:9" in err
    assert "Traceback" not in err


def test_the_progress_bar_shows_rows_and_rate() -> None:
    err = io.StringIO()
    ticks = iter([0.0, 0.5, 1.0, 2.0])
    bar = ProgressBar(err, clock=lambda: next(ticks), every_s=0.2, width=10)

    bar.update("checking ", 0, 4000)
    bar.update("checking ", 1000, 4000)
    bar.update("checking ", 2000, 4000)
    bar.update("checking ", 4000, 4000)
    bar.close()

    lines = err.getvalue().split("\r")
    assert "checking  [##--------]  25%  1,000/4,000 rows  2,000 rows/s" in lines[2]
    assert "checking  [##########] 100%  4,000/4,000 rows  2,000 rows/s" in lines[4]
    assert err.getvalue().endswith("\n")
