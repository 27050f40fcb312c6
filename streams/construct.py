"""`trusted`: models from values the core computed itself, in C when the core is compiled.

`schemas.decisions.trusted` is the reference, and what runs without a build (or under
LEADSTREAM_NATIVE=0). `leadstream core build` also compiles `streams/construct.c`, the same
function in C (~0.09 us a call instead of ~0.5 us; the core makes ~3 an event); it is used
only with the rest of that build (streams/native.py). Should it fail to import with it (a
pydantic whose models are laid out otherwise than the one it was built against), the
Python function runs, and the worker's start-up line says so and why (`core_line`).

`plain_attributes` (the same C build) makes our model classes read their fields as plain
classes do: pydantic's BaseModel defines `__getattr__`, which makes every attribute read of
a model cost ~3.5x a plain object's (-7% of the core's instructions per event).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from pydantic import BaseModel

from schemas.decisions import trusted as python_trusted
from streams.native import Choice

__all__ = [
    "NOT_IN_C",
    "core_line",
    "plain_attributes",
    "python_trusted",
    "reads_plainly",
    "trusted",
]

#: Why the C `trusted` did not import, when it did not (None when it runs, or no build is
#: in use: then there is none to import).
NOT_IN_C: str | None = None

_plain_getattr: Callable[[type[BaseModel]], bool] | None = None
_reads_plainly: Callable[[type[BaseModel]], bool] | None = None

if TYPE_CHECKING:
    trusted = python_trusted
else:
    try:
        from streams._construct import plain_getattr as _plain_getattr
        from streams._construct import reads_plainly as _reads_plainly
        from streams._construct import trusted
    except ImportError as exc:  # no build in use, or one that does not load
        trusted = python_trusted
        NOT_IN_C = f"{type(exc).__name__}: {exc}"

#: Where our models are defined: `plain_attributes` changes no other package's classes.
OUR_PACKAGES = ("schemas", "streams")


def plain_attributes(packages: tuple[str, ...] = OUR_PACKAGES) -> int:
    """Make the model classes defined so far in `packages` read their attributes as plain
    classes do, with the C build (without it, nothing changes); returns how many changed.

    Only classes for which that changes nothing but the speed: BaseModel's `__getattr__`
    serves private attributes and extra fields, and otherwise raises AttributeError, as the
    plain read does; a class with either, or with an `__getattr__` or `__getattribute__`
    of its own, keeps pydantic's. Each process calls it once its modules are imported (the
    worker, its intake process, `model replay`, `loadtest.cpu_bench`); a class defined
    later keeps pydantic's reads until the next call.
    """
    if _plain_getattr is None:
        return 0
    return sum(
        _plain_getattr(cls)
        for cls in _model_classes()
        if cls.__module__.partition(".")[0] in packages and _reads_only_fields(cls)
    )


def reads_plainly(cls: type[BaseModel]) -> bool:
    """Whether `cls` reads its attributes as a plain class does (`plain_attributes`)."""
    return _reads_plainly is not None and _reads_plainly(cls)


def _reads_only_fields(cls: type[BaseModel]) -> bool:
    return (
        not cls.__private_attributes__
        and cls.model_config.get("extra") != "allow"
        and cls.__getattr__ is BaseModel.__getattr__  # type: ignore[attr-defined]
        and cls.__getattribute__ is object.__getattribute__
    )


def _model_classes() -> Iterator[type[BaseModel]]:
    seen: set[type[BaseModel]] = set()
    todo = [BaseModel]
    while todo:
        for sub in todo.pop().__subclasses__():
            if sub not in seen:
                seen.add(sub)
                todo.append(sub)
                yield sub


def core_line(core: Choice, not_in_c: str | None) -> str:
    """What the worker says of its core at start-up: the choice and why, and, when the
    compiled core runs without its C build (`trusted()`, `plain_attributes`), that too (it
    is then ~15-20% slower)."""
    if core.compiled and not_in_c is not None:
        return (
            f"{core}, but trusted() and model attribute reads in Python: its C build did "
            f"not load ({not_in_c})"
        )
    return str(core)
