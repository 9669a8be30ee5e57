"""Standard_Stream (login shell) and InteractiveCommands (``sh -c``) on a PTY (§3.1, §3.2)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from typing import Final

from openssm.agent.encryption import kms_key_id
from openssm.agent.pty_process import PtyProcess
from openssm.agent.session_request import truthy
from openssm.agent.sessions.base import Outcome, SessionFailure, SessionHandler, linux_properties
from openssm.agent.sessions.identity import RunAs, resolve_run_as, session_environment
from openssm.protocol.frames import Frame, PayloadType
from openssm.protocol.messages import usable_size

log = logging.getLogger(__name__)

# After the shell exits, output still buffered in the PTY is collected for at most this long.
TAIL_GRACE_SECONDS: Final = 0.2
# Client messages held while a KMS-encrypted shell starts (the handshake accepts input before it).
MAX_EARLY_INPUT: Final = 256


def utf8_complete_length(data: bytes) -> int:
    """Length of the longest prefix that does not end inside a UTF-8 sequence."""
    size = len(data)
    for back in range(1, min(4, size) + 1):
        byte = data[size - back]
        if byte & 0xC0 == 0x80:
            continue  # continuation byte: look further back for the lead byte
        if byte < 0x80:
            return size
        if byte & 0xE0 == 0xC0:
            needed = 2
        elif byte & 0xF0 == 0xE0:
            needed = 3
        elif byte & 0xF8 == 0xF0:
            needed = 4
        else:
            return size  # not UTF-8; pass it through untouched
        return size if back >= needed else size - back
    return size


class PtySessionHandler(SessionHandler):
    """Runs one program on a PTY; the session ends when that program exits."""

    _early_input: list[Frame] | None = None

    def _command(self, account: RunAs) -> tuple[str, list[str]]:
        """Executable and argv (argv[0] included)."""
        shell = account.login_shell
        return shell, [os.path.basename(shell), "-l"]

    def _elevated(self) -> bool:
        return False

    def _profile(self) -> str:
        profile = self.request.inputs.get("shellProfile")
        if isinstance(profile, dict):
            text = profile.get("linux")
            if isinstance(text, str) and text.strip():
                return text
        return ""

    async def run(self) -> Outcome:
        if kms_key_id(self.request):  # shells shake hands only to agree on KMS encryption (§2.4)
            self._early_input = []  # what the client sends before the shell runs
            await self.handshake(self.request.session_type, None)
        account = resolve_run_as(self.request, elevated=self._elevated(), settings=self.settings)
        executable, argv = self._command(account)
        try:
            self.pty = await PtyProcess.spawn(
                executable,
                argv,
                env=session_environment(account),
                cwd=account.cwd(),
                account=account,
            )
        except OSError as exc:
            raise SessionFailure(f"Unable to start command: {exc.strerror or exc}") from exc
        log.info(
            "session %s: %s started as %s (pid %d)",
            self.request.session_id,
            executable,
            account.name,
            self.pty.process.pid,
        )
        try:
            profile = self._profile()
            if profile:
                await self.pty.write(profile.encode() + b"\n")
            self.accept_input()
            early, self._early_input = self._early_input or [], None
            for frame in early:
                await self.handle_input(frame)
            await self._pump_output()
            code = await self.pty.process.wait()
            log.info("session %s: process exited with %s", self.request.session_id, code)
            return Outcome()
        finally:
            await self.pty.terminate()
            self.pty.close()

    async def _pump_output(self) -> None:
        """PTY output → Output messages (≤1024 bytes, never splitting a UTF-8 character). Read in
        this task itself (no task and no ``asyncio.wait`` per chunk: each keystroke's echo is one)."""
        carry = b""
        exited = asyncio.create_task(self.pty.process.wait())
        try:
            while (data := await self.pty.read(stop=exited)) is not None:
                if not data:
                    break
                carry = await self._send_complete(carry + data)
            else:
                # The program exited; collect what it left in the terminal, then stop even if
                # a background child still holds the PTY open.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(TAIL_GRACE_SECONDS):
                        while data := await self.pty.read():
                            carry = await self._send_complete(carry + data)
            if carry:
                await self.channel.send_output(carry)
        finally:
            exited.cancel()

    async def _send_complete(self, data: bytes) -> bytes:
        cut = utf8_complete_length(data)
        if cut:
            await self.channel.send_output(data[:cut])
        return data[cut:]

    async def handle_input(self, frame: Frame) -> None:
        if self._early_input is not None:  # the KMS handshake is done, the shell not yet started
            if len(self._early_input) < MAX_EARLY_INPUT:
                self._early_input.append(frame)
            return
        if frame.payload_type == PayloadType.OUTPUT:
            await self.pty.write(frame.payload)
            self.channel.expect_reply()  # the terminal echoes it: its ack goes with the echo
        elif frame.payload_type == PayloadType.SIZE:
            size = usable_size(frame.payload)
            if size is not None:
                self.pty.resize(size.cols, size.rows)


class StandardStreamHandler(PtySessionHandler):
    """``Standard_Stream``: the user's login shell, with the preference's shell profile typed first."""


class InteractiveCommandsHandler(PtySessionHandler):
    """``InteractiveCommands``: ``properties.linux.commands`` via ``sh -c`` on a PTY."""

    def _elevated(self) -> bool:
        return truthy(linux_properties(self.request).get("runAsElevated"))

    def _profile(self) -> str:
        return ""  # the real agent types the profile only into Standard_Stream shells

    def _command(self, account: RunAs) -> tuple[str, list[str]]:
        commands = linux_properties(self.request).get("commands")
        if isinstance(commands, list):
            commands = "\n".join(str(item) for item in commands)
        if not isinstance(commands, str) or not commands.strip():
            raise SessionFailure("document properties.linux.commands is empty")
        return "/bin/sh", ["sh", "-c", commands]
