"""The data of the license events: `license.registration.*` and `license.deregistration.*`, one model for each
step of either command."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from ..events.data import EventData

Action = Literal["registration", "deregistration"]


def _both(step: str) -> tuple[str, ...]:
    return (f"license.registration.{step}", f"license.deregistration.{step}")


class LicenseStarted(EventData):
    """A worker's CML is being asked to register (or deregister) its license."""

    types: ClassVar[tuple[str, ...]] = _both("started")

    name: str = Field(description="The worker's name")


class LicenseFailed(EventData):
    """CML refused, or did not answer, a license registration (or deregistration)."""

    types: ClassVar[tuple[str, ...]] = _both("failed")

    name: str = Field(description="The worker's name")
    error: str


class LicenseCompleted(EventData):
    """A worker's license registration (or deregistration) went through."""

    types: ClassVar[tuple[str, ...]] = _both("completed")

    name: str = Field(description="The worker's name")
    license_status: str = Field(description="What CML says now")
