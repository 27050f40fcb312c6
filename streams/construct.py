"""`trusted`: models from values the core computed itself, in C when the core is compiled.

`schemas.decisions.trusted` is the reference, and what runs without a build (or under
LEADSTREAM_NATIVE=0). `leadstream core build` also compiles `streams/construct.c`, the same
function in C (~0.09 us a call instead of ~0.5 us; the core makes ~3 an event); it is used
only with the rest of that build (streams/native.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from schemas.decisions import trusted as python_trusted

__all__ = ["python_trusted", "trusted"]

if TYPE_CHECKING:
    trusted = python_trusted
else:
    try:
        from streams._construct import trusted
    except ImportError:  # no build in use: the Python core, and the Python reference
        trusted = python_trusted
