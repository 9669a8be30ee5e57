"""InteractiveCommands (PTY, see ``shell``) and NonInteractiveCommands (pipes, handshake, §3.3)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shlex
import signal
from typing import Final

from openssm.agent.privileges import as_account
from openssm.agent.pty_process import programs_get_default_signals
from openssm.agent.session_request import truthy
from openssm.agent.sessions.base import Outcome, SessionFailure, SessionHandler, linux_properties
from openssm.agent.sessions.identity import resolve_run_as, session_environment
from openssm.agent.sessions.shell import InteractiveCommandsHandler
from openssm.protocol.frames import Frame, PayloadType

log = logging.getLogger(__name__)

READ_SIZE: Final = 1024
# Control characters in client input are delivered as signals (stdin is not forwarded).
CONTROL_SIGNALS: Final = {0x03: signal.SIGINT, 0x1C: signal.SIGQUIT, 0x1A: signal.SIGTSTP}


class NonInteractiveCommandsHandler(SessionHandler):
    """Runs the command without a terminal; stdout/stderr stream back, then the exit code."""

    async def run(self) -> Outcome:
        linux = linux_properties(self.request)
        commands = linux.get("commands")
        if isinstance(commands, list):
            commands = " ".join(str(item) for item in commands)
        if not isinstance(commands, str) or not commands.strip():
            raise SessionFailure("document properties.linux.commands is empty")
        try:
            argv = shlex.split(commands)
        except ValueError as exc:
            raise SessionFailure(f"cannot parse command: {exc}") from exc
        separate = truthy(linux.get("separateOutputStream"))
        stdout_prefix = str(linux.get("stdOutSeparatorPrefix") or "") if separate else ""
        stderr_prefix = str(linux.get("stdErrSeparatorPrefix") or "") if separate else ""
        account = resolve_run_as(
            self.request, elevated=truthy(linux.get("runAsElevated")), settings=self.settings
        )

        await self.handshake("NonInteractiveCommands", None)
        try:
            programs_get_default_signals()
            self.process = await asyncio.create_subprocess_exec(
                *as_account(argv, account),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE if separate else asyncio.subprocess.STDOUT,
                env=session_environment(account),
                cwd=account.cwd(),
                start_new_session=True,
            )
        except OSError as exc:
            raise SessionFailure(f"Unable to start command: {exc.strerror or exc}") from exc
        try:
            assert self.process.stdout is not None
            pumps = [self._pump(self.process.stdout, PayloadType.OUTPUT, stdout_prefix)]
            if self.process.stderr is not None:
                pumps.append(self._pump(self.process.stderr, PayloadType.STDERR, stderr_prefix))
            await asyncio.gather(*pumps)
            code = await self.process.wait()
        finally:
            await self._kill()
        if separate:
            await self.channel.send(PayloadType.EXIT_CODE, f"EXIT_CODE: {code}".encode())
        return Outcome()

    async def _pump(self, stream: asyncio.StreamReader, payload_type: int, prefix: str) -> None:
        at_line_start = True
        while data := await stream.read(READ_SIZE):
            if prefix:
                data, at_line_start = _prefix_lines(data, prefix.encode(), at_line_start)
            await self.channel.send_output(data, payload_type)

    async def handle_input(self, frame: Frame) -> None:
        if frame.payload_type != PayloadType.OUTPUT or not hasattr(self, "process"):
            return
        for byte in frame.payload:
            signum = CONTROL_SIGNALS.get(byte)
            if signum is not None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(self.process.pid, signum)

    async def _kill(self) -> None:
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.process.pid, signal.SIGKILL)
            await self.process.wait()


def _prefix_lines(data: bytes, prefix: bytes, at_line_start: bool) -> tuple[bytes, bool]:
    """Put ``prefix`` at the start of every line (the real agent's separator prefixes)."""
    out = bytearray()
    for line in data.splitlines(keepends=True):
        if at_line_start:
            out += prefix
        out += line
        at_line_start = line.endswith(b"\n")
    return bytes(out), at_line_start


__all__ = ["InteractiveCommandsHandler", "NonInteractiveCommandsHandler"]
