"""Keep retry loops from swallowing a cancellation.

A task cancelled while aiohttp is connecting can see the cancellation surface as a connection
error or timeout; a loop that retries on those would then run on after the agent was told to stop.
"""

from __future__ import annotations

import asyncio


def reraise_if_cancelled() -> None:
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
