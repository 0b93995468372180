"""The external systems a job or command talks to, built once per process and handed in via the context."""

from __future__ import annotations

from dataclasses import dataclass

from .config import Settings


@dataclass
class Integrations:
    async def aclose(self) -> None:
        return None


def build_integrations(settings: Settings) -> Integrations:
    return Integrations()
