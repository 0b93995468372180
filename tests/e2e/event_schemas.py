"""Every event a stack of the end-to-end and UI suites produced, checked against the JSON Schema of its type as
a running API publishes it (`GET /api/events/schemas/{type}`, where each event's `dataschema` points): an
unknown type, or data its schema refuses, fails the test that made it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
from jsonschema import Draft202012Validator
from sqlalchemy import select

from cml_cloud_manager.storage.db import Database
from cml_cloud_manager.storage.models import EventRow

from ..conftest import make_settings
from .processes import Proc, spawn, wait_ready

# Type -> validator of its data, from the first API that answered: every process of a test session runs the
# same code, so one fetch serves them all.
VALIDATORS: dict[str, Draft202012Validator] = {}


async def fetch(url: str, headers: dict[str, str] | None = None) -> bool:
    """Take every schema from the API at `url`, unless already taken; False when that API does not answer."""
    if VALIDATORS:
        return True
    schemas: dict[str, Any] = {}
    try:
        async with httpx.AsyncClient(base_url=url, headers=headers, timeout=10) as client:
            listed = await client.get("/api/events/schemas", params={"limit": 1000})
            if listed.status_code != 200:
                return False
            for item in listed.json()["items"]:
                # Absolute, as events' `dataschema` is: built from APP_HOST and APP_PORT, so this very API.
                schemas[item["type"]] = (await client.get(item["schema_url"])).raise_for_status().json()
    except httpx.TransportError:
        return False
    for type, schema in schemas.items():
        Draft202012Validator.check_schema(schema)
        VALIDATORS[type] = Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)
    return True


async def fetch_from_any(procs: list[Proc]) -> None:
    """From a running API of the test's stack that needs no login, if there is one."""
    for proc in procs:
        if VALIDATORS:
            return
        if proc.port is not None and proc.popen.poll() is None and proc.env.get("AUTH_MODE") == "none":
            await fetch(proc.url)


async def fetch_from_own_api(work_dir: Path) -> None:
    """When no API of the stack could be asked: one of our own, on an empty database of its own."""
    if VALIDATORS:
        return
    env = {"DATABASE_URL": f"sqlite+aiosqlite:///{work_dir}/schemas.db", "AUTH_MODE": "none", "REDIS_URL": ""}
    api = spawn("api", env, work_dir)
    try:
        await wait_ready(api)
        assert await fetch(api.url), f"the API serving event schemas did not answer:\n{api.output()[-3000:]}"
    finally:
        api.stop()


async def problems(database_url: str, work_dir: Path) -> list[str]:
    """What is wrong with the events stored in the database: types without a schema, data a schema refuses.
    `test.*` events are a test's own (tests/events/probe.py), appended to exercise the stream."""
    db = Database(make_settings(database_url))
    try:
        async with db.session(write=False) as session:
            query = select(EventRow).where(~EventRow.type.startswith("test.")).order_by(EventRow.seq)
            rows = (await session.scalars(query)).all()
    finally:
        await db.dispose()
    if rows:
        await fetch_from_own_api(work_dir)
    found = []
    for row in rows:
        validator = VALIDATORS.get(row.type)
        if validator is None:
            found.append(f"event {row.seq} {row.type}: no schema is published for this type")
            continue
        found += [f"event {row.seq} {row.type}: {e.json_path}: {e.message}" for e in validator.iter_errors(row.data)]
    return found


async def check(database_url: str, work_dir: Path) -> None:
    found = await problems(database_url, work_dir)
    assert not found, f"{len(found)} event(s) do not match their published schema:\n" + "\n".join(found[:50])
