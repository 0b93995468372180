"""Credentials verified once, then remembered for a few seconds, so token auth costs no database round trip per
request.

Keyed by the SHA-256 of what the client sent (an API token or a session cookie), which is also what the database
keeps. Entries expire after AUTH_CACHE_SECONDS; before that, the outbox ends them: every API replica's relay
clears the cache when it reads `auth.token.revoked` or `auth.session.ended` (`CredentialCache.apply`), so a
revocation holds everywhere within the relay's lag. The whole cache goes, not the one entry: those events carry no
hash, revocations are rare, and refilling costs one read per credential in use. Unknown credentials are never
remembered: a token created a moment ago must work at once, and guessing must not fill memory.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Generic, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

from ..storage.models import EventRow
from . import sessions, tokens

V = TypeVar("V")

# The events after which no remembered credential can be trusted.
INVALIDATING = frozenset({tokens.REVOKED, sessions.ENDED})


class CredentialCache(Generic[V]):
    def __init__(self, ttl_seconds: float, max_entries: int = 10_000) -> None:
        self.ttl = ttl_seconds
        self.max_entries = max_entries
        self._entries: dict[str, tuple[float, V]] = {}

    def get(self, key: str) -> V | None:
        found = self._entries.get(key)
        if found is None:
            return None
        expires, value = found
        if time.monotonic() >= expires:
            del self._entries[key]
            return None
        return value

    def put(self, key: str, value: V) -> None:
        if self.ttl <= 0:
            return
        if len(self._entries) >= self.max_entries:
            # Oldest first (dicts keep insertion order): a full cache only costs the longest-held credential a read.
            del self._entries[next(iter(self._entries))]
        self._entries[key] = (time.monotonic() + self.ttl, value)

    def forget(self, key: str) -> None:
        self._entries.pop(key, None)

    def clear(self) -> None:
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)

    # As a consumer of the relay (`events.relay.Consumer`).
    async def load(self, session: AsyncSession) -> None:
        self.clear()

    async def apply(self, session: AsyncSession, events: Sequence[EventRow]) -> None:
        if any(event.type in INVALIDATING for event in events):
            self.clear()
