"""Counting the database's work per step of a request (``OPENSSM_DB_TRACE=1``): how many statements,
commits and connection checkouts one API call, MGS REST call or channel open costs, and how long it
took. The latency bench reads these lines from the server's log for its per-step breakdown.

A step is a ``with step("api", "ssm:StartSession"):`` around the work; statements run in it are
counted against it (SQLAlchemy runs the async driver's statements in a greenlet that shares the
calling task's context, so a context variable follows them). Off by default: the listeners are
installed only by :func:`install`, and a step without them costs a context-variable set and reset.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import logging
import time
from collections.abc import Iterator
from typing import Any, Final

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

log = logging.getLogger(__name__)

TRACE_ENV: Final = "OPENSSM_DB_TRACE"


@dataclasses.dataclass(slots=True)
class StepCount:
    """What one step asked of the database so far (``name`` and ``key`` may be filled in as the step
    learns them: an API call knows its action only once its request is read)."""

    name: str
    key: str
    statements: int = 0
    commits: int = 0
    checkouts: int = 0  # connections taken from the pool (each returned with a rollback or a commit)


_current: contextvars.ContextVar[StepCount | None] = contextvars.ContextVar("openssm_db_step", default=None)
_installed: set[int] = set()


def _statement(*_: Any) -> None:
    counting = _current.get()
    if counting is not None:
        counting.statements += 1


def _commit(*_: Any) -> None:
    counting = _current.get()
    if counting is not None:
        counting.commits += 1


def _checkout(*_: Any) -> None:
    counting = _current.get()
    if counting is not None:
        counting.checkouts += 1


def install(engine: AsyncEngine) -> None:
    """Count statements, commits and checkouts of ``engine`` against the current step, and log each step."""
    sync_engine = engine.sync_engine
    event.listen(sync_engine, "before_cursor_execute", _statement)
    event.listen(sync_engine, "commit", _commit)
    event.listen(sync_engine.pool, "checkout", _checkout)
    _installed.add(id(sync_engine))


@contextlib.contextmanager
def step(surface: str, name: str, key: str = "") -> Iterator[StepCount]:
    """Count the database work done inside as one step (``surface``: api, mgs, data-channel…;
    ``key``: which session or instance, for the log line)."""
    counting = StepCount(name, key)
    token = _current.set(counting)
    started = time.perf_counter()
    try:
        yield counting
    finally:
        _current.reset(token)
        if _installed:
            log.info(
                "db trace: %s %s %s: %d statements, %d commits, %d checkouts, %.1f ms",
                surface,
                counting.name or "-",
                counting.key or "-",
                counting.statements,
                counting.commits,
                counting.checkouts,
                (time.perf_counter() - started) * 1000,
            )
