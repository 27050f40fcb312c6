"""`leadstream send`: check a JSONL file line by line and produce the good lines."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from streams.codec import Rejection, decode_person_event

__all__ = ["BadLine", "Prepared", "prepare_lines"]


@dataclass(frozen=True, slots=True)
class BadLine:
    line: int
    reason: str
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.reason}: {self.message}"


@dataclass(slots=True)
class Prepared:
    records: list[tuple[bytes | None, bytes]] = field(default_factory=list)
    bad: list[BadLine] = field(default_factory=list)
    blank: int = 0


def prepare_lines(lines: Iterable[bytes], *, validate: bool = True) -> Prepared:
    """Each non-blank line becomes a (key, value) record keyed by person, or a BadLine.

    With `validate=False` every non-blank line is sent as it is (to exercise the DLQ).
    """
    out = Prepared()
    for number, raw in enumerate(lines, start=1):
        line = raw.rstrip(b"\r\n")
        if not line.strip():
            out.blank += 1
            continue
        decoded = decode_person_event(line)  # the path the worker takes
        if isinstance(decoded, Rejection):
            if validate:
                out.bad.append(BadLine(number, decoded.reason, decoded.message))
                continue
            out.records.append((None, line))
        else:
            out.records.append((decoded.pk.encode("utf-8"), line))
    return out
