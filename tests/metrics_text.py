"""Reading a value off Prometheus text (a worker's /metrics, a registry's exposition), for
the tests of every tier."""

from __future__ import annotations

import re

__all__ = ["metric"]


def metric(text: str, name: str, **labels: str) -> float:
    """The value of `name{labels}` in a worker's /metrics text; fails if it is not there."""
    label = ",".join(f'{k}="{v}"' for k, v in labels.items())
    pattern = rf"^{re.escape(name)}{re.escape('{' + label + '}') if label else ''} (\S+)$"
    match = re.search(pattern, text, re.MULTILINE)
    assert match, f"{name}{{{label}}} not in /metrics"
    return float(match.group(1))
