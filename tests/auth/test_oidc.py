"""OIDC mode against a real (local) provider: every way a bearer token can be wrong, and the code flow."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from .oidc_provider import CLIENT_ID, Provider


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_valid_token_roles_are_enforced(oidc_api: httpx.AsyncClient, provider: Provider) -> None:
    viewer = provider.sign(provider.claims(realm_access={"roles": ["viewer"]}))
    assert (await oidc_api.get("/api/workers", headers=bearer(viewer))).status_code == 200
    refused = await oidc_api.put("/api/system/settings", json={"values": {}}, headers=bearer(viewer))
    assert refused.status_code == 403 and "needs the admin role" in refused.json()["detail"]
    client_role = provider.sign(provider.claims(realm_access=None, resource_access={CLIENT_ID: {"roles": ["admin"]}}))
    me = (await oidc_api.get("/auth/me", headers=bearer(client_role))).json()
    assert me["user"] == {"name": "alice", "roles": ["admin"]}


def _none_alg(claims: dict[str, Any]) -> str:
    return jwt.encode(claims, key="", algorithm="none", headers={"kid": "test-key-1"})  # "none" takes no key


@pytest.mark.parametrize(
    ("case", "status", "message"),
    [
        ("expired", 401, "expired"),
        ("wrong audience", 401, "not meant for this API"),
        ("wrong issuer", 401, "not issued by"),
        ("unknown kid", 401, "unknown key"),
        ("alg none", 401, "algorithm 'none'"),
        ("another key type's algorithm", 401, "is not the one of key 'test-key-1' (RS256)"),
        ("tampered", 401, "Signature verification failed"),
        ("other key", 401, "Signature verification failed"),
        ("not yet valid", 401, "not valid yet"),
        ("missing roles", 403, "has no role"),
        ("garbage", 401, "Malformed bearer token"),
    ],
)
async def test_bad_tokens_are_refused_with_a_clear_message(
    oidc_api: httpx.AsyncClient, provider: Provider, case: str, status: int, message: str
) -> None:
    now = int(time.time())
    tokens: dict[str, Callable[[], str]] = {
        "expired": lambda: provider.sign(provider.claims(exp=now - 120, iat=now - 600, nbf=now - 600)),
        "wrong audience": lambda: provider.sign(provider.claims(aud="someone-else")),
        "wrong issuer": lambda: provider.sign(provider.claims(iss="https://evil.example/realms/cml")),
        "unknown kid": lambda: provider.sign(provider.claims(), kid="rotated-away"),
        "alg none": lambda: _none_alg(provider.claims()),
        "another key type's algorithm": lambda: jwt.encode(
            provider.claims(), ec.generate_private_key(ec.SECP256R1()), algorithm="ES256", headers={"kid": provider.kid}
        ),
        "tampered": lambda: _tamper(provider.sign(provider.claims(realm_access={"roles": ["viewer"]}))),
        "other key": lambda: provider.sign(
            provider.claims(), key=rsa.generate_private_key(public_exponent=65537, key_size=2048)
        ),
        "not yet valid": lambda: provider.sign(provider.claims(nbf=now + 600)),
        "missing roles": lambda: provider.sign(provider.claims(realm_access={"roles": ["unrelated"]})),
        "garbage": lambda: "not.a.jwt",
    }
    token = tokens[case]()
    response = await oidc_api.get("/api/workers", headers=bearer(token))
    assert response.status_code == status
    assert message in response.json()["detail"]


def _tamper(token: str) -> str:
    """Swap the payload for one granting admin, keeping the original signature."""
    header, _, signature = token.split(".")
    claims = jwt.decode(token, options={"verify_signature": False})
    claims["realm_access"] = {"roles": ["admin"]}
    forged = jwt.encode(claims, "x" * 32, algorithm="HS256").split(".")[1]
    return f"{header}.{forged}.{signature}"


async def test_code_flow_with_pkce_gives_a_session_cookie(oidc_api: httpx.AsyncClient, provider: Provider) -> None:
    provider.user_roles = ["operator"]
    start = await oidc_api.get("/auth/login", params={"return_to": "/#/jobs"})
    assert start.status_code == 302
    authorize = start.headers["location"]
    assert authorize.startswith(provider.issuer) and "code_challenge_method=S256" in authorize
    async with httpx.AsyncClient() as browser:
        back = await browser.get(authorize)
    assert back.status_code == 302
    callback = await oidc_api.get(back.headers["location"])
    assert callback.status_code == 302 and callback.headers["location"] == "/#/jobs"
    cookie = callback.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie
    me = (await oidc_api.get("/auth/me")).json()
    assert me["user"] == {"name": "alice", "roles": ["operator"]} and me["csrf_token"]
    # Cookie-authenticated writes need the CSRF token.
    worker_start = "/api/workers/nope/start"
    assert (await oidc_api.post(worker_start)).status_code == 403
    assert (await oidc_api.post(worker_start, headers={"X-CSRF-Token": me["csrf_token"]})).status_code == 404
    logout = await oidc_api.post("/auth/logout")
    assert "/protocol/openid-connect/logout" in logout.json()["redirect"]
    assert (await oidc_api.get("/auth/me")).status_code == 401


async def test_callback_with_an_unknown_state_is_refused(oidc_api: httpx.AsyncClient, provider: Provider) -> None:
    start = await oidc_api.get("/auth/login")
    async with httpx.AsyncClient() as browser:
        back = await browser.get(start.headers["location"])
    forged = back.headers["location"].replace("state=", "state=x")
    response = await oidc_api.get(forged)
    assert response.status_code == 401 and "unknown or expired" in response.json()["detail"]


async def test_session_is_refreshed_shortly_before_the_access_token_expires(
    oidc_api: httpx.AsyncClient, provider: Provider
) -> None:
    provider.expires_in = 30  # inside the refresh margin: the next request must refresh
    start = await oidc_api.get("/auth/login")
    async with httpx.AsyncClient() as browser:
        back = await browser.get(start.headers["location"])
    await oidc_api.get(back.headers["location"])
    after_login = provider.token_requests
    provider.user_roles = ["viewer"]  # the provider changed the user's roles meanwhile
    me = (await oidc_api.get("/auth/me")).json()
    assert provider.token_requests == after_login + 1
    assert me["user"]["roles"] == ["viewer"]
