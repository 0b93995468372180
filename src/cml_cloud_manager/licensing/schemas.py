"""What the API is asked about licenses, and the payloads of the license commands. The token is never in a
payload: it is the command's secret (`jobs.commands`)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from ..jobs.context import Report
from ..workers.schemas import WorkerCommand


class Registration(BaseModel):
    model_config = ConfigDict(extra="forbid")

    token: SecretStr = Field(description="Smart Licensing registration token; never logged or echoed")
    reregister: bool = False


class RegisterLicense(WorkerCommand):
    command: ClassVar[str] = "license.register"

    reregister: bool = False


class DeregisterLicense(WorkerCommand):
    command: ClassVar[str] = "license.deregister"


class LicenseReport(Report):
    license_status: str = Field(description="What CML says after the command")
