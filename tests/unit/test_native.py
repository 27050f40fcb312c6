"""The compiled scoring core: which core an import loads, and that it decides as the source does."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

import streams
from streams.app import create_app
from streams.lead_model import load_model
from streams.native import (
    C_SOURCES,
    CORE_MODULES,
    DIR,
    ENV,
    _abi,
    _replace_dir,
    activate,
    choose,
    run_core,
)
from streams.settings import Settings

ROOT = Path(__file__).parents[2]
MODEL = ROOT / "tests" / "integration" / "lead_model.yaml"


def _package(tmp_path: Path, *, abi: str | None = None, built: bool = True) -> Path:
    """A package directory with core sources and, when `built`, a manifest matching them."""
    package = tmp_path / "streams"
    (package / DIR).mkdir(parents=True)
    sources = {}
    for name, file in [(m, f"{m}.py") for m in CORE_MODULES] + [(c, c) for c in C_SOURCES]:
        text = f"# {name}\n"
        (package / file).write_text(text)
        sources[name] = hashlib.sha256(text.encode()).hexdigest()
    if built:
        files = [
            "leads.cpython-311-x86_64-linux-gnu.so",
            "core__mypyc.cpython-311-x86_64-linux-gnu.so",
        ]
        for name in files:
            (package / DIR / name).write_bytes(b"\x7fELF")
        manifest = {
            "abi": abi or _abi(),
            "built": "2026-11-27T10:00:00Z",
            "sources": sources,
            "files": files,
        }
        (package / DIR / "manifest.json").write_text(json.dumps(manifest))
    return package


def test_a_build_made_from_the_sources_there_is_loaded(tmp_path: Path) -> None:
    choice = choose(_package(tmp_path), {})
    assert choice.compiled
    assert str(choice) == "compiled (mypyc, 2026-11-27T10:00:00Z)"


def test_without_a_build_the_python_core_is_loaded_and_the_reason_says_how_to_build(
    tmp_path: Path,
) -> None:
    choice = choose(_package(tmp_path, built=False), {})
    assert not choice.compiled
    assert str(choice) == "python (not built: leadstream core build)"


@pytest.mark.parametrize("source", ["scoring.py", "construct.c"])
def test_a_source_changed_since_the_build_makes_the_build_stale(
    tmp_path: Path, source: str
) -> None:
    package = _package(tmp_path)
    (package / source).write_text("/* edited */\n")
    choice = choose(package, {})
    assert not choice.compiled
    assert choice.reason == f"stale: {source} changed since the build"


def test_a_source_gone_since_the_build_makes_the_build_stale(tmp_path: Path) -> None:
    package = _package(tmp_path)
    (package / "construct.c").unlink()
    choice = choose(package, {})
    assert not choice.compiled
    assert choice.reason == "stale: construct.c, built from, is not there"


def test_a_build_for_another_interpreter_is_not_loaded(tmp_path: Path) -> None:
    choice = choose(_package(tmp_path, abi="cpython-312-x86_64-linux-gnu"), {})
    assert not choice.compiled
    assert choice.reason == f"built for cpython-312-x86_64-linux-gnu, this interpreter is {_abi()}"


def test_a_build_missing_one_of_its_files_is_not_loaded(tmp_path: Path) -> None:
    package = _package(tmp_path)
    (package / DIR / "core__mypyc.cpython-311-x86_64-linux-gnu.so").unlink()
    choice = choose(package, {})
    assert not choice.compiled
    assert choice.reason == "incomplete build: core__mypyc.cpython-311-x86_64-linux-gnu.so missing"


@pytest.mark.parametrize("value", ["0", "false", "off", "No"])
def test_the_setting_turns_the_compiled_core_off(tmp_path: Path, value: str) -> None:
    choice = choose(_package(tmp_path), {ENV: value})
    assert not choice.compiled
    assert choice.reason == f"{ENV}={value}"


@pytest.mark.parametrize("text", ["{", "[]", '{"abi": "x"}', "MANIFEST_WITHOUT_FILES"])
def test_an_unreadable_manifest_loads_the_python_core(tmp_path: Path, text: str) -> None:
    package = _package(tmp_path)
    manifest = package / DIR / "manifest.json"
    if text == "MANIFEST_WITHOUT_FILES":
        text = json.dumps(
            {k: v for k, v in json.loads(manifest.read_text()).items() if k != "files"}
        )
    manifest.write_text(text)
    choice = choose(package, {})
    assert not choice.compiled
    assert choice.reason.startswith(f"unreadable {package / DIR / 'manifest.json'}")


def test_activate_puts_the_build_first_on_the_package_path_once(tmp_path: Path) -> None:
    package = _package(tmp_path)
    path = [str(package)]
    assert activate(path, {}).compiled
    assert activate(path, {}).compiled
    assert path == [str(package / DIR), str(package)]


def test_activate_leaves_the_package_path_alone_for_the_python_core(tmp_path: Path) -> None:
    package = _package(tmp_path)
    path = [str(package)]
    assert not activate(path, {ENV: "0"}).compiled
    assert path == [str(package)]


def test_a_new_build_replaces_the_old_one_whole(tmp_path: Path) -> None:
    out = tmp_path / DIR
    out.mkdir()
    (out / "old.so").write_bytes(b"old")
    (tmp_path / f"{DIR}.new").mkdir()  # left by a build interrupted mid-swap
    (tmp_path / f"{DIR}.new" / "half.so").write_bytes(b"half")
    new = tmp_path / "staging"
    new.mkdir()
    (new / "new.so").write_bytes(b"new")
    (new / "manifest.json").write_text("{}")
    _replace_dir(new, out)
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "new.so"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [DIR, "staging"]


def test_core_status_says_which_core_an_import_loads(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(ENV, raising=False)
    assert run_core("status", package_dir=_package(tmp_path)) == 0
    assert capsys.readouterr().out == "core: compiled (mypyc, 2026-11-27T10:00:00Z)\n"


def _failing(exc: BaseException) -> Callable[[Path], Path]:
    def build(package_dir: Path) -> Path:
        raise exc

    return build


@pytest.mark.parametrize(
    ("exc", "says"),
    [
        (
            ModuleNotFoundError("No module named 'mypyc'"),
            "leadstream: the core build needs mypyc, which comes with mypy (No module named "
            "'mypyc'): pip install 'mypy>=1.11' (or the project's dev extra). Until it is "
            "built, the worker runs the Python core.\n",
        ),
        (
            SystemExit("error: command '/usr/bin/gcc' failed with exit code 1"),
            "leadstream: the core build failed: error: command '/usr/bin/gcc' failed with exit "
            "code 1 (the compiler's output is above). It needs a C compiler and Python's "
            "headers (Debian: apt-get install gcc python3-dev). Until it is built, the worker "
            "runs the Python core.\n",
        ),
    ],
)
def test_a_failed_core_build_says_why_and_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], exc: BaseException, says: str
) -> None:
    package = _package(tmp_path, built=False)
    assert run_core("build", package_dir=package, builder=_failing(exc)) == 1
    assert capsys.readouterr().err == says


def test_a_core_build_that_an_import_would_not_load_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    package = _package(tmp_path)
    (package / "leads.py").write_text("# edited while it was compiled\n")
    assert run_core("build", package_dir=package, builder=lambda p: p / DIR) == 1
    assert capsys.readouterr().out.endswith(
        "core: python (stale: leads.py changed since the build)\n"
    )


def test_the_worker_exports_which_core_it_runs(tmp_path: Path) -> None:
    registry = CollectorRegistry()
    create_app(
        settings=Settings(data_dir=tmp_path, partitions=2),
        model=load_model(MODEL),
        registry=registry,
        start_offset=False,
    )
    assert registry.get_sample_value("leadstream_core_info", {"core": streams.CORE.name}) == 1


# Seeded traffic through the worker's pure stages, as `cpu_bench` runs them; prints the core
# in use, whether its functions are compiled, and a digest of every forwarded record, output
# record and lead state.
_DIGEST = textwrap.dedent(
    """
    import hashlib
    from datetime import UTC, datetime
    import streams, streams.leads, streams.routing, streams.scoring
    from loadtest import cpu_bench
    from streams.codec import encode

    digest, decisions = hashlib.sha256(), []

    def observe(what, value):
        if what == "forward":
            digest.update(value.value or b"")
        elif what == "outputs":
            for out in value:
                digest.update(out.topic.encode() + (out.key or b"") + (out.value or b""))
        elif what == "scored":
            decisions.append(len(value.decisions))
            for key in sorted(value.leads):
                lead = value.leads[key]
                digest.update(key.encode() + (encode(lead) if lead is not None else b"-"))

    now = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)
    cpu_bench.run(events=12000, leads=300, seed=7, batch=1000, partitions=4, now=now,
                  bad_rate=0.01, observe=observe)
    native = all(type(m.__dict__[f]).__name__ == "builtin_function_or_method"
                 for m, f in ((streams.leads, "apply_event"), (streams.scoring, "score_lines"),
                              (streams.routing, "account_domain")))  # the core calls it
    print(streams.CORE.name, native, sum(decisions), digest.hexdigest())
    """
)


def _digest(env: dict[str, str]) -> tuple[str, bool, int, str]:
    done = subprocess.run(
        [sys.executable, "-c", _DIGEST],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    core, native, decisions, digest = done.stdout.split()
    return core, native == "True", int(decisions), digest


def test_the_compiled_core_decides_exactly_as_the_python_source(compiled_core: None) -> None:
    env = {k: v for k, v in os.environ.items() if k != ENV}
    compiled = _digest(env)
    python = _digest({**env, ENV: "0"})
    # The choice, and the code that ran: C functions, or Python ones.
    assert compiled[:2] == ("compiled", True)
    assert python[:2] == ("python", False)
    assert python[2] > 1000  # the traffic makes decisions: scores, alerts, hand-offs
    assert compiled[2:] == python[2:]
