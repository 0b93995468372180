"""OIDC: bearer JWTs verified against the provider's JWKS, and the authorization-code flow with PKCE."""

from __future__ import annotations

import base64
import hashlib
import logging
import secrets
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import httpx
import jwt
from jwt import PyJWK

from ..config import Settings
from ..errors import Unavailable
from .roles import NotAuthenticated, Role

log = logging.getLogger(__name__)
ALGORITHMS = ["RS256", "RS384", "RS512", "ES256", "ES384", "PS256"]
# Which of those each key type verifies: a token must name an algorithm its key is for (an RSA key handed to ES256
# was a 500, not a refusal).
FAMILIES = {"RSA": frozenset({"RS256", "RS384", "RS512", "PS256"}), "EC": frozenset({"ES256", "ES384"})}
LEEWAY_SECONDS = 30


@dataclass(frozen=True)
class Identity:
    subject: str
    roles: frozenset[Role]
    claims: dict[str, Any]


def pkce_pair() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


class OIDCProvider:
    """Discovery and JWKS are fetched on first use and cached; an unknown `kid` refreshes the keys (rotation),
    at most once a minute so forged kids cannot make us hammer the provider."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.issuer = settings.oidc_issuer.rstrip("/")
        self.audience = settings.oidc_audience or settings.oidc_client_id
        self._http = httpx.AsyncClient(timeout=10)
        self._config: dict[str, Any] | None = None
        self._keys: dict[str, tuple[PyJWK, frozenset[str]]] = {}  # kid -> key, the algorithms it verifies
        self._keys_fetched = 0.0

    async def config(self) -> dict[str, Any]:
        if self._config is None:
            url = self.settings.oidc_discovery_url or f"{self.issuer}/.well-known/openid-configuration"
            response = await self._http.get(url)
            response.raise_for_status()
            self._config = response.json()
        return self._config

    async def _refresh_keys(self) -> None:
        response = await self._http.get((await self.config())["jwks_uri"])
        response.raise_for_status()
        keys = {}
        for raw in response.json().get("keys", []):
            try:
                key = PyJWK(raw)
            except jwt.PyJWTError:
                continue  # a key type we do not use (e.g. an encryption key)
            family = FAMILIES.get(str(key.key_type), frozenset())
            # A key that names its algorithm verifies that one only (RFC 8725 3.1).
            allowed = family & {raw["alg"]} if "alg" in raw else family
            keys[str(raw.get("kid", ""))] = (key, allowed)
        self._keys = keys
        self._keys_fetched = time.monotonic()

    async def _key(self, kid: str, algorithm: str) -> PyJWK:
        if kid not in self._keys and time.monotonic() - self._keys_fetched > 60:
            await self._refresh_keys()
        if kid not in self._keys:
            raise NotAuthenticated(f"Token signed with an unknown key (kid {kid!r})")
        key, allowed = self._keys[kid]
        if algorithm not in allowed:
            raise NotAuthenticated(
                f"Token algorithm {algorithm!r} is not the one of key {kid!r} ({', '.join(sorted(allowed)) or 'none'})"
            )
        return key

    async def verify(self, token: str, *, nonce: str | None = None, audience: str | None = None) -> Identity:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise NotAuthenticated(f"Malformed bearer token: {exc}") from None
        algorithm = header.get("alg")
        if algorithm not in ALGORITHMS:
            raise NotAuthenticated(f"Token algorithm {algorithm!r} is not accepted")
        key = await self._key(str(header.get("kid", "")), algorithm)
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key.key,
                algorithms=[algorithm],
                audience=audience or self.audience,
                issuer=self.issuer,
                leeway=LEEWAY_SECONDS,
                options={"require": ["exp", "iss", "sub"]},
            )
        except jwt.ExpiredSignatureError:
            raise NotAuthenticated("Token has expired") from None
        except jwt.InvalidAudienceError:
            raise NotAuthenticated(
                f"Token is not meant for this API (audience must include {self.audience!r})"
            ) from None
        except jwt.InvalidIssuerError:
            raise NotAuthenticated(f"Token was not issued by {self.issuer}") from None
        except jwt.ImmatureSignatureError:
            raise NotAuthenticated("Token is not valid yet (nbf)") from None
        except jwt.PyJWTError as exc:
            raise NotAuthenticated(f"Token rejected: {exc}") from None
        if nonce is not None and claims.get("nonce") != nonce:
            raise NotAuthenticated("ID token nonce does not match this login")
        return Identity(str(claims.get("preferred_username") or claims["sub"]), self.roles(claims), claims)

    def roles(self, claims: dict[str, Any]) -> frozenset[Role]:
        names = list((claims.get("realm_access") or {}).get("roles") or [])
        client = (claims.get("resource_access") or {}).get(self.settings.oidc_client_id) or {}
        names += list(client.get("roles") or [])
        mapping = self.settings.oidc_role_map
        return frozenset(Role(mapping[name]) for name in names if name in mapping)

    async def authorize_url(self, *, redirect_uri: str, state: str, nonce: str, challenge: str) -> str:
        params = {
            "response_type": "code",
            "client_id": self.settings.oidc_client_id,
            "redirect_uri": redirect_uri,
            "scope": self.settings.oidc_scopes,
            "state": state,
            "nonce": nonce,
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        }
        return f"{(await self.config())['authorization_endpoint']}?{urlencode(params)}"

    async def _token_request(self, data: dict[str, str]) -> dict[str, Any]:
        """The provider's answer; NotAuthenticated when it refuses (4xx), Unavailable when it cannot answer, so a
        session is ended only for a refusal."""
        secret = self.settings.oidc_client_secret.get_secret_value()
        data = {**data, "client_id": self.settings.oidc_client_id} | ({"client_secret": secret} if secret else {})
        try:
            response = await self._http.post((await self.config())["token_endpoint"], data=data)
        except httpx.HTTPError as exc:
            raise Unavailable(f"The identity provider cannot be reached ({type(exc).__name__}); try again") from None
        if response.status_code >= 500:
            raise Unavailable(f"The identity provider failed ({response.status_code}); try again")
        if response.status_code != 200:
            raise NotAuthenticated(f"The identity provider refused the login ({response.status_code})")
        result: dict[str, Any] = response.json()
        return result

    async def exchange(self, *, code: str, redirect_uri: str, verifier: str) -> dict[str, Any]:
        return await self._token_request(
            {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri, "code_verifier": verifier}
        )

    async def refresh(self, refresh_token: str) -> dict[str, Any]:
        return await self._token_request({"grant_type": "refresh_token", "refresh_token": refresh_token})

    async def logout_url(self, *, id_token: str | None, redirect_uri: str) -> str | None:
        endpoint = (await self.config()).get("end_session_endpoint")
        if not endpoint:
            return None
        params = {"post_logout_redirect_uri": redirect_uri, "client_id": self.settings.oidc_client_id}
        if id_token:
            params["id_token_hint"] = id_token
        return f"{endpoint}?{urlencode(params)}"

    async def aclose(self) -> None:
        await self._http.aclose()
