"""The scoring core compiled to C with mypyc, and the choice at import of which core runs.

The per-event core (`streams.leads`, `streams.scoring`) is plain, fully typed Python. mypyc
compiles those modules, unchanged, to C extensions that run the same code faster (the
worker spends ~10-15% less CPU per event). The source stays the reference: the compiled
modules are built next to the package (`streams/_native/`), never instead of it, and are
used only while they were built from exactly the source files present now.

`streams/__init__.py` calls `activate` before any core module is imported (which code to
load cannot wait for the settings object). The choice, and why, is `streams.CORE`; the
worker logs it at start-up and exports it as `leadstream_core_info`.

    leadstream core build    # compile (needs a C compiler and Python's headers; ~30 s)
    leadstream core status   # which core an import loads, and why

`LEADSTREAM_NATIVE=0` loads the pure-Python core even when a build is there.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import sysconfig
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "CORE_MODULES",
    "C_SOURCES",
    "DIR",
    "ENV",
    "Choice",
    "activate",
    "build",
    "choose",
    "run_core",
]

#: The modules compiled: the pure per-event core, nothing that does I/O.
CORE_MODULES = ("leads", "scoring")
#: Hand-written C built with them, as `streams.<name without .c, with a leading _>`:
#: `construct.c` is `schemas.decisions.trusted` in C (streams/construct.py).
C_SOURCES = ("construct.c",)
#: Where the build goes, inside the package (so an installed package carries it).
DIR = "_native"
ENV = "LEADSTREAM_NATIVE"
_MANIFEST = "manifest.json"
_OFF = frozenset({"0", "false", "no", "off"})


@dataclass(frozen=True)
class Choice:
    """Which core an import loads: `compiled` or not, and why, in words."""

    compiled: bool
    reason: str

    @property
    def name(self) -> str:
        return "compiled" if self.compiled else "python"

    def __str__(self) -> str:
        return f"{self.name} ({self.reason})"


def _abi() -> str:
    """The interpreter ABI an extension is built for (`cpython-311-x86_64-linux-gnu`)."""
    return str(sysconfig.get_config_var("EXT_SUFFIX") or "").strip(".").removesuffix(".so")


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _sources() -> list[tuple[str, str]]:
    """What a build is made from, as (its name in the manifest, its file)."""
    return [(m, f"{m}.py") for m in CORE_MODULES] + [(c, c) for c in C_SOURCES]


def choose(package_dir: Path, environ: Mapping[str, str]) -> Choice:
    """The core to load for the package at `package_dir`: the compiled one when it was built
    for this interpreter from the very source files there, else the Python one."""
    setting = environ.get(ENV, "").strip().lower()
    if setting in _OFF:
        return Choice(False, f"{ENV}={environ[ENV]}")
    manifest_path = package_dir / DIR / _MANIFEST
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return Choice(False, "not built: leadstream core build")
    except (OSError, ValueError) as exc:
        return Choice(False, f"unreadable {manifest_path}: {exc}")
    if not isinstance(manifest, dict) or not isinstance(manifest.get("sources"), dict):
        return Choice(False, f"unreadable {manifest_path}: not a build manifest")
    if manifest.get("abi") != _abi():
        return Choice(False, f"built for {manifest.get('abi')}, this interpreter is {_abi()}")
    sources: dict[str, object] = manifest["sources"]
    for name, file in _sources():
        source = package_dir / file
        if not source.is_file():
            return Choice(False, f"stale: {file}, built from, is not there")
        if sources.get(name) != _digest(source):
            return Choice(False, f"stale: {file} changed since the build")
    files = manifest.get("files")
    if not isinstance(files, list) or not files:
        return Choice(False, f"unreadable {manifest_path}: no files listed")
    missing = [str(f) for f in files if not (package_dir / DIR / str(f)).is_file()]
    if missing:
        return Choice(False, f"incomplete build: {', '.join(missing)} missing")
    return Choice(True, f"mypyc, {manifest.get('built', 'built')}")


def activate(package_path: list[str], environ: Mapping[str, str] | None = None) -> Choice:
    """Put the compiled core ahead of the source on the package's path when `choose` says
    so. Called by `streams/__init__.py` before any core module is imported."""
    package_dir = Path(package_path[-1])
    choice = choose(package_dir, os.environ if environ is None else environ)
    native = str(package_dir / DIR)
    if choice.compiled and native not in package_path:
        package_path.insert(0, native)
    return choice


#: mypy's settings for the build: the project's own checks are `make typecheck`'s job.
_MYPY_INI = """\
[mypy]
plugins = pydantic.mypy
ignore_missing_imports = True
"""


def build(package_dir: Path, *, out: Path | None = None) -> Path:
    """Compile the core modules of the package at `package_dir` into `out` (default: its
    `_native/`), replacing what was there. Raises on any compile error; the previous build
    is kept until the new one is complete.

    It compiles a copy of the sources (the package, and `schemas`, whose types the core
    uses), in a directory of its own: mypy must not take an installed package's
    site-packages, or a checkout's settings, for the program to compile."""
    from mypyc.build import mypycify  # a dev dependency: only the build needs it
    from setuptools import Distribution, Extension

    import schemas

    out = out or package_dir / DIR
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="leadstream-native-") as tmp:
        work = Path(tmp)
        src = work / "src"
        skip = shutil.ignore_patterns("__pycache__", DIR, "*.so")
        for package in (package_dir, Path(schemas.__file__).parent):
            shutil.copytree(package, src / package.name, ignore=skip)
        (src / "mypy.ini").write_text(_MYPY_INI, encoding="utf-8")
        compiled = src / package_dir.name
        sources = {name: _digest(compiled / file) for name, file in _sources()}
        cwd = Path.cwd()
        os.chdir(src)  # mypyc names the modules, and reads mypy.ini, from here
        try:
            extensions = mypycify(
                [f"{package_dir.name}/{m}.py" for m in CORE_MODULES],
                group_name=f"{package_dir.name}.core",
                target_dir=str(work / "c"),
            ) + [
                Extension(
                    f"{package_dir.name}._{c.removesuffix('.c')}", [f"{package_dir.name}/{c}"]
                )
                for c in C_SOURCES
            ]
            # A bare Distribution: setup() would also look for a project's metadata.
            dist = Distribution({"name": "leadstream-core", "ext_modules": extensions})
            dist.verbose = False  # not every compiler command line
            command = dist.get_command_obj("build_ext")
            command.build_lib = str(work / "lib")
            command.build_temp = str(work / "tmp")
            dist.run_command("build_ext")
        finally:
            os.chdir(cwd)
        built = sorted((work / "lib" / package_dir.name).glob("*.so"))
        if not built:
            raise RuntimeError(f"mypyc produced no extension modules in {work / 'lib'}")
        staging = work / "staging"
        staging.mkdir()
        for so in built:
            shutil.copy2(so, staging / so.name)
        manifest = {
            "abi": _abi(),
            "built": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "sources": sources,
            "files": [so.name for so in built],
            "seconds": round(time.monotonic() - started, 1),
        }
        (staging / _MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        _replace_dir(staging, out)
    return out


def _replace_dir(new: Path, out: Path) -> None:
    """`out` becomes a copy of `new`; swapped in by renames, so that a process starting
    meanwhile sees the old build or the new one, never a mix. (Processes running keep the
    modules they loaded: a removed file stays readable to them.)"""
    incoming, outgoing = out.with_name(out.name + ".new"), out.with_name(out.name + ".old")
    for leftover in (incoming, outgoing):
        if leftover.exists():
            shutil.rmtree(leftover)
    shutil.copytree(new, incoming)
    if out.exists():
        out.rename(outgoing)
    incoming.rename(out)
    if outgoing.exists():
        shutil.rmtree(outgoing)


def run_core(
    command: str,
    *,
    package_dir: Path | None = None,
    builder: Callable[[Path], Path] = build,
) -> int:
    """`leadstream core build|status`. `build` exits 0 when the build is then the core an
    import loads; `status` always 0. `builder` replaces `build` in tests."""
    package_dir = package_dir or Path(__file__).resolve().parent
    if command == "status":
        print(f"core: {choose(package_dir, os.environ)}")
        return 0
    print(
        f"compiling {', '.join(CORE_MODULES)} with mypyc, and {', '.join(C_SOURCES)} ...",
        flush=True,
    )
    try:
        out = builder(package_dir)
    except ImportError as exc:
        print(
            f"leadstream: the core build needs mypyc, which comes with mypy ({exc}): "
            "pip install 'mypy>=1.11' (or the project's dev extra). Until it is built, the "
            "worker runs the Python core.",
            file=sys.stderr,
        )
        return 1
    except (Exception, SystemExit) as exc:  # setuptools exits on a compiler error
        print(
            f"leadstream: the core build failed: {exc or type(exc).__name__} (the compiler's "
            "output is above). It needs a C compiler and Python's headers (Debian: apt-get "
            "install gcc python3-dev). Until it is built, the worker runs the Python core.",
            file=sys.stderr,
        )
        return 1
    choice = choose(package_dir, {})
    print(f"built {out}; core: {choice}")
    return 0 if choice.compiled else 1
