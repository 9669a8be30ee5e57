"""Waiting with a deadline: the only way tests wait for something to happen (no bare sleeps).

``wait_until`` polls from a thread (tests driving processes); ``wait_for`` polls inside the event
loop and accepts a check that returns an awaitable.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any


def wait_until(
    predicate: Callable[[], bool], what: str, timeout: float = 30.0, interval: float = 0.1
) -> None:
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except Exception as exc:  # keep polling; report the last error on timeout
            last_error = exc
        time.sleep(interval)
    raise TimeoutError(
        f"timed out waiting for {what}" + (f" (last error: {last_error!r})" if last_error else "")
    )


async def wait_for(check: Callable[[], Any], timeout: float, message: str) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(message)
        await asyncio.sleep(0.02)
