"""The external systems a job or command talks to, built once per process and handed in via the context (and to
the few requests that ask CML directly, through `IntegrationsDep`)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Request

from ..aws.session import AwsClients, AwsConfig
from ..cml.client import CMLClient
from ..cml.errors import CMLUnreachable
from ..config import Settings
from ..storage.models import WorkerRow

_TEMPLATE_FIELDS: dict[str, Callable[[WorkerRow], str | None]] = {
    "public_ip": lambda worker: worker.public_ip,
    "private_ip": lambda worker: worker.private_ip,
    "instance_id": lambda worker: worker.aws_instance_id,
    "public_dns": lambda worker: (worker.details or {}).get("public_dns"),
    "private_dns": lambda worker: (worker.details or {}).get("private_dns"),
}


class CMLPool:
    """One CMLClient per CML host, created on first use; the host's URL comes from `CML_URL_TEMPLATE`."""

    # A host that failed is retried after 30 s, then 60, 120 ... up to 5 minutes, so broken hosts cost little.
    BACKOFF_BASE = 30.0
    BACKOFF_MAX = 300.0

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._clients: dict[str, CMLClient] = {}
        self._failures: dict[str, tuple[int, float]] = {}
        # Worked out once: worker-metrics asks for a thousand addresses per run.
        self._fields = [name for name in _TEMPLATE_FIELDS if "{" + name + "}" in settings.cml_url_template]

    def retry_in(self, worker_id: str) -> float:
        """Seconds until a failing host may be asked again (0: ask now)."""
        _, next_try = self._failures.get(worker_id, (0, 0.0))
        return max(0.0, next_try - time.monotonic())

    def record(self, worker_id: str, *, ok: bool) -> None:
        if ok:
            self._failures.pop(worker_id, None)
            return
        failures = self._failures.get(worker_id, (0, 0.0))[0] + 1
        delay = min(self.BACKOFF_BASE * 2 ** (failures - 1), self.BACKOFF_MAX)
        self._failures[worker_id] = (failures, time.monotonic() + delay)

    def url_for(self, worker: WorkerRow) -> str:
        values = {name: _TEMPLATE_FIELDS[name](worker) for name in self._fields}
        missing = [name for name, value in values.items() if not value]
        if missing:
            raise CMLUnreachable(f"Worker '{worker.name}' has no {missing[0].replace('_', ' ')} to reach CML at")
        return self.settings.cml_url_template.format(**values)

    def client(self, worker: WorkerRow) -> CMLClient:
        url = self.url_for(worker)
        client = self._clients.get(url)
        if client is None:
            client = self._clients[url] = CMLClient(
                url,
                self.settings.cml_username,
                self.settings.cml_password_value(),
                verify=self.settings.cml_verify_tls,
                ca_bundle=self.settings.cml_ca_bundle,
                timeout=self.settings.cml_timeout,
            )
        return client

    async def aclose(self) -> None:
        clients, self._clients = list(self._clients.values()), {}
        await asyncio.gather(*(client.aclose() for client in clients))


@dataclass
class Integrations:
    aws: AwsClients
    cml: CMLPool
    closed: bool = field(default=False)

    async def aclose(self) -> None:
        if not self.closed:
            self.closed = True
            await self.cml.aclose()
            await self.aws.aclose()


def build_integrations(settings: Settings) -> Integrations:
    aws = AwsClients(
        AwsConfig(
            endpoint_url=settings.aws_endpoint_url or None,
            max_attempts=settings.aws_max_attempts,
            max_concurrency=settings.aws_max_concurrency,
        )
    )
    return Integrations(aws=aws, cml=CMLPool(settings))


async def _integrations(request: Request) -> Integrations:
    integrations: Integrations = request.app.state.runtime.integrations
    return integrations


IntegrationsDep = Annotated[Integrations, Depends(_integrations)]
