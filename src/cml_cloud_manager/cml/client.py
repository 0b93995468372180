"""Async client for one CML 2.9 controller (REST API under `<base_url>/api/v0`).

Tokens are cached per (base URL, username) at module level, so any new client for a host (another job, a
restarted pool) reuses the session instead of making CML verify the password again. A 401 renews the token
once; a second refusal is `CMLAuthFailed`.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar
from urllib.parse import quote

import aiohttp
import orjson
from yarl import URL

from cml_cloud_manager.cml.errors import (
    CMLApiError,
    CMLAuthFailed,
    CMLNotFound,
    CMLUnreachable,
)
from cml_cloud_manager.cml.types import (
    ImportedLab,
    LabDetails,
    LabState,
    LabTopology,
    Licensing,
    SystemHealth,
    SystemInfo,
    SystemStats,
    TelemetryEvent,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

_TOKENS: dict[tuple[str, str], str] = {}
_GATEWAY_STATUSES = frozenset({502, 503, 504})
KEEPALIVE_SECONDS = 4.0


def clear_token_cache() -> None:
    """Forget every cached token (tests, or after rotating CML passwords)."""
    _TOKENS.clear()


@lru_cache(maxsize=16)
def _ssl_context(ca_bundle: str | None) -> ssl.SSLContext:
    # Shared per CA bundle: building a context loads the whole trust store, which adds up across
    # hundreds of per-host clients. Without a bundle, the system's trust store (where operators install
    # their own CAs) decides.
    return ssl.create_default_context(cafile=ca_bundle)


@dataclass(frozen=True)
class Reply:
    """One CML answer, read whole within the request's time bound."""

    method: str
    path: str
    status_code: int
    reason: str
    content_type: str
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")

    def json(self) -> Any:
        return orjson.loads(self.body)


class CMLClient:
    """One CML host. Use as `async with CMLClient(...) as cml:` or call `aclose()`.

    Every request is bounded by `timeout` seconds end to end; exceeding it raises `CMLUnreachable`.
    """

    def __init__(
        self,
        base_url: str,
        username: str,
        password: str,
        *,
        verify: bool = True,
        ca_bundle: str | Path | None = None,
        timeout: float = 10.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.username = username
        self._password = password
        self._timeout = timeout
        self._cache_key = (self.base_url, username)
        self._auth_lock = asyncio.Lock()
        self._tls: ssl.SSLContext | bool = _ssl_context(str(ca_bundle) if ca_bundle else None) if verify else False
        self._http: aiohttp.ClientSession | None = None

    def __repr__(self) -> str:
        return f"CMLClient(base_url={self.base_url!r}, username={self.username!r})"

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.close()

    def _session(self) -> aiohttp.ClientSession:
        # Made on first use: an aiohttp session belongs to the event loop that runs it.
        if self._http is None:
            self._http = aiohttp.ClientSession(
                # Idle connections are dropped before a server would drop them (5 s is a common server default):
                # a request sent as the server closes fails, and aiohttp only retries idempotent ones.
                connector=aiohttp.TCPConnector(ssl=self._tls, keepalive_timeout=KEEPALIVE_SECONDS),
                headers={"Accept": "application/json"},
                # The whole exchange is bounded in `_send`, not per phase.
                timeout=aiohttp.ClientTimeout(total=None),
                # Proxies from the environment would silently reroute control-plane traffic to CML hosts.
                trust_env=False,
            )
        return self._http

    # -- system -------------------------------------------------------------------------------------------

    async def system_information(self) -> SystemInfo:
        """Version and readiness; CML answers this one without authentication."""
        response = await self._request("GET", "/system_information", authenticated=False)
        return self._parse(response, SystemInfo.from_api)

    async def system_health(self) -> SystemHealth:
        return self._parse(await self._request("GET", "/system_health"), SystemHealth.from_api)

    async def system_stats(self) -> SystemStats:
        return self._parse(await self._request("GET", "/system_stats"), SystemStats.from_api)

    # -- licensing ----------------------------------------------------------------------------------------

    async def licensing(self) -> Licensing:
        return self._parse(await self._request("GET", "/licensing"), Licensing.from_api)

    async def register_license(self, token: str, reregister: bool = False) -> None:
        """Ask CML to register with Smart Licensing; CML completes it asynchronously (poll `licensing`)."""
        await self._request(
            "POST",
            "/licensing/registration",
            body={"token": token, "reregister": reregister},
            secret=token,
        )

    async def deregister_license(self) -> bool:
        """Deregister. False when CML deregistered locally but could not reach Smart Licensing (202)."""
        reply = await self._request("DELETE", "/licensing/deregistration")
        return reply.status_code != 202

    # -- labs ---------------------------------------------------------------------------------------------

    async def list_labs(self) -> list[str]:
        """Ids of every lab on the host, whoever owns it."""
        response = await self._request("GET", "/labs", params={"show_all": "true"})
        return self._parse(response, lambda ids: [str(lab_id) for lab_id in ids])

    async def get_lab(self, lab_id: str) -> LabDetails:
        return self._parse(await self._request("GET", _lab_path(lab_id)), LabDetails.from_api)

    async def labs_with_details(self, *, concurrency: int = 8) -> list[LabDetails]:
        """Details of every lab, at most `concurrency` requests in flight, in `list_labs` order.

        A lab deleted between the listing and its detail request is left out rather than failing the lot.
        """
        semaphore = asyncio.Semaphore(max(1, concurrency))

        async def one(lab_id: str) -> LabDetails | None:
            async with semaphore:
                try:
                    return await self.get_lab(lab_id)
                except CMLNotFound:
                    return None

        lab_ids = await self.list_labs()
        try:
            async with asyncio.TaskGroup() as group:
                tasks = [group.create_task(one(lab_id)) for lab_id in lab_ids]
        except ExceptionGroup as failures:
            # Callers expect our typed errors, not a group; the first failure is representative.
            raise failures.exceptions[0] from None
        return [lab for task in tasks if (lab := task.result()) is not None]

    async def lab_state(self, lab_id: str) -> LabState:
        return self._parse(await self._request("GET", f"{_lab_path(lab_id)}/state"), LabState)

    async def lab_topology(self, lab_id: str) -> LabTopology:
        path = f"{_lab_path(lab_id)}/topology"
        response = await self._request("GET", path, params={"exclude_configurations": "true"})
        return self._parse(response, LabTopology.from_api)

    async def start_lab(self, lab_id: str) -> None:
        await self._request("PUT", f"{_lab_path(lab_id)}/start")

    async def stop_lab(self, lab_id: str) -> None:
        await self._request("PUT", f"{_lab_path(lab_id)}/stop")

    async def wipe_lab(self, lab_id: str) -> None:
        """Wipe node disks; CML refuses while the lab is running."""
        await self._request("PUT", f"{_lab_path(lab_id)}/wipe")

    async def delete_lab(self, lab_id: str) -> None:
        """Delete; CML refuses unless the lab is stopped and wiped."""
        await self._request("DELETE", _lab_path(lab_id))

    async def download_lab(self, lab_id: str) -> str:
        """The lab as CML topology YAML."""
        reply = await self._request("GET", f"{_lab_path(lab_id)}/download")
        text = reply.text
        # The published schema says "JSON string"; controllers send raw YAML. Accept both.
        if text.startswith('"') and "json" in reply.content_type:
            return self._parse(reply, str)
        return text

    async def import_lab(self, yaml_text: str, title: str | None = None) -> ImportedLab:
        params = {"title": title} if title else None
        response = await self._request("POST", "/import", params=params, content=yaml_text.encode())

        def parse(data: Mapping[str, Any]) -> ImportedLab:
            return ImportedLab(id=str(data["id"]), warnings=tuple(data.get("warnings") or ()))

        return self._parse(response, parse)

    # -- telemetry ----------------------------------------------------------------------------------------

    async def telemetry_events(self, since: datetime | None = None) -> list[TelemetryEvent]:
        """Events oldest first; with `since`, only those strictly after it (naive means UTC).

        CML has no server-side filter and returns its whole event history every time.
        """
        response = await self._request("GET", "/telemetry/events")
        events = self._parse(response, lambda raw: [TelemetryEvent.from_api(item) for item in raw])
        if since is not None:
            if since.tzinfo is None:  # same convention as CML's own offset-less timestamps
                since = since.replace(tzinfo=UTC)
            events = [event for event in events if event.timestamp > since]
        return sorted(events, key=lambda event: event.timestamp)

    # -- plumbing -----------------------------------------------------------------------------------------

    async def _request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: Any = None,
        content: bytes | None = None,
        authenticated: bool = True,
        secret: str | None = None,
    ) -> Reply:
        if not authenticated:
            response = await self._send(method, path, params=params, body=body, content=content)
            self._raise_for_status(method, path, response, secret)
            return response
        token = await self._token()
        response = await self._send(method, path, params=params, body=body, content=content, token=token)
        if response.status_code == 401:
            log.info("CML token refused by %s; renewing once", self.base_url)
            token = await self._renew_token(stale=token)
            response = await self._send(method, path, params=params, body=body, content=content, token=token)
        if response.status_code in (401, 403):
            _TOKENS.pop(self._cache_key, None)
            raise CMLAuthFailed(
                f"CML host {self.base_url} refused {method} {path} for user {self.username!r}: "
                f"{_describe(response, secret)}",
                host=self.base_url,
                status=response.status_code,
            )
        self._raise_for_status(method, path, response, secret)
        return response

    async def _send(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: Any = None,
        content: bytes | None = None,
        token: str | None = None,
    ) -> Reply:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        data = content
        if body is not None:
            data, headers["Content-Type"] = orjson.dumps(body), "application/json"
        try:
            # One bound for the whole exchange, slow trickles of the body included.
            async with asyncio.timeout(self._timeout):
                # Paths are quoted where they are built (`_lab_path`), so the URL is taken as it is.
                url = URL(f"{self.base_url}/api/v0{path}", encoded=True)
                async with self._session().request(
                    method,
                    url,
                    params=params,
                    data=data,
                    headers=headers,
                    allow_redirects=False,
                    # Raw content (a lab's YAML) goes without a guessed type, as CML's own client sends it.
                    skip_auto_headers=("Content-Type",),
                ) as response:
                    reply = Reply(
                        method,
                        path,
                        response.status,
                        response.reason or "",
                        response.headers.get("Content-Type", ""),
                        await response.read(),
                    )
        except TimeoutError as exc:
            raise CMLUnreachable(
                f"CML host {self.base_url} did not answer {method} {path} within {self._timeout:g}s",
                host=self.base_url,
            ) from exc
        except (aiohttp.ClientConnectionError, aiohttp.InvalidURL) as exc:
            raise CMLUnreachable(
                f"cannot reach CML host {self.base_url}: {type(exc).__name__}: {exc}", host=self.base_url
            ) from exc
        except aiohttp.ClientError as exc:  # malformed answer, truncated body: CML answered, but unusably
            raise CMLApiError(
                f"CML host {self.base_url} answered {method} {path} unusably: {type(exc).__name__}: {exc}",
                host=self.base_url,
            ) from exc
        log.debug("CML %s %s%s -> %s", method, self.base_url, path, reply.status_code)
        return reply

    async def _token(self) -> str:
        token = _TOKENS.get(self._cache_key)
        if token is not None:
            return token
        return await self._renew_token(stale=None)

    async def _renew_token(self, *, stale: str | None) -> str:
        async with self._auth_lock:
            # Concurrent requests that hit the same 401 must not each log in again.
            current = _TOKENS.get(self._cache_key)
            if current is not None and current != stale:
                return current
            _TOKENS.pop(self._cache_key, None)
            token = await self._authenticate()
            _TOKENS[self._cache_key] = token
            return token

    async def _authenticate(self) -> str:
        response = await self._send(
            "POST", "/authenticate", body={"username": self.username, "password": self._password}
        )
        if response.status_code in (401, 403):
            raise CMLAuthFailed(
                f"CML host {self.base_url} rejected the credentials of user {self.username!r}: "
                f"{_describe(response, self._password)}",
                host=self.base_url,
                status=response.status_code,
            )
        self._raise_for_status("POST", "/authenticate", response, self._password)
        token = self._parse(response, str)
        if not token:
            raise CMLApiError(f"CML host {self.base_url} returned an empty token", host=self.base_url)
        log.debug("authenticated to CML host %s as %s", self.base_url, self.username)
        return token

    def _raise_for_status(self, method: str, path: str, response: Reply, secret: str | None) -> None:
        status = response.status_code
        if status < 400:
            return
        description = _describe(response, secret)
        message = f"CML host {self.base_url} answered {status} to {method} {path}: {description}"
        if status in _GATEWAY_STATUSES:
            raise CMLUnreachable(message, host=self.base_url, status=status)
        if status == 404:
            raise CMLNotFound(message, host=self.base_url, status=status)
        raise CMLApiError(message, host=self.base_url, status=status, description=description)

    def _parse(self, response: Reply, build: Callable[[Any], T]) -> T:
        try:
            return build(response.json())
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise CMLApiError(
                f"CML host {self.base_url} sent an unexpected response to {response.method} "
                f"{response.path}: {type(exc).__name__}: {exc}",
                host=self.base_url,
                status=response.status_code,
            ) from exc


def _lab_path(lab_id: str) -> str:
    # Quoted so an odd id can never step into another resource or smuggle a query string.
    return f"/labs/{quote(lab_id, safe='')}"


def _describe(response: Reply, secret: str | None) -> str:
    """CML's own error description (`{"code", "description"}`), else a bounded slice of the body."""
    text = response.text
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, Mapping):
        detail = body.get("description") or body.get("detail") or text
        text = detail if isinstance(detail, str) else orjson.dumps(detail).decode()
    text = text.strip()[:500] or response.reason
    if secret:
        text = text.replace(secret, "***")
    return text
