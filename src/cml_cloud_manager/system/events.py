"""The data of the system events."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from ..events.data import EventData
from ..jobs.scheduler import Override


class SettingsUpdated(EventData):
    """An admin changed runtime settings (`PUT /api/system/settings`); every process applies them."""

    types: ClassVar[tuple[str, ...]] = ("system.settings.updated",)

    changes: dict[str, Override | None] = Field(
        description="Setting -> its new value; null: the override was removed and the env setting applies again"
    )
    by: str = Field(description="Who changed them")
