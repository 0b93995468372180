"""Every event type has a model, the catalogue knows them all, and each schema is published where the events'
`dataschema` points."""

from __future__ import annotations

import importlib
import pkgutil

import httpx
import pytest
from jsonschema import Draft202012Validator

import cml_cloud_manager
from cml_cloud_manager.apps.registry import events
from cml_cloud_manager.config import Settings
from cml_cloud_manager.events import outbox
from cml_cloud_manager.events.cloudevents import schemas_url
from cml_cloud_manager.events.data import EventData
from cml_cloud_manager.labs.events import LabChanged
from cml_cloud_manager.storage.db import Database
from cml_cloud_manager.workers import service as workers
from cml_cloud_manager.workers.events import InstanceChanges, WorkerUpdated

from ..conftest import make_settings
from ..sse import open_stream

CATALOGUE = events()


def product_models() -> set[type[EventData]]:
    """Every EventData model in the package, whatever imports it: the types the code can append."""
    for module in pkgutil.walk_packages(cml_cloud_manager.__path__, "cml_cloud_manager."):
        if not module.name.endswith("__main__"):
            importlib.import_module(module.name)
    found: set[type[EventData]] = set()
    todo = [EventData]
    while todo:
        for model in todo.pop().__subclasses__():
            todo.append(model)
            if model.__module__.startswith("cml_cloud_manager."):
                found.add(model)
    return found


def test_every_event_type_the_code_can_append_is_in_the_catalogue() -> None:
    models = product_models()
    assert len(models) >= 25
    for model in models:
        if not model.types:  # a base of models (WorkerChanged): only its subclasses are appended
            assert model.__subclasses__(), f"{model.__name__} names no event type and nothing extends it"
        for type in model.types:
            assert CATALOGUE.get(type) is model, f"{type} ({model.__name__}) is not in apps.registry.events()"
    assert set(CATALOGUE.values()) <= models


@pytest.mark.parametrize("type", sorted(CATALOGUE))
def test_each_type_has_a_description_and_a_closed_valid_schema(type: str) -> None:
    model = CATALOGUE[type]
    schema = model.model_json_schema()
    Draft202012Validator.check_schema(schema)
    assert schema["additionalProperties"] is False, "a field the model does not declare must be refused"
    assert schema.get("description"), f"{model.__name__} needs a docstring: it is the type's description"


async def test_append_names_the_type_when_a_model_carries_several(db: Database) -> None:
    lab = LabChanged.model_validate(
        {
            "id": "l1",
            "worker_id": "w1",
            "cml_lab_id": "c1",
            "title": "t",
            "description": "",
            "state": "STOPPED",
            "owner": "admin",
            "node_count": 0,
            "link_count": 0,
            "cml_created_at": None,
            "cml_modified_at": None,
            "updated_at": "2026-12-06T00:00:00Z",
            "history": [],
        }
    )
    async with db.session() as session:
        assert (await outbox.append(session, lab, type="lab.updated", worker_id="w1")).type == "lab.updated"
        with pytest.raises(TypeError, match="say which type"):
            await outbox.append(session, lab, worker_id="w1")
        with pytest.raises(TypeError, match=r"does not carry 'lab\.deleted'"):
            await outbox.append(session, lab, type="lab.deleted", worker_id="w1")


def test_changes_carry_only_what_changed() -> None:
    data = WorkerUpdated(name="w1", changes=InstanceChanges(public_ip=None, tags={"a": "b"})).model_dump(mode="json")
    assert data == {"name": "w1", "changes": {"public_ip": None, "tags": {"a": "b"}}}
    with pytest.raises(ValueError, match="extra"):
        InstanceChanges.model_validate({"cpu_percent": 3.0})


def test_dataschema_is_an_absolute_url_of_the_api() -> None:
    assert schemas_url(make_settings("sqlite+aiosqlite://", public_url="https://cml.example.com/")) == (
        "https://cml.example.com/api/events/schemas"
    )
    assert (
        schemas_url(Settings(_env_file=None, app_host="::1", app_port=9000)) == "http://[::1]:9000/api/events/schemas"
    )
    assert schemas_url(Settings(_env_file=None)) == "http://127.0.0.1:8000/api/events/schemas"


async def test_each_event_points_at_its_schema_and_its_data_matches(api: httpx.AsyncClient, db: Database) -> None:
    listed = (await api.get("/api/events/schemas", params={"limit": 1000})).json()
    assert listed["total"] == len(CATALOGUE) == len(listed["items"])
    base = "http://127.0.0.1:8000/api/events/schemas"
    assert {(t["type"], t["schema_url"]) for t in listed["items"]} == {(t, f"{base}/{t}") for t in CATALOGUE}
    assert all(t["description"] for t in listed["items"])

    async with open_stream(str(api.base_url)) as stream:
        await stream.next()
        await stream.next()  # the snapshot
        async with db.session() as session:
            row = workers.create_row(name="w1", aws_region="us-east-1", aws_instance_id="i-0abc", status="running")
            await workers.add(session, row, reason="test")
            await workers.touch(session, row, WorkerUpdated.of(row, tags={"team": "net"}))
        live = [(await stream.next()).data for _ in range(2)]
    stored = (await api.get(f"/api/workers/{row.id}/events")).json()["items"]
    assert [e["type"] for e in live] == ["worker.created", "worker.updated"]
    assert stored == live[::-1], "the events page and the stream carry the same envelopes"
    for event in live:
        assert event["dataschema"] == f"{base}/{event['type']}"
        answer = await api.get(event["dataschema"].removeprefix("http://127.0.0.1:8000"))
        schema = answer.json()
        assert answer.status_code == 200 and schema["$id"] == event["dataschema"]
        assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
        Draft202012Validator(schema).validate(event["data"])
    assert live[1]["data"]["changes"] == {"tags": {"team": "net"}}


async def test_an_unknown_event_type_is_a_404_saying_where_the_types_are(api: httpx.AsyncClient) -> None:
    answer = await api.get("/api/events/schemas/worker.exploded")
    assert answer.status_code == 404
    problem = answer.json()
    assert problem["type"] == "urn:cml-cloud-manager:unknown_event_type"
    assert problem["detail"].startswith("No event type 'worker.exploded'; GET /api/events/schemas lists them")
