"""Helpers shared by the queue runners (pipeline workers and notifiers)."""

from __future__ import annotations

import asyncio
import random
from datetime import timedelta

_MAX_BACKOFF = timedelta(hours=1)


def retry_delay(attempts: int, base_seconds: float) -> timedelta:
    """Return the wait before the next attempt: doubling, jittered, at most 1 h."""
    seconds = base_seconds * (2 ** max(0, min(attempts - 1, 20)))
    seconds = min(seconds, _MAX_BACKOFF.total_seconds())
    return timedelta(seconds=seconds * random.uniform(0.8, 1.2))


async def wait_for_work(
    wake: asyncio.Event, stop: asyncio.Event, seconds: float
) -> None:
    """Sleep until ``wake`` or ``stop`` is set, or ``seconds`` pass.

    The timeout makes an idle runner look again for rows that became due
    (retries) or that other processes queued.
    """
    wake.clear()
    waiters = [asyncio.ensure_future(wake.wait()), asyncio.ensure_future(stop.wait())]
    _, pending = await asyncio.wait(
        waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED
    )
    for waiter in pending:
        waiter.cancel()
