"""`python -m loadtest.cpu_bench` runs the worker's stages on seeded traffic and prints them."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

import streams
from loadtest import cpu_bench


@pytest.fixture(autouse=True)
def _gc_as_it_was() -> Iterator[None]:
    """The bench tunes the collector as the worker does; the test process gets it back."""
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


def test_it_prints_the_cpu_per_event_of_each_stage(capsys: pytest.CaptureFixture[str]) -> None:
    assert cpu_bench.main(["--events", "3000", "--leads", "100", "--repeat", "1"]) == 0
    out = capsys.readouterr().out
    # The heading names the core measured, as `import streams` chose it.
    assert out.startswith(
        f"CPU per event (3,000 events, 100 leads; fastest of 1; core: {streams.CORE}), us:"
    )
    figures = {
        line.split()[0]: float(line.split()[1]) for line in out.splitlines()[1:] if line.strip()
    }
    assert list(figures) == ["intake", "forward", "score", "outputs", "state", "total"]
    assert all(us > 0 for us in figures.values())
    assert figures["total"] == pytest.approx(sum(figures.values()) - figures["total"], abs=0.05)
