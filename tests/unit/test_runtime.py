"""openssm.transport.runtime: which event loop a process gets, and the allocator tuning."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import pytest
from tests.conftest import require

from openssm.transport import runtime


def test_uvloop_by_default_and_asyncio_on_request(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(runtime.EVENT_LOOP_ENV, raising=False)
    assert runtime.event_loop_name() == "uvloop"  # a dependency on Linux
    monkeypatch.setenv(runtime.EVENT_LOOP_ENV, "asyncio")
    assert runtime.event_loop_name() == "asyncio"


def test_run_uses_the_chosen_loop() -> None:
    """In a fresh interpreter: pytest's own loop must not leak into what ``run`` creates."""
    probe = (
        "import asyncio\n"
        "from openssm.transport import runtime\n"
        "async def main():\n"
        "    return type(asyncio.get_running_loop()).__module__\n"
        "print(runtime.run(main()))\n"
    )
    for choice, module in (("uvloop", "uvloop"), ("asyncio", "asyncio")):
        out = subprocess.run(
            [sys.executable, "-c", probe],
            env={runtime.EVENT_LOOP_ENV: choice, "PATH": "/usr/bin:/bin"},
            capture_output=True,
            text=True,
            check=True,
        )
        assert out.stdout.strip().startswith(module), out


def test_allocator_tuned_on_glibc() -> None:
    require(sys.platform.startswith("linux"), "mallopt is glibc's")
    assert runtime.tune_allocator() is True
    assert runtime.tune_allocator() is True  # idempotent


def test_free_heap_pages_go_back_to_the_kernel_on_glibc() -> None:
    require(sys.platform.startswith("linux"), "malloc_trim is glibc's")
    runtime.tune_allocator()  # keeps up to 64 MiB of free heap: the case the trim is for
    page = os.sysconf("SC_PAGE_SIZE")

    def rss() -> int:
        return int(pathlib.Path("/proc/self/statm").read_text().split()[1]) * page

    blocks = [bytearray(64 * 1024) for _ in range(512)]  # 32 MiB on the heap, touched
    del blocks
    before = rss()
    assert runtime.release_free_memory() is True
    assert rss() < before - 16 * 1024 * 1024
