"""`LEADSTREAM_INTAKE_PROCESS=auto` decides by the CPUs the worker may use: its cores, capped
by its cgroup's quota (a container limited to one CPU sees all the host's cores)."""

from __future__ import annotations

from pathlib import Path

import pytest

from streams.cli import _intake_mode
from streams.cpus import available_cpus
from streams.settings import Settings


def _cgroup(tmp_path: Path, proc: str, files: dict[str, str]) -> dict[str, Path]:
    root = tmp_path / "sys-fs-cgroup"
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    root.mkdir(exist_ok=True)
    (tmp_path / "cgroup").write_text(proc)
    return {"proc_cgroup": tmp_path / "cgroup", "cgroup_root": root}


def test_without_a_quota_the_cores_count(tmp_path: Path) -> None:
    paths = _cgroup(tmp_path, "0::/\n", {"cpu.max": "max 100000\n"})
    assert available_cpus(cores=lambda: 4, **paths) == 4.0


def test_a_cgroup_v2_quota_caps_the_cores(tmp_path: Path) -> None:
    # Kubernetes' limits.cpu: "1" on an 8-core node, the container's own cgroup namespace.
    paths = _cgroup(tmp_path, "0::/\n", {"cpu.max": "100000 100000\n"})
    assert available_cpus(cores=lambda: 8, **paths) == 1.0


def test_a_quota_on_the_process_cgroup_or_a_parent_counts_without_a_namespace(
    tmp_path: Path,
) -> None:
    paths = _cgroup(
        tmp_path,
        "0::/kubepods/pod1/worker\n",
        {
            "kubepods/pod1/cpu.max": "150000 100000\n",
            "kubepods/pod1/worker/cpu.max": "max 100000\n",
        },
    )
    assert available_cpus(cores=lambda: 8, **paths) == 1.5


def test_a_cgroup_v1_quota_caps_the_cores(tmp_path: Path) -> None:
    paths = _cgroup(
        tmp_path,
        "4:memory:/docker/abc\n3:cpu,cpuacct:/docker/abc\n",
        {
            "cpu,cpuacct/docker/abc/cpu.cfs_quota_us": "50000\n",
            "cpu,cpuacct/docker/abc/cpu.cfs_period_us": "100000\n",
            "cpu/cpu.cfs_quota_us": "-1\n",
            "cpu/cpu.cfs_period_us": "100000\n",
        },
    )
    assert available_cpus(cores=lambda: 2, **paths) == 0.5


def test_unreadable_or_odd_cgroup_files_leave_the_cores(tmp_path: Path) -> None:
    paths = _cgroup(tmp_path, "garbage\n0::/x\n", {"x/cpu.max": "lots\n"})
    assert available_cpus(cores=lambda: 2, **paths) == 2.0
    missing = {"proc_cgroup": tmp_path / "none", "cgroup_root": tmp_path / "none-either"}
    assert available_cpus(cores=lambda: 3, **missing) == 3.0


@pytest.mark.parametrize(
    ("setting", "cpus", "own", "line"),
    [
        (
            "auto",
            2.0,
            True,
            "in a process of its own (LEADSTREAM_INTAKE_PROCESS=auto: 2 CPUs available, "
            "a child from 2)",
        ),
        (
            "auto",
            1.5,
            False,
            "in the worker's process (LEADSTREAM_INTAKE_PROCESS=auto: 1.5 CPUs available, "
            "a child from 2)",
        ),
        (
            "auto",
            1.0,
            False,
            "in the worker's process (LEADSTREAM_INTAKE_PROCESS=auto: 1 CPU available, "
            "a child from 2)",
        ),
        ("true", 1.0, True, "in a process of its own (LEADSTREAM_INTAKE_PROCESS=true)"),
        ("false", 8.0, False, "in the worker's process (LEADSTREAM_INTAKE_PROCESS=false)"),
    ],
)
def test_the_worker_says_where_its_intake_runs_and_why(
    monkeypatch: pytest.MonkeyPatch, setting: str, cpus: float, own: bool, line: str
) -> None:
    monkeypatch.setenv("LEADSTREAM_INTAKE_PROCESS", setting)
    settings = Settings()
    assert settings.intake_in_own_process(cpus) is own
    assert _intake_mode(settings, cpus) == line


def test_the_default_is_auto_and_a_child_gets_it_back(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LEADSTREAM_INTAKE_PROCESS", raising=False)
    assert Settings().intake_process == "auto"
    monkeypatch.setenv(
        "LEADSTREAM_INTAKE_PROCESS", Settings().to_env()["LEADSTREAM_INTAKE_PROCESS"]
    )
    assert Settings().intake_process == "auto"


def test_a_setting_that_is_neither_a_boolean_nor_auto_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LEADSTREAM_INTAKE_PROCESS", "sometimes")
    with pytest.raises(ValueError, match=r"true, false or auto, not 'sometimes'"):
        Settings()
