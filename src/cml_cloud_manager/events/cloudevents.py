"""CloudEvents 1.0 envelopes for outbox rows (structured JSON mode; `sequence` is the sequence extension)."""

from __future__ import annotations

import json
from typing import Any

from ..storage.models import EventRow


def envelope(row: EventRow) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": row.id,
        "source": row.source,
        "type": row.type,
        "subject": row.subject,
        "time": row.time.isoformat(),
        "datacontenttype": "application/json",
        "sequence": row.seq,
        "data": row.data,
    }


def sse_frame(data: Any, *, event: str | None = None, seq: int | None = None) -> bytes:
    """One Server-Sent Events frame. JSON never contains a raw newline, so one `data:` line is enough."""
    head = ""
    if seq is not None:
        head += f"id: {seq}\n"
    if event is not None:
        head += f"event: {event}\n"
    return f"{head}data: {json.dumps(data, separators=(',', ':'), default=str)}\n\n".encode()
