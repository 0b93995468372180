"""FastAPI dependency aliases: the only place request handlers reach process-wide objects.

They are `async def` although they never await: FastAPI runs a plain `def` dependency in its thread pool,
a thread hop per dependency per request."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from ..config import Settings
from ..events.relay import Hub
from ..integrations import Integrations
from ..storage.db import Database


async def _db(request: Request) -> Database:
    db: Database = request.app.state.db
    return db


async def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def _integrations(request: Request) -> Integrations:
    integrations: Integrations = request.app.state.runtime.integrations
    return integrations


async def _hub(request: Request) -> Hub:
    hub: Hub = request.app.state.hub
    return hub


DatabaseDep = Annotated[Database, Depends(_db)]
SettingsDep = Annotated[Settings, Depends(_settings)]
HubDep = Annotated[Hub, Depends(_hub)]
IntegrationsDep = Annotated[Integrations, Depends(_integrations)]
