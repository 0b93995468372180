"""Wake-ups across processes: a Redis pub/sub channel when `REDIS_URL` is set.

Only a nudge travels through Redis ("there is something new"); the events themselves are always read from the
outbox, so a lost or duplicated nudge can delay delivery by one poll interval but never lose or repeat an event.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

import redis.asyncio as aioredis
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry

log = logging.getLogger(__name__)


class Notifier:
    def __init__(self, redis_url: str, prefix: str) -> None:
        self.redis: aioredis.Redis | None = (
            aioredis.from_url(
                redis_url,
                socket_connect_timeout=2,
                socket_timeout=5,
                health_check_interval=10,
                # A restarted Redis leaves dead pooled connections behind: retry on a fresh one.
                retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), 3),
                retry_on_error=[RedisConnectionError, RedisTimeoutError],
            )
            if redis_url
            else None
        )
        self.channel = f"{prefix}:events"
        self.commands_channel = f"{prefix}:commands"
        # None: Redis not configured; False: configured but unreachable right now.
        self.up: bool | None = None if self.redis is None else False

    @property
    def status(self) -> str:
        return {None: "disabled", True: "up", False: "down"}[self.up]

    async def publish(self, channel: str) -> None:
        if self.redis is None:
            return
        try:
            await self.redis.publish(channel, "1")
            self.up = True
        except (RedisError, OSError) as exc:
            if self.up:
                log.warning("Redis publish failed (%s); receivers fall back to polling", exc)
            self.up = False

    async def ping(self) -> str:
        if self.redis is None:
            return "disabled"
        # After a Redis restart each pooled connection fails once before it is replaced: a few quick tries
        # tell "restarted" from "down".
        for _ in range(3):
            try:
                await self.redis.ping()
                return "up"
            except (RedisError, OSError):
                continue
        return "down"

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
                self.up = False
            finally:
                with contextlib.suppress(RedisError, OSError):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 5.0)

    async def aclose(self) -> None:
        if self.redis is not None:
            await self.redis.aclose()
