"""`trusted`: models from values the core computed itself, in C when the core is compiled.

`schemas.decisions.trusted` is the reference, and what runs without a build (or under
LEADSTREAM_NATIVE=0). `leadstream core build` also compiles `streams/construct.c`, the same
function in C (~0.09 us a call instead of ~0.5 us; the core makes ~3 an event); it is used
only with the rest of that build (streams/native.py). Should it fail to import with it (a
pydantic whose models are laid out otherwise than the one it was built against), the
Python function runs, and the worker's start-up line says so and why (`core_line`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from schemas.decisions import trusted as python_trusted
from streams.native import Choice

__all__ = ["NOT_IN_C", "core_line", "python_trusted", "trusted"]

#: Why the C `trusted` did not import, when it did not (None when it runs, or no build is
#: in use: then there is none to import).
NOT_IN_C: str | None = None

if TYPE_CHECKING:
    trusted = python_trusted
else:
    try:
        from streams._construct import trusted
    except ImportError as exc:  # no build in use, or one that does not load
        trusted = python_trusted
        NOT_IN_C = f"{type(exc).__name__}: {exc}"


def core_line(core: Choice, not_in_c: str | None) -> str:
    """What the worker says of its core at start-up: the choice and why, and, when the
    compiled core runs without its C `trusted()`, that too (it is then ~10% slower)."""
    if core.compiled and not_in_c is not None:
        return f"{core}, but trusted() in Python: its C build did not load ({not_in_c})"
    return str(core)
