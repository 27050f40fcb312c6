"""Settings: what a child process inherits, and the core's bounds built from them."""

from __future__ import annotations

from pathlib import Path

import pytest

from streams.normalize import DEFAULT_EMAIL_RULES
from streams.settings import Settings


def test_a_child_process_gets_the_same_settings_back(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = Settings(partitions=3, phone_default_region="JP", fiscal_year_start_month=4)
    env = settings.to_env()
    for name, value in env.items():
        monkeypatch.setenv(name, value)

    assert Settings() == settings


def test_unset_optional_settings_are_left_out_not_written_as_none() -> None:
    env = Settings().to_env()
    assert "LEADSTREAM_PHONE_DEFAULT_REGION" not in env
    assert "LEADSTREAM_EMAIL_RULES_FILE" not in env
    assert "None" not in env.values()


def test_core_limits_carry_the_normalization_settings(tmp_path: Path) -> None:
    rules = tmp_path / "email.yaml"
    rules.write_text("providers:\n  - {domains: [corp-mail.example], ignores_plus: true}\n")

    limits = Settings(
        phone_default_region="DE", fiscal_year_start_month=4, email_rules_file=rules, history_kept=7
    ).core_limits()

    assert (limits.phone_region, limits.fiscal_year_start_month, limits.history_kept) == (
        "DE",
        4,
        7,
    )
    assert limits.email_rules.provider("corp-mail.example") is not None
    assert Settings().core_limits().email_rules == DEFAULT_EMAIL_RULES


def test_a_bad_email_rules_file_names_the_file(tmp_path: Path) -> None:
    rules = tmp_path / "email.yaml"
    rules.write_text("providers: [{domains: []}]\n")
    with pytest.raises(ValueError, match=r"email\.yaml: not valid email rules"):
        Settings(email_rules_file=rules).core_limits()


@pytest.mark.parametrize("size", ["1000", "2000000"])
def test_a_producer_batch_size_outside_what_kafka_takes_is_refused(
    monkeypatch: pytest.MonkeyPatch, size: str
) -> None:
    monkeypatch.setenv("LEADSTREAM_PRODUCER_BATCH_BYTES", size)
    with pytest.raises(ValueError, match="producer_batch_bytes"):
        Settings()
