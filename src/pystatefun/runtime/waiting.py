"""Waiting for an event with a timeout, without asyncio.wait_for's lost-cancellation race.

On Python 3.11, ``asyncio.wait_for`` can swallow a cancellation that arrives just as the awaited event
fires, so a loop around it never stops; ``asyncio.timeout`` does not have that problem.
"""

from __future__ import annotations

import asyncio


async def wait_for_event(event: asyncio.Event, timeout: float | None) -> bool:
    """Waits until ``event`` is set or ``timeout`` seconds pass (None: forever); True if it was set."""
    try:
        async with asyncio.timeout(timeout):
            await event.wait()
        return True
    except TimeoutError:
        return False
