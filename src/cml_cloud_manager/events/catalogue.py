"""Every event type and the model of its data, and the JSON Schemas of event data over HTTP:
`GET /api/events/schemas` lists the types, `GET /api/events/schemas/{type}` is one type's schema, the URI each
event names as its CloudEvents `dataschema`.

apps/ composes the catalogue (`apps.registry.events`): the models belong to the slices, which sit above this
package."""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from ..errors import NotFound
from ..web.deps import SettingsDep
from ..web.paging import Limit, Offset, Page, page_of
from .cloudevents import SCHEMAS_PATH, schemas_url
from .data import EventData

JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"

Catalogue = Mapping[str, type[EventData]]


def catalogue(models: Iterable[type[EventData]]) -> dict[str, type[EventData]]:
    """Event type -> the model of its data, sorted by type; a type two models claim is a bug."""
    found: dict[str, type[EventData]] = {}
    for model in models:
        if not model.types:
            raise ValueError(f"{model.__name__} names no event type")
        for type in model.types:
            if type in found:
                raise ValueError(f"{type} is claimed by {found[type].__name__} and {model.__name__}")
            found[type] = model
    return dict(sorted(found.items()))


def description(model: type[EventData]) -> str:
    return inspect.cleandoc(model.__doc__ or "")


class EventType(BaseModel):
    type: str
    description: str
    schema_url: str = Field(description="The JSON Schema of its data: the CloudEvents `dataschema` of its events")


class EventSchema(BaseModel):
    """A JSON Schema (draft 2020-12) of one event type's data, as pydantic writes it; its other keywords
    (`required`, `additionalProperties`, `$defs`) are there too."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    schema_: str = Field(alias="$schema")
    id: str = Field(alias="$id", description="Its own URL")
    title: str
    description: str
    type: str
    properties: dict[str, Any]


class UnknownEventType(NotFound):
    code = "unknown_event_type"


def schema(model: type[EventData], url: str) -> EventSchema:
    return EventSchema.model_validate({"$schema": JSON_SCHEMA_DIALECT, "$id": url, **model.model_json_schema()})


def router(guard: Sequence[Any], events: Catalogue) -> APIRouter:
    """The schema routes behind `guard`, for the types in `events`."""
    routes = APIRouter(prefix=SCHEMAS_PATH, tags=["events"], dependencies=list(guard))

    @routes.get("", summary="Every event type, what it means and where the JSON Schema of its data is")
    async def list_event_types(settings: SettingsDep, limit: Limit = 100, offset: Offset = 0) -> Page[EventType]:
        base = schemas_url(settings)
        items = [EventType(type=t, description=description(m), schema_url=f"{base}/{t}") for t, m in events.items()]
        return page_of(items, limit=limit, offset=offset)

    @routes.get("/{type}", summary="The JSON Schema of an event type's data (its events' `dataschema`)")
    async def event_schema(type: str, settings: SettingsDep) -> EventSchema:
        model = events.get(type)
        if model is None:
            raise UnknownEventType(
                f"No event type {type[:100]!r}; GET {SCHEMAS_PATH} lists them (e.g. worker.status.updated)"
            )
        return schema(model, f"{schemas_url(settings)}/{type}")

    return routes
