"""PtyProcess: controlling terminal, window size, EOF, with both launchers."""

from __future__ import annotations

import os
import signal

import pytest
from tests.conftest import require

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
