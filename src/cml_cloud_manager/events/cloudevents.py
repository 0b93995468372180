"""CloudEvents 1.0 envelopes for outbox rows (structured JSON mode; `sequence` is the sequence extension)."""

from __future__ import annotations

import json
from typing import Any

from pydantic import JsonValue
from typing_extensions import TypedDict

from ..config import Settings
from ..storage.models import EventRow

SCHEMAS_PATH = "/api/events/schemas"


class CloudEvent(TypedDict):
    """One event as the SSE stream and `GET /api/workers/{id}/events` carry it. A TypedDict, not a model: the
    relay builds one per event and encodes it at once, and validating it there would only cost CPU."""

    specversion: str
    id: str
    source: str
    type: str
    subject: str | None
    time: str
    datacontenttype: str
    dataschema: str
    sequence: int
    data: dict[str, JsonValue]


def schemas_url(settings: Settings) -> str:
    """Where the JSON Schemas of event data are published; `{this}/{type}` is one type's. Absolute, as the
    CloudEvents `dataschema` must be."""
    return settings.base_url() + SCHEMAS_PATH


def envelope(row: EventRow, schemas: str) -> CloudEvent:
    """`schemas`: what `schemas_url` says, worked out once rather than per event."""
    return {
        "specversion": "1.0",
        "id": row.id,
        "source": row.source,
        "type": row.type,
        "subject": row.subject,
        "time": row.time.isoformat(),
        "datacontenttype": "application/json",
        "dataschema": f"{schemas}/{row.type}",
        "sequence": row.seq,
        "data": row.data,
    }


def sse_frame(data: Any, *, event: str | None = None, seq: int | None = None) -> bytes:
    """One Server-Sent Events frame. JSON never contains a raw newline, so one `data:` line is enough. `data` is
    plain JSON already: anything else is a bug to fail on, not to send as Python's text for it."""
    head = ""
    if seq is not None:
        head += f"id: {seq}\n"
    if event is not None:
        head += f"event: {event}\n"
    return f"{head}data: {json.dumps(data, separators=(',', ':'))}\n\n".encode()
