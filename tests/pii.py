"""The check that a person's email and name appear nowhere in text a worker exposes."""

from __future__ import annotations

import re

__all__ = ["assert_no_pii"]


def assert_no_pii(text: str, *, email: str, names: tuple[str, ...], where: str) -> None:
    """Fail, quoting the offending line, if `email` (any case, or its local part) or any of
    `names` (any case) is in `text`."""
    needles = [email.strip().lower(), email.strip().lower().split("@")[0], *map(str.lower, names)]
    for line in text.splitlines():
        low = line.lower()
        for needle in needles:
            if needle in low:
                shown = re.sub(re.escape(needle), "<PII>", line, flags=re.IGNORECASE)
                raise AssertionError(f"{where} names the person ({needle!r}): {shown[:300]}")
