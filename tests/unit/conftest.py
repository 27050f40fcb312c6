"""Shared fixtures of the unit tier: the bundled lead model and Segment-to-core event builders."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from schemas.internal import PersonEvent
from streams.codec import Rejection, decode_event
from streams.intake import normalize
from streams.lead_model import DEFAULT_MODEL_PATH, LeadModel, load_model

#: Event time of the first event in a test story; stories count days from here.
T0 = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
#: Processing time handed to the core; later than every event in the stories.
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def iso(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


@pytest.fixture
def t0() -> datetime:
    return T0


@pytest.fixture
def now() -> datetime:
    return NOW


@pytest.fixture(scope="session")
def model() -> LeadModel:
    """The lead model shipped in streams/demo/lead_model.yaml."""
    return load_model(DEFAULT_MODEL_PATH)


@pytest.fixture
def segment() -> Callable[..., PersonEvent]:
    """Build a PersonEvent the way the app does: Segment JSON bytes -> codec -> intake.

    `segment("page", "m1", day=0, properties={"path": "/pricing"})`; extra keyword
    arguments become top-level Segment fields. The default identity is anonymousId "anon-1".
    """

    def build(
        kind: str,
        message_id: str,
        *,
        day: float = 0,
        anonymous_id: str | None = "anon-1",
        **fields: Any,
    ) -> PersonEvent:
        doc: dict[str, Any] = {
            "type": kind,
            "messageId": message_id,
            "timestamp": iso(T0 + timedelta(days=day)),
            **fields,
        }
        if anonymous_id is not None:
            doc["anonymousId"] = anonymous_id
        decoded = decode_event(orjson.dumps(doc))
        assert not isinstance(decoded, Rejection), decoded
        return normalize(decoded)

    return build


@pytest.fixture
def compiled_core() -> None:
    """For the tests of the compiled core: skipped under an explicit LEADSTREAM_NATIVE=0
    (`make test NATIVE=0` tests the Python core alone), failed when no build is in use."""
    import os

    import streams
    from streams.native import ENV

    if os.environ.get(ENV, "").strip().lower() in {"0", "false", "no", "off"}:
        pytest.skip(f"{ENV}={os.environ[ENV]}: the suite runs the Python core alone")
    assert streams.CORE.compiled, (
        f"the compiled core is not in use: {streams.CORE.reason}. `make test` builds it; "
        f"`make test NATIVE=0` tests the Python core alone"
    )
