"""Wake-ups across processes: a Redis pub/sub channel when `REDIS_URL` is set.

Only a nudge travels through Redis ("there is something new"); the events themselves are always read from the
outbox, so a lost or duplicated nudge can delay delivery by one poll interval but never lose or repeat an event.
Redis is therefore never on a request's path: nudges are sent in the background, and a Redis that hangs or
refuses connections costs wake-ups (receivers poll), never a request's time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ..stopping import finish

log = logging.getLogger(__name__)

# A nudge or ping not answered within this long is given up: a hung Redis holds nothing for longer.
SEND_TIMEOUT = 1.0


class Notifier:
    def __init__(self, redis_url: str, prefix: str) -> None:
        self.redis: aioredis.Redis | None = (
            aioredis.from_url(
                redis_url,
                socket_connect_timeout=2,
                socket_timeout=5,
                health_check_interval=10,
                # A restarted Redis leaves dead pooled connections behind: one retry, on a fresh connection.
                retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), 1),
                retry_on_error=[RedisConnectionError, RedisTimeoutError],
            )
            if redis_url
            else None
        )
        self.channel = f"{prefix}:events"
        self.commands_channel = f"{prefix}:commands"
        # None: Redis not configured; False: configured but unreachable right now.
        self.up: bool | None = None if self.redis is None else False
        # Called when Redis stops answering: a receiver waiting out its long safety interval (nudges would wake
        # it) starts polling now instead of after that interval.
        self.on_down: list[Callable[[], None]] = []
        self._pending: dict[str, None] = {}  # channels to nudge, in order, each once
        self._sender: asyncio.Task[None] | None = None

    @property
    def status(self) -> str:
        return {None: "disabled", True: "up", False: "down"}[self.up]

    def nudge(self, channel: str) -> None:
        """Publish a wake-up on `channel` in the background; the caller never waits for Redis. Nudges asked for
        while one is being sent coalesce into one more send per channel, so a hung Redis holds one task and one
        connection however many writes happen meanwhile."""
        if self.redis is None:
            return
        self._pending[channel] = None
        if self._sender is None or self._sender.done():
            self._sender = asyncio.create_task(self._send_pending(), name="redis-nudges")

    async def _send_pending(self) -> None:
        while self._pending:
            channel = next(iter(self._pending))
            del self._pending[channel]
            await self._publish(channel)

    async def _publish(self, channel: str) -> None:
        """One nudge, now, given up after SEND_TIMEOUT. Never raises: receivers poll when nudges are lost."""
        if self.redis is None:
            return
        try:
            async with asyncio.timeout(SEND_TIMEOUT):
                await self.redis.publish(channel, "1")
        except (RedisError, OSError, TimeoutError) as exc:
            self._down("publish", exc)
        else:
            self.up = True

    async def ping(self) -> None:
        """Raises unless Redis answers within SEND_TIMEOUT (one try; the health check asks again next time)."""
        assert self.redis is not None, "Redis is not configured"
        try:
            async with asyncio.timeout(SEND_TIMEOUT):
                await self.redis.ping()
        except (RedisError, OSError, TimeoutError) as exc:
            self._down("ping", exc)
            raise
        self.up = True

    def _down(self, what: str, exc: BaseException) -> None:
        if self.up:
            reason = f"no answer within {SEND_TIMEOUT:g} s" if isinstance(exc, TimeoutError) else str(exc)
            log.warning("Redis %s failed (%s); receivers fall back to polling", what, reason)
        # Also tells this process's own receivers (the SSE relay) to poll at the short interval meanwhile.
        self._set_down()

    def _set_down(self) -> None:
        was_up, self.up = self.up, False
        if was_up:
            for wake in self.on_down:
                wake()

    async def listen(self, channel: str, on_message: Callable[[], None]) -> None:
        """Call `on_message` for every nudge; reconnect forever with backoff. Also calls it after each
        (re)subscribe so a receiver catches up on whatever it missed while Redis was away."""
        if self.redis is None:
            return
        backoff = 0.5
        while True:
            pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(channel)
                if self.up is False:
                    log.info("Redis subscription to %s is up", channel)
                self.up = True
                backoff = 0.5
                on_message()
                async for message in pubsub.listen():
                    if message["type"] == "message":
                        on_message()
            except (RedisError, OSError) as exc:
                if self.up:
                    log.warning("Redis subscription lost (%s); polling until it returns", exc)
                self._set_down()
            finally:
                with contextlib.suppress(RedisError, OSError):
                    await pubsub.aclose()
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 5.0)

    async def aclose(self) -> None:
        """Send the nudges still pending if Redis answers in time, then close the connections."""
        if self._sender is not None:
            await finish([self._sender], SEND_TIMEOUT)
        if self.redis is not None:
            await self.redis.aclose()
