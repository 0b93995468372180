"""Nudges through Redis never make their sender wait, and a hung Redis cannot pile them up."""

from __future__ import annotations

import asyncio
import time

from cml_cloud_manager.events.notifier import SEND_TIMEOUT, Notifier

from ..e2e.faults import SilentListener


async def test_nudges_to_a_hung_redis_return_at_once_and_coalesce() -> None:
    silent = SilentListener()
    notifier = Notifier(silent.url, "cmltest")
    try:
        for _ in range(200):  # writes keep committing for two send timeouts while Redis never answers
            notifier.nudge(notifier.channel)
            notifier.nudge(notifier.commands_channel)
            await asyncio.sleep(0.01)
        senders = [task for task in asyncio.all_tasks() if task.get_name() == "redis-nudges"]
        assert len(senders) == 1, "one sender at a time"
        # One send at a time, each given up after SEND_TIMEOUT: a handful of connections, not one per nudge.
        assert 1 <= silent.accepted <= 6, silent.accepted
        assert notifier.up is False
    finally:
        began = time.monotonic()
        await notifier.aclose()
        assert time.monotonic() - began < 2 * SEND_TIMEOUT + 1, "closing waited for Redis"
        silent.close()


async def test_nudges_reach_a_redis_that_answers(redis_url: str) -> None:
    notifier = Notifier(redis_url, f"cmltest-{time.monotonic_ns()}")
    received = asyncio.Event()
    listening = asyncio.create_task(notifier.listen(notifier.channel, received.set))
    try:
        await asyncio.wait_for(received.wait(), 5)  # called once the subscription is up
        received.clear()
        notifier.nudge(notifier.channel)
        await asyncio.wait_for(received.wait(), 5)
        assert notifier.up is True
    finally:
        listening.cancel()
        await asyncio.wait([listening])
        await notifier.aclose()
