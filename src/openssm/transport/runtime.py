"""How OpenSSM's long-running processes (server, agent, client sessions) run their event loop.

Two process-wide settings, both measured on the port-forwarding path (``bench/bench_port_throughput.py``):

* **uvloop** when it is installed, for the server, the agent and the client: libuv's loop cuts the
  per-event cost of the socket callbacks that relaying bytes consists of, and its transports
  write vectors without joining them. ``OPENSSM_EVENT_LOOP=asyncio`` selects the standard loop
  (for debugging, or a platform without uvloop). uvloop cannot start a process as another user
  itself, so the agent switches accounts in the child (``openssm.agent.privileges``).
* **glibc allocator thresholds**: a relay allocates and frees buffers of a few hundred KiB at a
  high rate. With glibc's defaults those are mmap'd (or the heap top is trimmed) and freed back to
  the kernel each time, so every new buffer page-faults in again: measured at up to 1.7 faults
  per 4 KiB relayed and a third of an endpoint's CPU. Keeping buffers below 4 MiB on the heap and
  trimming only past 64 MiB of free heap removes nearly all of those faults. ``mallopt`` is the
  only interface to this; other C libraries are left alone.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import sys
from collections.abc import Coroutine
from typing import Any, Final, TypeVar

T = TypeVar("T")

EVENT_LOOP_ENV: Final = "OPENSSM_EVENT_LOOP"
# glibc <malloc.h>
_M_TRIM_THRESHOLD: Final = -1
_M_MMAP_THRESHOLD: Final = -3
MMAP_THRESHOLD: Final = 4 * 1024 * 1024
TRIM_THRESHOLD: Final = 64 * 1024 * 1024

_allocator_tuned = False


def tune_allocator() -> bool:
    """Set glibc's mmap and trim thresholds (once per process). False where there is no glibc."""
    global _allocator_tuned
    if _allocator_tuned:
        return True
    if not sys.platform.startswith("linux"):
        return False
    try:
        # The symbols already loaded into this process, the C library's among them: asking
        # ctypes.util.find_library for it would run ldconfig, a few ms on every process start.
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # musl and others have no mallopt
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    _allocator_tuned = bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
        mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    )
    return _allocator_tuned


def release_free_memory() -> bool:
    """Give the C heap's free pages back to the kernel now (glibc's ``malloc_trim(0)``, every arena):
    the trim threshold above keeps them for a relay's next buffers, which an idle process never
    asks for. False where there is no glibc."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return False
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    trim(0)
    return True


def event_loop_name() -> str:
    """``uvloop`` or ``asyncio``: what :func:`run` will use."""
    wanted = os.environ.get(EVENT_LOOP_ENV, "").strip().lower()
    if wanted == "asyncio":
        return "asyncio"
    try:
        import uvloop  # noqa: F401
    except ImportError:
        if wanted == "uvloop":
            raise RuntimeError(f"{EVENT_LOOP_ENV}=uvloop but uvloop is not installed") from None
        return "asyncio"
    return "uvloop"


def run(main: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run`` for a whole process: tuned allocator, uvloop unless told otherwise."""
    tune_allocator()
    if event_loop_name() == "uvloop":
        import uvloop

        return uvloop.run(main)
    return asyncio.run(main)
