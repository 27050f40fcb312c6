"""Generate the JSON Schemas in schemas/json/ from the models (`python -m schemas.generate`)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import orjson
from pydantic import TypeAdapter

from schemas.crm import CrmAccount
from schemas.decisions import (
    AccountScored,
    DeadLetter,
    HandOff,
    LeadForgotten,
    LeadMerged,
    LeadScored,
    RepAlert,
)
from schemas.erasure import ErasureRequest
from schemas.events import EngagementEvent
from schemas.feedback import SalesFeedback
from schemas.model_record import PublishedModel
from schemas.notify import Delivered, UndeliveredAlert

__all__ = ["JSON_DIR", "render_all"]

JSON_DIR = Path(__file__).parent / "json"

# File name -> what it describes; the topic it is the value schema of is in the title.
_MODELS: dict[str, tuple[str, Any]] = {
    "engagement.raw.json": ("Segment message on engagement.raw", EngagementEvent),
    "engagement.dlq.json": ("Dead letter on engagement.dlq", DeadLetter),
    "leads.scored.json": ("Score change on leads.scored", LeadScored),
    "leads.routed.json": ("Hand-off on leads.routed", HandOff),
    "rep.alerts.json": ("Rep alert on rep.alerts", RepAlert),
    "rep.alerts.dlq.json": ("Undelivered alert on rep.alerts.dlq", UndeliveredAlert),
    "rep.alerts.delivered.json": ("Delivery made, on rep.alerts.delivered", Delivered),
    "leads.merged.json": ("Merged leads on leads.merged", LeadMerged),
    "leads.forgotten.json": ("Erased lead on leads.forgotten (compacted)", LeadForgotten),
    "leadstream.erasure.json": ("Erasure request on leadstream.erasure", ErasureRequest),
    "accounts.scored.json": ("Account roll-up on accounts.scored", AccountScored),
    "lead.model.json": ("Published lead model on lead.model", PublishedModel),
    "crm.accounts.json": ("CRM account on crm.accounts (null value: deleted)", CrmAccount),
    "sfa.feedback.json": (
        "Sales feedback on sfa.feedback (and model replay --feedback)",
        SalesFeedback,
    ),
}


def render_all() -> dict[str, bytes]:
    """File name -> the exact bytes that belong in schemas/json/."""
    out = {}
    for name, (title, model) in _MODELS.items():
        schema = TypeAdapter(model).json_schema(by_alias=True, mode="serialization")
        schema = {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema}
        schema["title"] = title
        out[name] = orjson.dumps(schema, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"
    return out


def main() -> int:
    JSON_DIR.mkdir(exist_ok=True)
    for name, body in render_all().items():
        (JSON_DIR / name).write_bytes(body)
        print(f"wrote schemas/json/{name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
