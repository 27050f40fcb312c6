"""Demo replay times: history keeps its age, the live part happens as it is sent."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import pairwise

import pytest

from streams.demo_run import replay_time

NEWEST = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)
NOW = datetime(2027, 3, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("age", "expected"),
    [
        pytest.param(timedelta(0), NOW, id="newest"),
        pytest.param(timedelta(minutes=59, seconds=59), NOW, id="just-live"),
        pytest.param(timedelta(hours=1), NOW - timedelta(hours=1), id="one-hour-is-history"),
        pytest.param(timedelta(days=3, hours=2), NOW - timedelta(days=3, hours=2), id="days-old"),
        pytest.param(timedelta(days=-1), NOW, id="newer-than-newest"),
    ],
)
def test_replay_time(age: timedelta, expected: datetime) -> None:
    assert replay_time(NEWEST - age, newest=NEWEST, now=NOW) == expected


def test_replayed_history_keeps_its_spacing() -> None:
    # Three pricing views two days apart must still read as "3 within 7 days".
    views = [NEWEST - timedelta(days=d) for d in (6, 4, 2)]

    replayed = [replay_time(v, newest=NEWEST, now=NOW) for v in views]

    assert [b - a for a, b in pairwise(replayed)] == [timedelta(days=2)] * 2
    assert replayed[-1] == NOW - timedelta(days=2)
    assert all(r.tzinfo is not None for r in replayed)
