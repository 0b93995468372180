"""The OpenAPI document describes every response body: each operation's success answers have a schema with
properties (or are a 204, a redirect, a YAML document or an event stream). Clients generated from it get types,
and the fuzz run (tests/e2e/test_fuzz.py) checks every answer against it."""

from __future__ import annotations

from typing import Any

from cml_cloud_manager.apps.api import create_app
from cml_cloud_manager.config import ProcessRole, Settings


def _document() -> dict[str, Any]:
    return create_app(ProcessRole.API, Settings(_env_file=None)).openapi()


def described(schema: dict[str, Any] | None, components: dict[str, Any]) -> bool:
    """A schema that says what is in the body: a model with properties (a free-form object says nothing), a
    list or page of them, a document as text."""
    if not schema:
        return False
    if "$ref" in schema:
        return described(components[schema["$ref"].split("/")[-1]], components)
    if "anyOf" in schema:
        return all(described(option, components) for option in schema["anyOf"])
    if schema.get("type") == "object":
        return bool(schema.get("properties"))
    if schema.get("type") == "array":
        return described(schema.get("items"), components)
    return schema.get("type") == "string"


def undescribed(document: dict[str, Any]) -> list[str]:
    components = document.get("components", {}).get("schemas", {})
    found = []
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            for status, response in operation["responses"].items():
                if status[0] not in "23" or status == "204" or status[0] == "3":
                    continue
                content = response.get("content", {})
                if "text/event-stream" in content:
                    continue
                if not any(described(media.get("schema"), components) for media in content.values()):
                    found.append(f"{method.upper()} {path} {status}")
    return found


def test_every_success_answer_has_a_described_body() -> None:
    document = _document()
    assert sum(len(operations) for operations in document["paths"].values()) >= 46
    assert undescribed(document) == [], "declare a response model (or the real media type) for these"


def test_the_check_catches_a_route_without_a_model() -> None:
    """What the check above would say about an endpoint returning a plain dict, or a JSONResponse with no
    declared model (the two ways a route ended up untyped before)."""
    document = {
        "paths": {
            "/dict": {
                "get": {
                    "responses": {
                        "200": {
                            "content": {
                                "application/json": {"schema": {"type": "object", "additionalProperties": True}}
                            }
                        }
                    }
                }
            },
            "/response": {"post": {"responses": {"202": {"content": {"application/json": {"schema": {}}}}}}},
            "/gone": {"delete": {"responses": {"204": {"description": "No body"}}}},
        }
    }
    assert undescribed(document) == ["GET /dict 200", "POST /response 202"]
