"""Signal handlers and background tasks owned by one session handler, undone together."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable, Coroutine
from typing import Any


class Scope:
    def __init__(self) -> None:
        self._signals: list[signal.Signals] = []
        self._tasks: set[asyncio.Task[Any]] = set()

    def on_signal(self, signum: signal.Signals, callback: Callable[..., object], *args: object) -> None:
        """Install a loop signal handler (silently skipped off the main thread or platform)."""
        with contextlib.suppress(ValueError, RuntimeError, NotImplementedError):
            asyncio.get_running_loop().add_signal_handler(signum, callback, *args)
            self._signals.append(signum)

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def close(self) -> None:
        loop = asyncio.get_running_loop()
        for signum in self._signals:
            with contextlib.suppress(ValueError, RuntimeError):
                loop.remove_signal_handler(signum)
        self._signals.clear()
        for task in list(self._tasks):
            task.cancel()
