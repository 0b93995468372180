"""What events carry: the `data` of each event type is a model, so it is plain JSON with real types, and its JSON
Schema is published (`catalogue.py`) and linked from every event (the CloudEvents `dataschema`).

Each model lives beside the code that appends its events (`workers/events.py`, `jobs/events.py`, ...); apps/
lists them all in one catalogue (`apps.registry.events`)."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, SerializerFunctionWrapHandler, model_serializer


class EventData(BaseModel):
    """The data of the event types in `types`: one model per type, or per group of types whose data has the
    same shape (then `outbox.append` is told which type it is). The docstring describes the event."""

    model_config = ConfigDict(extra="forbid")

    types: ClassVar[tuple[str, ...]] = ()

    def event_type(self, type: str | None = None) -> str:
        """`type` if this model carries it; None: the one type it carries."""
        if type is None:
            if len(self.types) != 1:
                raise TypeError(f"{self.__class__.__name__} carries {self.types}: say which type this event is")
            return self.types[0]
        if type not in self.types:
            raise TypeError(f"{self.__class__.__name__} does not carry {type!r} events, only {self.types}")
        return type


def _without_defaults(schema: dict[str, Any]) -> None:
    # A field's default is never sent: an absent field did not change.
    for field in schema.get("properties", {}).values():
        field.pop("default", None)


class Changes(BaseModel):
    """Fields that changed, with their new values: only those given are in the data, so every field is
    optional and an absent one did not change."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=_without_defaults)

    @model_serializer(mode="wrap")
    def _only_given(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        return {name: value for name, value in handler(self).items() if name in self.model_fields_set}
