"""PtyProcess: controlling terminal, window size, EOF, with both launchers."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Callable

import pytest
from tests.conftest import require
from tests.support.wait import wait_for

from openssm.agent import pty_process
from openssm.agent.pty_process import PtyProcess


async def lines_until_exit(pty: PtyProcess) -> list[str]:
    """Everything the child wrote, as terminal lines, once it has exited successfully."""
    output = b""
    while data := await pty.read():
        output += data
    assert await pty.process.wait() == 0
    pty.close()
    return output.decode().split("\r\n")


@pytest.mark.parametrize("use_setsid", [True, False], ids=["setsid", "python-shim"])
async def test_child_gets_a_controlling_terminal_of_the_given_size(
    use_setsid: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not use_setsid:
        monkeypatch.setattr(pty_process, "_SETSID", None)
    else:
        require(pty_process._SETSID is not None, "setsid(1) not installed (util-linux)")
    pty = await PtyProcess.spawn(
        "/bin/sh",
        ["sh", "-c", "stty size; echo $((6*7)); ps -o tty= -p $$; kill -0 $$ && echo ok"],
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
        cwd="/",
        cols=101,
        rows=33,
    )
    lines = await lines_until_exit(pty)
    assert lines[0] == "33 101"
    assert lines[1] == "42"
    assert lines[2].startswith("pts/")  # the PTY is the shell's controlling terminal
    assert await pty.read() == b""


async def test_programs_get_the_signals_an_agent_under_nohup_ignores() -> None:
    """An agent started ignoring SIGHUP (nohup) or SIGINT/SIGQUIT (a background job) keeps ignoring
    them, but its programs start with the defaults: else a session's background children survived
    its hang-up (seen when CI ran under nohup) and Ctrl-C did nothing."""
    wanted = (signal.SIGHUP, signal.SIGINT, signal.SIGQUIT)
    before = {signum: signal.getsignal(signum) for signum in wanted}
    try:
        for signum in wanted:
            signal.signal(signum, signal.SIG_IGN)
        pty = await PtyProcess.spawn(
            "/bin/sh",
            ["sh", "-c", "grep SigIgn /proc/self/status"],
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
            cwd="/",
        )
        lines = await lines_until_exit(pty)
        ignored = int(next(line for line in lines if line.startswith("SigIgn")).split()[1], 16)
        assert all(not ignored & (1 << (signum - 1)) for signum in wanted), hex(ignored)
        for signum in wanted:  # still ignored by the agent itself, through a handler that does nothing
            assert signal.getsignal(signum) not in (signal.SIG_IGN, signal.SIG_DFL)
    finally:
        for signum, handler in before.items():
            signal.signal(signum, handler)


async def test_keystroke_echoes_are_read_without_watching_the_terminal_anew_each_time() -> None:
    """The terminal is watched from the first wait on: each echo then costs its read, not an
    add_reader/remove_reader pair (two epoll_ctl calls) and a new callback; a terminal nobody
    reads is no longer watched (else its callback ran at every loop turn); ``stop`` ends a wait."""
    loop = asyncio.get_running_loop()
    pty = await PtyProcess.spawn(
        "/bin/sh", ["sh", "-c", "stty -icanon -echo; echo READY; exec cat"], env={}, cwd="/"
    )
    try:
        output = b""
        while b"READY" not in output:
            output += await pty.read() or b""
        watched = 0
        add_reader = loop.add_reader

        def counted(fd: int, callback: Callable[[], object]) -> None:
            nonlocal watched
            watched += 1
            add_reader(fd, callback)

        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(loop, "add_reader", counted)
            for key in b"abcdefghij":
                await pty.write(bytes([key]))
                assert await asyncio.wait_for(pty.read(), 10) == bytes([key])
        assert watched <= 1
        await pty.write(b"unread")  # nobody waits for it: the terminal stops being watched
        await wait_for(lambda: pty._watching is None, 10, "the unread terminal to be left alone")
        unread = b""
        while len(unread) < len(b"unread"):
            unread += await pty.read() or b""
        assert unread == b"unread"
        stop: asyncio.Future[None] = loop.create_future()
        reading = asyncio.create_task(pty.read(stop=stop))
        await asyncio.sleep(0.05)
        stop.set_result(None)
        assert await asyncio.wait_for(reading, 10) is None
    finally:
        pty.close()
        assert pty._watching is None
        await pty.terminate()
