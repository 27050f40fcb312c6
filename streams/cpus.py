"""How many CPUs this process may use: the cores it may run on, capped by its cgroup's quota.

`os.cpu_count()` counts the host's cores; a container limited to one CPU by Kubernetes
(`resources.limits.cpu`) or `docker run --cpus` sees them all. The quota is what decides
whether a second process of the worker runs beside it or only takes turns with it
(`LEADSTREAM_INTAKE_PROCESS=auto`).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

__all__ = ["available_cpus", "cgroup_quota"]


def available_cpus(
    *,
    cores: Callable[[], int] | None = None,
    proc_cgroup: Path = Path("/proc/self/cgroup"),
    cgroup_root: Path = Path("/sys/fs/cgroup"),
) -> float:
    """The CPUs this process may use: its cores (affinity), capped by the cgroup's quota."""
    count = (cores or _cores)()
    quota = cgroup_quota(proc_cgroup=proc_cgroup, cgroup_root=cgroup_root)
    return float(count) if quota is None else min(float(count), quota)


def cgroup_quota(*, proc_cgroup: Path, cgroup_root: Path) -> float | None:
    """The CPU quota of this process's cgroup in CPUs (v2 `cpu.max`, v1 `cpu.cfs_quota_us`
    over `cpu.cfs_period_us`); None when there is none or it cannot be read."""
    try:
        lines = proc_cgroup.read_text().splitlines()
    except OSError:
        lines = []
    v2_paths: list[Path] = []
    v1_paths: list[Path] = []
    for line in lines:
        fields = line.split(":", 2)
        if len(fields) != 3:
            continue
        _, controllers, path = fields
        rel = path.lstrip("/")
        if controllers == "":
            v2_paths.append(cgroup_root / rel)
        elif "cpu" in controllers.split(","):
            v1_paths.append(cgroup_root / "cpu" / rel)
            v1_paths.append(cgroup_root / controllers / rel)
    # In a container with its own cgroup namespace the path reads "/" and the files are at
    # the root; without one they are under the path. A parent's quota caps its children:
    # the smallest found from the process's cgroup up to the root counts.
    found = [
        quota
        for leaf, read in [*[(p, _v2) for p in v2_paths], *[(p, _v1) for p in v1_paths]]
        for directory in _up_to(leaf, cgroup_root)
        if (quota := read(directory)) is not None
    ]
    found += [q for q in (_v2(cgroup_root), _v1(cgroup_root / "cpu")) if q is not None]
    return min(found, default=None)


def _up_to(leaf: Path, root: Path) -> list[Path]:
    """`leaf` and its parents as far as `root` (excluded: the root is read once)."""
    out = []
    while leaf != root and root in leaf.parents:
        out.append(leaf)
        leaf = leaf.parent
    return out


def _v2(directory: Path) -> float | None:
    try:
        quota, period = (directory / "cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError, ZeroDivisionError):
        return None


def _v1(directory: Path) -> float | None:
    try:
        quota = int((directory / "cpu.cfs_quota_us").read_text())
        period = int((directory / "cpu.cfs_period_us").read_text())
        return None if quota <= 0 else quota / period
    except (OSError, ValueError, ZeroDivisionError):
        return None


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        return os.cpu_count() or 1
