"""LEADSTREAM_EVENT_LOOP: which loop the long-running commands get, and the error when the
chosen one is missing."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from streams.event_loop import EventLoopUnavailable, loop_name, use_event_loop
from streams.settings import Settings


@pytest.fixture(autouse=True)
def _restore_policy() -> Iterator[None]:
    before = asyncio.get_event_loop_policy()
    yield
    asyncio.set_event_loop_policy(before)


def _new_loop_name() -> str:
    loop = asyncio.new_event_loop()  # what asyncio.run and Faust's worker create
    try:
        return loop_name(loop)
    finally:
        loop.close()


def test_auto_runs_on_uvloop_where_it_is_installed() -> None:
    assert use_event_loop("auto") == "uvloop"
    assert _new_loop_name() == "uvloop"


def test_auto_falls_back_to_asyncio_without_uvloop() -> None:
    assert use_event_loop("auto", installed=lambda _: False) == "asyncio"
    assert _new_loop_name() == "asyncio"


def test_asyncio_is_chosen_even_where_uvloop_is_installed() -> None:
    use_event_loop("uvloop")
    assert use_event_loop("asyncio") == "asyncio"
    assert _new_loop_name() == "asyncio"


def test_uvloop_asked_for_but_missing_says_what_to_do() -> None:
    with pytest.raises(EventLoopUnavailable) as err:
        use_event_loop("uvloop", installed=lambda _: False)
    assert "LEADSTREAM_EVENT_LOOP=uvloop needs the uvloop package" in str(err.value)
    assert "LEADSTREAM_EVENT_LOOP=asyncio" in str(err.value)


def test_the_setting_defaults_to_auto_and_rejects_other_loops(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert Settings().event_loop == "auto"
    monkeypatch.setenv("LEADSTREAM_EVENT_LOOP", "trio")
    with pytest.raises(ValueError, match="event_loop"):
        Settings()
