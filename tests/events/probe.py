"""The data of events a test appends itself, to exercise the outbox and the stream: no product code emits
them, so the catalogue does not know them and the e2e check of event data leaves `test.*` types alone."""

from __future__ import annotations

from typing import ClassVar

from cml_cloud_manager.events.data import EventData


class Probe(EventData):
    """A test's own event."""

    types: ClassVar[tuple[str, ...]] = ("test.event", "test.bulk", "test.recent")

    i: int = 0
    pad: str = ""
