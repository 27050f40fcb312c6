"""Which asyncio event loop the long-running commands (worker, ingest, notifier) run on.

uvloop (libuv, in C) schedules callbacks and moves socket bytes for less CPU than asyncio's
pure-Python loop; the worker is CPU-bound on one core, and its aiokafka clients and Faust
run thousands of callbacks a second. `auto` takes uvloop where it is installed (a
dependency on every platform but Windows, which uvloop does not support).
"""

from __future__ import annotations

import asyncio
import importlib.util
from collections.abc import Callable
from typing import Literal

__all__ = ["EventLoopChoice", "EventLoopUnavailable", "loop_name", "use_event_loop"]

EventLoopChoice = Literal["auto", "uvloop", "asyncio"]


class EventLoopUnavailable(RuntimeError):
    """The configured event loop cannot be used on this machine."""


def _installed(package: str) -> bool:
    return importlib.util.find_spec(package) is not None


def use_event_loop(
    choice: EventLoopChoice, *, installed: Callable[[str], bool] = _installed
) -> Literal["uvloop", "asyncio"]:
    """Make the loops this process creates from now on of `choice`; which one that is.

    Call it at the entry point, before the first loop exists: the policy is process-wide.
    """
    if choice == "asyncio" or (choice == "auto" and not installed("uvloop")):
        asyncio.set_event_loop_policy(None)  # asyncio's default
        return "asyncio"
    if not installed("uvloop"):
        raise EventLoopUnavailable(
            "LEADSTREAM_EVENT_LOOP=uvloop needs the uvloop package, which is not installed "
            "(pip install uvloop; it has no Windows build). LEADSTREAM_EVENT_LOOP=asyncio "
            "or auto needs nothing."
        )
    import uvloop

    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return "uvloop"


def loop_name(loop: asyncio.AbstractEventLoop) -> Literal["uvloop", "asyncio"]:
    """What a running command prints: the loop it really runs on."""
    return "uvloop" if type(loop).__module__.startswith("uvloop") else "asyncio"
