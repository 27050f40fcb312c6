"""The PII check the worker tests use catches what it must (else they prove nothing)."""

from __future__ import annotations

import logging

import pytest

from streams.logs import JsonFormatter, RedactingFormatter
from streams.metrics import LabelValues
from tests.pii import assert_no_pii

EMAIL = "Fayette.Leeuwenhoek@Forget.example"
NAMES = ("Fayette", "Leeuwenhoek")


@pytest.mark.parametrize(
    "line",
    [
        f"lead identified as {EMAIL}",
        f"lead identified as {EMAIL.upper()}",
        "alert: Fayette Leeuwenhoek downloaded a whitepaper",
        'leadstream_funnel_entries_total{source="fayette.leeuwenhoek@forget.example"} 1.0',
    ],
)
def test_the_check_fails_on_a_line_naming_the_person(line: str) -> None:
    with pytest.raises(AssertionError, match="names the person"):
        assert_no_pii(f"ok\n{line}\nok", email=EMAIL, names=NAMES, where="log")


def test_the_check_passes_hashed_emails_and_lead_ids() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "to %s", (EMAIL,), None)
    for formatter in (JsonFormatter(), RedactingFormatter("%(message)s")):
        assert_no_pii(formatter.format(record), email=EMAIL, names=NAMES, where="log")
    assert_no_pii("lead ld_6f517cd7313964c3 scored 30", email=EMAIL, names=NAMES, where="log")


def test_a_utm_source_that_is_an_email_is_never_a_metric_label() -> None:
    sources = LabelValues()
    assert sources(EMAIL) == "other"
    assert sources("newsletter") == "newsletter"
