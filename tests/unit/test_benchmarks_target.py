"""`make benchmarks` runs the commands README's Performance section gives, in its order."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("\n## Performance\n", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```sh\n(.*?)```", section, re.S)
    assert block, "README's Performance section has no ```sh block"
    return [" ".join(line.split("#")[0].split()) for line in block[1].splitlines() if line.strip()]


def test_make_benchmarks_runs_every_command_of_the_performance_section() -> None:
    make = shutil.which("make")
    if make is None:  # the Makefile is how CI runs the suite: make is there
        pytest.fail("make is not installed")
    dry = subprocess.run(
        [make, "-n", "benchmarks", "STAMP=", "BIN=.venv/bin"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    ran = [" ".join(line.split()) for line in dry.splitlines() if "-m loadtest" in line]
    assert _readme_commands() == ran
