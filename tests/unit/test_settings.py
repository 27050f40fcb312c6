"""Settings: what a child process inherits, and the core's bounds built from them."""

from __future__ import annotations

import re
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


def _readme_settings_rows() -> list[tuple[list[str], list[str]]]:
    """The README's settings table: (variables, defaults) per row, a row's `A` / `_B` pairs
    spelled out (`LEADSTREAM_WEB_PORT` / `_WEB_HOST` names LEADSTREAM_WEB_HOST)."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    table = readme.split("### Settings", 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in table.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 3 or not cells[0].startswith("`LEADSTREAM_"):
            continue
        names = re.findall(r"`((?:LEADSTREAM)?_[A-Z0-9_]+)`", cells[0])
        first = names[0]
        full = [first]
        for short in names[1:]:
            if short.startswith("LEADSTREAM_"):
                full.append(short)
                continue
            # the longest start of the first name that the short one continues
            at = first.rfind("_" + short.lstrip("_").split("_")[0])
            full.append((first[:at] if at > 0 else "LEADSTREAM") + short)
        defaults = [d.strip() for d in cells[1].split(" / ")]
        rows.append((full, defaults if len(defaults) == len(full) else [cells[1]] * len(full)))
    return rows


def _shown(value: object) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def test_every_setting_is_in_the_readme_with_the_default_it_has() -> None:
    """What the README's settings table says a variable defaults to is what the worker
    uses; a default changed in one place and not the other fails here."""
    documented = {
        name: default
        for names, defaults in _readme_settings_rows()
        for name, default in zip(names, defaults, strict=True)
    }
    settings = Settings()
    missing = [
        f"LEADSTREAM_{field.upper()}"
        for field in Settings.model_fields
        if f"LEADSTREAM_{field.upper()}" not in documented
    ]
    assert not missing, f"not in the README's settings table: {missing}"
    wrong = {}
    for field in Settings.model_fields:
        default = documented[f"LEADSTREAM_{field.upper()}"]
        literal = re.match(r"`([^`]*)`", default)
        if literal is None or "<" in literal.group(1):
            continue  # empty, unset, bundled model, `http://127.0.0.1:<web port>`: derived
        if literal.group(1) != _shown(getattr(settings, field)):
            wrong[field] = (default, getattr(settings, field))
    assert not wrong
