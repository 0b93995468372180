"""A small OpenID provider for tests: discovery, JWKS, authorize (auto-approves) and token endpoints,
signing Keycloak-shaped tokens with a fresh RSA key. Served over real HTTP on loopback."""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlencode

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

CLIENT_ID = "cml-cloud-manager"


@dataclass
class Provider:
    base_url: str = ""
    key: rsa.RSAPrivateKey = field(
        default_factory=lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048)
    )
    kid: str = "test-key-1"
    user_roles: list[str] = field(default_factory=lambda: ["admin"])
    codes: dict[str, dict[str, Any]] = field(default_factory=dict)
    token_requests: int = 0
    expires_in: int = 300
    # Answer refresh requests with this status instead (400: refused, e.g. the user was disabled; 5xx: down).
    refresh_status: int | None = None
    # Every token answer given, newest last.
    issued: list[dict[str, Any]] = field(default_factory=list)

    @property
    def issuer(self) -> str:
        return f"{self.base_url}/realms/cml"

    def sign(self, claims: dict[str, Any], *, kid: str | None = None, key: Any = None, alg: str = "RS256") -> str:
        return jwt.encode(claims, key or self.key, algorithm=alg, headers={"kid": kid or self.kid})

    def claims(self, **overrides: Any) -> dict[str, Any]:
        now = int(time.time())
        base = {
            "iss": self.issuer,
            "aud": CLIENT_ID,
            "sub": "user-1",
            "preferred_username": "alice",
            "iat": now,
            "nbf": now,
            "exp": now + 300,
            "realm_access": {"roles": list(self.user_roles)},
        }
        base.update(overrides)
        return {k: v for k, v in base.items() if v is not None}

    def jwks(self) -> dict[str, Any]:
        public = jwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key(), as_dict=True)
        return {"keys": [{**public, "kid": self.kid, "use": "sig", "alg": "RS256"}]}

    def app(self) -> Starlette:
        async def discovery(request: Request) -> Response:
            return JSONResponse(
                {
                    "issuer": self.issuer,
                    "authorization_endpoint": f"{self.issuer}/protocol/openid-connect/auth",
                    "token_endpoint": f"{self.issuer}/protocol/openid-connect/token",
                    "jwks_uri": f"{self.issuer}/protocol/openid-connect/certs",
                    "end_session_endpoint": f"{self.issuer}/protocol/openid-connect/logout",
                }
            )

        async def certs(request: Request) -> Response:
            return JSONResponse(self.jwks())

        async def authorize(request: Request) -> Response:
            q = request.query_params
            code = secrets.token_urlsafe(16)
            self.codes[code] = {
                "nonce": q["nonce"],
                "challenge": q["code_challenge"],
                "redirect_uri": q["redirect_uri"],
            }
            return RedirectResponse(f"{q['redirect_uri']}?{urlencode({'code': code, 'state': q['state']})}", 302)

        async def token(request: Request) -> Response:
            self.token_requests += 1
            form = {k: v[0] for k, v in parse_qs((await request.body()).decode()).items()}
            if form.get("grant_type") == "authorization_code":
                pending = self.codes.pop(str(form.get("code")), None)
                verifier = str(form.get("code_verifier", ""))
                digest = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
                if pending is None or digest != pending["challenge"]:
                    return JSONResponse({"error": "invalid_grant"}, status_code=400)
                nonce = pending["nonce"]
            elif form.get("grant_type") == "refresh_token":
                if self.refresh_status is not None:
                    return JSONResponse({"error": "invalid_grant"}, status_code=self.refresh_status)
                if form.get("refresh_token") not in {answer["refresh_token"] for answer in self.issued}:
                    return JSONResponse({"error": "invalid_grant"}, status_code=400)
                nonce = None
            else:
                return JSONResponse({"error": "unsupported_grant_type"}, status_code=400)
            answer = {
                "access_token": self.sign(self.claims()),
                "id_token": self.sign(self.claims(nonce=nonce)),
                "refresh_token": secrets.token_urlsafe(16),
                "expires_in": self.expires_in,
                "token_type": "Bearer",
            }
            self.issued.append(answer)
            return JSONResponse(answer)

        base = "/realms/cml"
        return Starlette(
            routes=[
                Route(f"{base}/.well-known/openid-configuration", discovery),
                Route(f"{base}/protocol/openid-connect/certs", certs),
                Route(f"{base}/protocol/openid-connect/auth", authorize),
                Route(f"{base}/protocol/openid-connect/token", token, methods=["POST"]),
            ]
        )
