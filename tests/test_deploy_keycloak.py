"""The Keycloak realm export: the roles, groups and clients the API's OIDC mode relies on."""

from __future__ import annotations

import json
from pathlib import Path

from cml_cloud_manager.config import load_settings

REALM = Path(__file__).parents[1] / "deploy" / "keycloak" / "cml-realm.json"


def test_realm_matches_what_the_api_expects() -> None:
    realm = json.loads(REALM.read_text())
    roles = {role["name"] for role in realm["roles"]["realm"]}
    assert roles == {"admin", "operator", "viewer"}
    # Default OIDC_ROLE_MAP maps these realm roles one to one.
    assert set(load_settings(auth_mode="none").oidc_role_map) == roles
    groups = {group["name"]: group["realmRoles"] for group in realm["groups"]}
    assert groups == {"cml-viewers": ["viewer"], "cml-operators": ["operator"], "cml-admins": ["admin"]}
    clients = {client["clientId"]: client for client in realm["clients"]}
    web, cli = clients["cml-cloud-manager"], clients["cml-cloud-manager-cli"]
    assert web["publicClient"] is False and cli["publicClient"] is True
    for client in (web, cli):
        assert client["attributes"]["pkce.code.challenge.method"] == "S256"
        assert client.get("implicitFlowEnabled", False) is False
        audience = [m for m in client["protocolMappers"] if m["protocolMapper"] == "oidc-audience-mapper"]
        assert audience and audience[0]["config"]["included.client.audience"] == "cml-cloud-manager"
    assert all(uri.endswith("/auth/callback") for uri in web["redirectUris"])
