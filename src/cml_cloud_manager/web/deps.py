"""FastAPI dependency aliases for the process-wide objects every router may need: the database and the settings.
The objects of a package above this one come with that package (`HubDep` in events, `IntegrationsDep` in jobs).

They are `async def` although they never await: FastAPI runs a plain `def` dependency in its thread pool,
a thread hop per dependency per request."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from ..config import Settings
from ..storage.db import Database


async def _db(request: Request) -> Database:
    db: Database = request.app.state.db
    return db


async def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


DatabaseDep = Annotated[Database, Depends(_db)]
SettingsDep = Annotated[Settings, Depends(_settings)]
