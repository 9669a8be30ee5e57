"""PtyProcess: controlling terminal, window size, EOF, with both launchers."""

from __future__ import annotations

import os

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
