"""CSV imports: CRM accounts and offline events (trade shows, seminars, business cards) as records.

Pure: bytes of a CSV file and a column mapping in, (key, value) records and rejected rows out.
`leadstream import` (streams/import_cli.py) reads the files and produces the records.
"""

from __future__ import annotations

import csv
import hashlib
import io
import re
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, timezone
from typing import Any, Literal

import orjson
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from schemas.crm import normalize_domain
from streams.codec import Rejection, decode_crm_account, decode_event, encode

__all__ = [
    "ACCOUNT_FIELDS",
    "EVENT_FIELDS",
    "SOURCE_EVENTS",
    "ColumnMapping",
    "CsvImportError",
    "Decoded",
    "Kind",
    "Prepared",
    "RejectedRow",
    "Table",
    "decode_bytes",
    "load_mapping",
    "prepare_accounts",
    "prepare_events",
    "read_table",
]

Kind = Literal["accounts", "events"]

#: Our fields for `import accounts` -> the CSV headers tried when the mapping names none.
ACCOUNT_FIELDS: Mapping[str, tuple[str, ...]] = {
    "account_id": ("account_id", "account id", "id", "crm id", "取引先id", "企業id", "顧客id"),
    "name": ("name", "account name", "company", "company name", "会社名", "企業名", "取引先名"),
    "domains": ("domains", "domain", "website", "web site", "url", "ドメイン", "ウェブサイト"),
    "employees": ("employees", "employee count", "number of employees", "従業員数", "社員数"),
    "industry": ("industry", "業種", "業界"),
    "country": ("country", "country code", "国", "国名"),
    "region": ("region", "地域", "エリア"),
    "owner_rep": ("owner_rep", "owner", "account owner", "担当営業", "営業担当", "担当者"),
    "updated_at": ("updated_at", "last modified", "last modified date", "更新日", "更新日時"),
}
_ACCOUNT_REQUIRED = ("account_id", "name")

#: Our fields for `import events` -> the CSV headers tried when the mapping names none.
#: `user_id` has no defaults: a vendor's badge or lead number is not a CRM id.
EVENT_FIELDS: Mapping[str, tuple[str, ...]] = {
    "user_id": (),
    "email": ("email", "e-mail", "email address", "mail", "メールアドレス", "メール", "eメール"),
    "name": ("name", "full name", "contact name", "氏名", "名前", "お名前"),
    "first_name": ("first name", "first_name", "given name", "名"),
    "last_name": ("last name", "last_name", "family name", "surname", "姓"),
    "company": ("company", "company name", "organization", "会社名", "企業名", "勤務先"),
    "title": ("title", "job title", "position", "役職"),
    "phone": ("phone", "phone number", "tel", "telephone", "電話番号", "電話"),
    "employees": ("employees", "company size", "従業員数", "社員数"),
    "industry": ("industry", "業種"),
    "country": ("country", "国", "国名"),
    "date": ("date", "event date", "visit date", "来場日", "参加日", "開催日", "日付", "交換日"),
    "time": ("time", "時刻", "来場時刻"),
    "campaign": ("campaign", "event name", "show", "展示会名", "セミナー名", "イベント名"),
}

#: `--source` -> the track event each row becomes (others need `event:` in the mapping).
SOURCE_EVENTS: Mapping[str, str] = {
    "trade_show": "Trade Show Visited",
    "seminar": "Seminar Attended",
    "webinar": "Webinar Attended",
    "business_card": "Business Card Scanned",
}

#: Country names people write instead of ISO codes (anything else must be a 2-letter code).
_COUNTRIES = {
    "japan": "JP",
    "日本": "JP",
    "united states": "US",
    "usa": "US",
    "u.s.a.": "US",
    "u.s.": "US",
    "america": "US",
    "アメリカ": "US",
    "米国": "US",
    "germany": "DE",
    "deutschland": "DE",
    "ドイツ": "DE",
    "united kingdom": "GB",
    "uk": "GB",
    "イギリス": "GB",
    "英国": "GB",
    "france": "FR",
    "フランス": "FR",
    "china": "CN",
    "中国": "CN",
    "korea": "KR",
    "south korea": "KR",
    "韓国": "KR",
    "canada": "CA",
    "カナダ": "CA",
}


class CsvImportError(Exception):
    """The file as a whole cannot be imported (not a row): no header, a bad mapping."""


@dataclass(frozen=True, slots=True)
class RejectedRow:
    line: int  # of the file, where the row starts
    reason: str  # missing_column | empty_required | too_many_cells | invalid_value | a DLQ reason
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.reason}: {self.message}"


@dataclass(frozen=True, slots=True)
class Decoded:
    text: str
    encoding: str  # as reported: utf-8, utf-8 (BOM), utf-16 (BOM), shift_jis (cp932)


def decode_bytes(data: bytes) -> Decoded:
    """Text of a CSV file: a BOM decides; else UTF-8 if it is valid; else Shift_JIS.

    Shift_JIS is read as cp932 (Microsoft's superset, what Excel writes in Japan: ①, ㈱,
    NEC special characters).
    """
    if data.startswith(b"\xef\xbb\xbf"):
        return Decoded(data.decode("utf-8-sig"), "utf-8 (BOM)")
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return Decoded(data.decode("utf-16"), "utf-16 (BOM)")
    try:
        return Decoded(data.decode("utf-8"), "utf-8")
    except UnicodeDecodeError:
        pass
    try:
        return Decoded(data.decode("cp932"), "shift_jis (cp932)")
    except UnicodeDecodeError as exc:
        raise CsvImportError(
            f"neither UTF-8 nor Shift_JIS text (byte {exc.start}); save it as UTF-8 CSV"
        ) from exc


@dataclass(frozen=True, slots=True)
class Row:
    line: int
    cells: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Table:
    header: tuple[str, ...]
    header_line: int
    rows: tuple[Row, ...]
    blank: int  # blank lines (or rows of empty cells) skipped


def read_table(text: str) -> Table:
    """Header and rows; blank lines skipped; line numbers as an editor shows them."""
    first = next((line for line in text.splitlines() if line.strip(" \t,;")), "")
    delimiter = max((",", "\t", ";"), key=first.count)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    header: tuple[str, ...] | None = None
    header_line = 0
    rows: list[Row] = []
    blank = 0
    previous = 0
    try:
        for cells in reader:
            line, previous = previous + 1, reader.line_num
            values = tuple(c.strip() for c in cells)
            if not any(values):
                blank += 1
                continue
            if header is None:
                header, header_line = values, line
            else:
                rows.append(Row(line, values))
    except csv.Error as exc:
        raise CsvImportError(f"line {reader.line_num}: not CSV: {exc}") from exc
    if header is None:
        raise CsvImportError("no header row: the file has no non-blank line")
    return Table(header, header_line, tuple(rows), blank)


# --- the mapping file ----------------------------------------------------------------------


class _MappingFile(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    columns: dict[str, str | list[str]] = Field(default_factory=dict)
    event: str | None = Field(default=None, min_length=1, max_length=256)
    date_format: str | None = None
    utc_offset: str = "+00:00"

    @field_validator("utc_offset")
    @classmethod
    def _offset(cls, value: str) -> str:
        if not re.fullmatch(r"[+-]\d{2}:\d{2}", value):
            raise ValueError("utc_offset must look like +09:00 or -05:00")
        return value


@dataclass(frozen=True, slots=True)
class ColumnMapping:
    """Which CSV headers each of our fields is looked for under, and how to read values."""

    columns: Mapping[str, tuple[str, ...]]  # field -> header names to try, in order
    explicit: frozenset[str]  # fields the mapping file named: their column must exist
    event: str | None = None
    date_format: str | None = None
    zone: timezone = UTC

    @classmethod
    def defaults(cls, kind: Kind) -> ColumnMapping:
        return cls(dict(ACCOUNT_FIELDS if kind == "accounts" else EVENT_FIELDS), frozenset())


def load_mapping(text: str | None, *, kind: Kind) -> ColumnMapping:
    """The mapping file's text (None: the defaults) over the default headers of `kind`."""
    if text is None:
        return ColumnMapping.defaults(kind)
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise CsvImportError(f"mapping: not YAML: {exc}") from exc
    try:
        parsed = _MappingFile.model_validate(doc if doc is not None else {})
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'mapping'}: {e['msg']}" for e in exc.errors()
        )
        raise CsvImportError(f"mapping: {problems}") from exc
    fields = ACCOUNT_FIELDS if kind == "accounts" else EVENT_FIELDS
    unknown = sorted(set(parsed.columns) - set(fields))
    if unknown:
        raise CsvImportError(
            f"mapping: unknown field(s) {', '.join(unknown)} for {kind}; "
            f"the fields are {', '.join(fields)}"
        )
    columns = dict(fields)
    for name, value in parsed.columns.items():
        columns[name] = (value,) if isinstance(value, str) else tuple(value)
    sign = -1 if parsed.utc_offset.startswith("-") else 1
    hours, minutes = (int(p) for p in parsed.utc_offset[1:].split(":"))
    zone = timezone(sign * timedelta(hours=hours, minutes=minutes))
    return ColumnMapping(columns, frozenset(parsed.columns), parsed.event, parsed.date_format, zone)


def _header_key(name: str) -> str:
    return " ".join(unicodedata.normalize("NFKC", name).casefold().split())


def _resolve(
    table: Table, mapping: ColumnMapping, required: Sequence[str]
) -> dict[str, tuple[int, str]]:
    """field -> (column index, header text), for the fields found in the header."""
    index: dict[str, int] = {}
    for i, name in enumerate(table.header):
        index.setdefault(_header_key(name), i)
    found: dict[str, tuple[int, str]] = {}
    for name, candidates in mapping.columns.items():
        for candidate in candidates:
            at = index.get(_header_key(candidate))
            if at is not None:
                found[name] = (at, table.header[at])
                break
        else:
            if name in mapping.explicit:
                raise CsvImportError(
                    f"mapping: {name}: no column {' or '.join(map(repr, candidates))} in the "
                    f"header (line {table.header_line}: {', '.join(table.header)})"
                )
    missing = [name for name in required if name not in found]
    if missing:
        wanted = "; ".join(
            f"{name} ({', '.join(mapping.columns[name]) or 'map it in the mapping file'})"
            for name in missing
        )
        raise CsvImportError(
            f"the header (line {table.header_line}) has no column for {wanted}; "
            "name it in a mapping file (--mapping)"
        )
    return found


# --- rows to records -----------------------------------------------------------------------


@dataclass(slots=True)
class Prepared:
    """What a file becomes: records to produce, in file order, and the rows rejected."""

    encoding: str
    columns: dict[str, str]  # field -> the header it was read from
    rows: int = 0  # data rows (not blank, not the header)
    blank: int = 0
    accepted: int = 0  # rows that became records
    duplicates: int = 0  # rows repeating an earlier row: nothing new to produce
    records: list[tuple[bytes, bytes]] = field(default_factory=list)
    rejected: list[RejectedRow] = field(default_factory=list)

    def rejected_by_reason(self) -> dict[str, int]:
        return dict(sorted(Counter(r.reason for r in self.rejected).items()))


class _Reject(Exception):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


Progress = Callable[[int, int], None]
_PROGRESS_EVERY = 500


class _Cells:
    """One row's values by our field names."""

    def __init__(self, row: Row, columns: Mapping[str, tuple[int, str]], width: int) -> None:
        self._row = row
        self._columns = columns
        self._width = width

    def get(self, name: str) -> str:
        """The value ('' when empty or the row is short); NFKC, so full-width text reads."""
        where = self._columns.get(name)
        if where is None or where[0] >= len(self._row.cells):
            return ""
        return unicodedata.normalize("NFKC", self._row.cells[where[0]]).strip()

    def required(self, name: str) -> str:
        index, header = self._columns[name]
        cells = self._row.cells
        if index >= len(cells):
            raise _Reject(
                "missing_column",
                f"no {header!r} ({name}): the row has {len(cells)} of {self._width} columns",
            )
        value = self.get(name)
        if not value:
            raise _Reject("empty_required", f"{header!r} ({name}) is empty")
        return value

    def header(self, name: str) -> str:
        return self._columns[name][1]


def _start(
    data: bytes, mapping: ColumnMapping, required: Sequence[str]
) -> tuple[Table, dict[str, tuple[int, str]], Prepared]:
    decoded = decode_bytes(data)
    table = read_table(decoded.text)
    columns = _resolve(table, mapping, required)
    prepared = Prepared(
        encoding=decoded.encoding,
        columns={name: header for name, (_, header) in columns.items()},
        rows=len(table.rows),
        blank=table.blank,
    )
    return table, columns, prepared


def _each(
    table: Table,
    prepared: Prepared,
    columns: Mapping[str, tuple[int, str]],
    progress: Progress | None,
) -> Iterator[tuple[Row, _Cells]]:
    width = len(table.header)
    total = len(table.rows)
    for n, row in enumerate(table.rows, start=1):
        if progress is not None and not n % _PROGRESS_EVERY:
            progress(n, total)
        extra = [c for c in row.cells[width:] if c]
        if extra:
            prepared.rejected.append(
                RejectedRow(
                    row.line,
                    "too_many_cells",
                    f"{len(row.cells)} cells for {width} columns (an unquoted comma?)",
                )
            )
            continue
        yield row, _Cells(row, columns, width)
    if progress is not None:
        progress(total, total)


def prepare_accounts(
    data: bytes, *, mapping: ColumnMapping, now: datetime, progress: Progress | None = None
) -> Prepared:
    """A CSV of CRM accounts to `crm.accounts` records keyed by account_id.

    `updated_at` is `now` for rows that have none; a later row for the same account_id wins
    (as compaction would decide).
    """
    table, columns, prepared = _start(data, mapping, _ACCOUNT_REQUIRED)
    zone = mapping.zone
    for row, cells in _each(table, prepared, columns, progress):
        try:
            doc: dict[str, Any] = {
                "account_id": cells.required("account_id"),
                "name": cells.required("name"),
                "domains": _domains(cells),
                "employees": _whole(cells, "employees"),
                "industry": cells.get("industry") or None,
                "country": _country(cells),
                "region": cells.get("region") or None,
                "owner_rep": cells.get("owner_rep") or None,
                "updated_at": (
                    _when(cells, "updated_at", None, mapping.date_format, zone) or now
                ).isoformat(),
            }
        except _Reject as exc:
            prepared.rejected.append(RejectedRow(row.line, exc.reason, exc.message))
            continue
        account = decode_crm_account(orjson.dumps(doc))
        if isinstance(account, Rejection):
            prepared.rejected.append(RejectedRow(row.line, account.reason, account.message))
            continue
        prepared.records.append((account.account_id.encode(), encode(account)))
        prepared.accepted += 1
    return prepared


def prepare_events(
    data: bytes,
    *,
    mapping: ColumnMapping,
    source: str,
    default_date: date | None = None,
    progress: Progress | None = None,
) -> Prepared:
    """A CSV of offline contacts to Segment messages on `engagement.raw`: per row an
    `identify` (the person's traits) and a `track` (the source's event), keyed by userId.

    userId: the `user_id` column when mapped, else the email address (lowercased). Each
    message's messageId is a hash of the row's content, so importing the same rows again
    (the same file, or a corrected copy) gives the same ids and the pipeline skips them.
    """
    event = mapping.event or SOURCE_EVENTS.get(source)
    if event is None:
        raise CsvImportError(
            f"source {source!r} has no default event name ({', '.join(SOURCE_EVENTS)} do); "
            "set `event:` in the mapping file"
        )
    required = ["user_id" if "user_id" in mapping.explicit else "email"]
    if default_date is None:
        required.append("date")
    table, columns, prepared = _start(data, mapping, required)
    seen: set[str] = set()
    for row, cells in _each(table, prepared, columns, progress):
        try:
            messages = _row_messages(cells, mapping, source, event, default_date)
        except _Reject as exc:
            prepared.rejected.append(RejectedRow(row.line, exc.reason, exc.message))
            continue
        bad = next(
            (d for d in (decode_event(m) for _, m in messages) if isinstance(d, Rejection)), None
        )
        if bad is not None:
            prepared.rejected.append(RejectedRow(row.line, bad.reason, bad.message))
            continue
        track_id = orjson.loads(messages[-1][1])["messageId"]
        if track_id in seen:
            prepared.duplicates += 1
            continue
        seen.add(track_id)
        prepared.records.extend(messages)
        prepared.accepted += 1
    return prepared


_EMAIL = re.compile(r"[^@\s]+@[^@\s]+")


def _row_messages(
    cells: _Cells, mapping: ColumnMapping, source: str, event: str, default_date: date | None
) -> list[tuple[bytes, bytes]]:
    email = cells.get("email").lower()
    if email and (not _EMAIL.fullmatch(email) or normalize_domain(email) is None):
        raise _Reject("invalid_value", f"{cells.header('email')!r}: {email!r} is not an email")
    if "user_id" in mapping.explicit:
        user_id = cells.required("user_id")
    else:
        user_id = cells.required("email").lower()
    at = _when(cells, "date", default_date, mapping.date_format, mapping.zone)
    assert at is not None  # required, or a default date
    stamp = at.astimezone(UTC).isoformat().replace("+00:00", "Z")
    traits: dict[str, Any] = {
        "email": email or None,
        "name": cells.get("name") or None,
        "firstName": cells.get("first_name") or None,
        "lastName": cells.get("last_name") or None,
        "company": cells.get("company") or None,
        "title": cells.get("title") or None,
        "phone": cells.get("phone") or None,
        "employees": _whole(cells, "employees"),
        "industry": cells.get("industry") or None,
        "country": _country(cells),
    }
    traits = {k: v for k, v in traits.items() if v is not None}
    campaign = cells.get("campaign")
    properties: dict[str, Any] = {"source": source}
    if campaign:
        properties["name"] = campaign  # the show or seminar: what per-asset caps count
    identify = {
        "type": "identify",
        "messageId": _message_id(source, "identify", user_id, stamp, _canonical(traits)),
        "userId": user_id,
        "timestamp": stamp,
        "traits": traits,
    }
    track = {
        "type": "track",
        "messageId": _message_id(source, event, user_id, stamp, campaign),
        "userId": user_id,
        "timestamp": stamp,
        "event": event,
        "properties": properties,
    }
    key = user_id.encode()
    return [(key, orjson.dumps(identify)), (key, orjson.dumps(track))]


def _canonical(doc: Mapping[str, Any]) -> str:
    return orjson.dumps(doc, option=orjson.OPT_SORT_KEYS).decode()


def _message_id(*parts: str) -> str:
    digest = hashlib.blake2b("\x1f".join(parts).encode(), digest_size=12).hexdigest()
    return f"import-{digest}"


def _domains(cells: _Cells) -> list[str]:
    raw = cells.get("domains")
    out = []
    for item in re.split(r"[\s,;、]+", raw):
        if not item:
            continue
        domain = normalize_domain(item)
        if domain is None:
            header = cells.header("domains")
            raise _Reject("invalid_value", f"{header!r}: {item!r} is not a domain name")
        out.append(domain)
    return out


def _whole(cells: _Cells, name: str) -> int | None:
    raw = cells.get(name)
    if not raw:
        return None
    digits = raw.replace(",", "").removesuffix("名").removesuffix("人").strip()
    if not digits.isdigit():
        raise _Reject("invalid_value", f"{cells.header(name)!r}: {raw!r} is not a whole number")
    return int(digits)


def _country(cells: _Cells) -> str | None:
    raw = cells.get("country")
    if not raw:
        return None
    code = _COUNTRIES.get(raw.casefold())
    if code is None and re.fullmatch(r"[A-Za-z]{2}", raw):
        code = raw.upper()
    if code is None:
        header = cells.header("country")
        raise _Reject("invalid_value", f"{header!r}: {raw!r} is not a 2-letter country code")
    return code


_DATE_FORMATS = (
    "%Y-%m-%d",
    "%Y/%m/%d",
    "%Y.%m.%d",
    "%Y年%m月%d日",
    "%Y-%m-%d %H:%M",
    "%Y/%m/%d %H:%M",
    "%Y/%m/%d %H:%M:%S",
    "%Y-%m-%d %H:%M:%S",
    "%Y年%m月%d日 %H:%M",
    "%Y年%m月%d日 %H時%M分",
)


def _when(
    cells: _Cells, name: str, default: date | None, fmt: str | None, zone: timezone
) -> datetime | None:
    """The row's date (and `time`, for `date`), read in `zone` when it has no offset."""
    raw = cells.get(name)
    if not raw:
        if default is None:
            if name == "date":
                cells.required(name)  # raises: missing_column or empty_required
            return None
        return datetime.combine(default, time(), zone)
    if name == "date" and (clock := cells.get("time")):
        raw = f"{raw} {clock}"
    parsed = _parse_date(raw, fmt)
    if parsed is None:
        wanted = f"the format {fmt!r}" if fmt else "a year-first date like 2026-11-20"
        raise _Reject("invalid_value", f"{cells.header(name)!r}: {raw!r} is not {wanted}")
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=zone)


def _parse_date(raw: str, fmt: str | None) -> datetime | None:
    for candidate in (fmt,) if fmt else _DATE_FORMATS:
        try:
            return datetime.strptime(raw, candidate)
        except ValueError:
            continue
    if fmt is None:
        try:
            return datetime.fromisoformat(raw)
        except ValueError:
            return None
    return None
