"""The data of the lab events."""

from __future__ import annotations

from typing import ClassVar

from ..events.data import EventData
from .schemas import LabOut


class LabChanged(LabOut, EventData):
    """A lab appeared on a worker's CML, or its title, description, owner or size changed: the lab as
    `GET /api/workers/{id}/labs` shows it."""

    types: ClassVar[tuple[str, ...]] = ("lab.created", "lab.updated")


class LabStateChanged(EventData):
    """A lab's state changed (started, stopped, wiped), by an operation or as observed in CML."""

    types: ClassVar[tuple[str, ...]] = ("lab.state.changed",)

    lab_id: str
    cml_lab_id: str
    title: str
    previous: str
    state: str


class LabDeleted(EventData):
    """A lab is gone from its worker's CML."""

    types: ClassVar[tuple[str, ...]] = ("lab.deleted",)

    lab_id: str
    cml_lab_id: str
