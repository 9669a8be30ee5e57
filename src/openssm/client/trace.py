"""Start-up timing marks for ``bench/bench_session_latency.py``: where a session's first second goes.

With ``OPENSSM_CLIENT_TRACE=PATH`` in the environment, :func:`mark` appends one line per step
(``<pid> <step> <CLOCK_MONOTONIC ns>``) to PATH; without it, it does nothing. CLOCK_MONOTONIC is
one clock for every process on the machine, so the bench lines the marks up with the moment it
started the process. Imports only ``os`` and ``time`` (already loaded by the interpreter), so
the marks cost nothing before the first one.
"""

from __future__ import annotations

import os
import time

TYPE_CHECKING = False  # not even typing: the plugin's version check imports this module
if TYPE_CHECKING:
    from typing import Final

TRACE_ENV: Final = "OPENSSM_CLIENT_TRACE"

_path = os.environ.get(TRACE_ENV) or None


def mark(step: str) -> None:
    """Record that ``step`` is done (a no-op unless tracing is on)."""
    if _path is None:
        return
    line = f"{os.getpid()} {step} {time.monotonic_ns()}\n".encode()
    try:
        fd = os.open(_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    except OSError:
        return
    try:
        os.write(fd, line)  # one small O_APPEND write: lines of several processes never interleave
    finally:
        os.close(fd)


def enabled() -> bool:
    return _path is not None
