"""Shell-type sessions (Standard_Stream, InteractiveCommands, NonInteractiveCommands) — §2.6.

Keystrokes go to the agent as Output, the agent's stream goes to stdout untouched, the window
size follows the local terminal, and job-control signals travel as the bytes the tty would send.
"""

from __future__ import annotations

import asyncio
import enum
import signal
from typing import Final

from openssm.client.datachannel import DataChannel
from openssm.client.output import Console
from openssm.client.scope import Scope
from openssm.client.terminal import ResizeWatcher, TerminalMode, read_chunks, terminal_size
from openssm.protocol.frames import Frame, PayloadType
from openssm.protocol.messages import TerminalSize

LEAVE_KEY: Final = b"\x1d"  # Ctrl-]: a read-write joiner leaves (as telnet's escape)


class JoinStyle(enum.Enum):
    """How ``openssm join-session`` takes part in someone else's session."""

    WATCH = "watch"  # read-only: output only
    TYPE = "type"  # read-write: Ctrl-] leaves


# In cbreak mode the tty still turns these keys into signals; the remote shell wants the bytes.
SIGNAL_BYTES: Final = {signal.SIGINT: b"\x03", signal.SIGQUIT: b"\x1c", signal.SIGTSTP: b"\x1a"}


def size_payload(cols: int, rows: int) -> bytes:
    return TerminalSize(cols, rows).encode()


def input_payload(chunk: bytes) -> bytes:
    """A lone newline is sent as carriage return, as a terminal's Enter key would."""
    return b"\r" if chunk == b"\n" else chunk


class ShellSession:
    """Runs once the first Output (or a shell-type handshake) arrives."""

    def __init__(
        self, channel: DataChannel, console: Console, *, stdin_fd: int, joining: JoinStyle | None = None
    ) -> None:
        """The terminal's size is the console's (its fd is the one written to)."""
        self._joining = joining
        self._channel = channel
        self._console = console
        self._stdin_fd = stdin_fd
        self._terminal = TerminalMode(stdin_fd)
        self._resize: ResizeWatcher | None = None
        self._scope = Scope()
        self.finished: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    def ready(self, frame: Frame) -> bool:
        return True

    async def handle(self, frame: Frame) -> None:
        # Every payload type is written as-is, StdErr and the EXIT_CODE text included.
        if frame.payload_type != PayloadType.FLAG:
            self._console.write(frame.payload)
            await self._console.wait_writable()  # the terminal is paused (Ctrl-S) or piped and behind

    async def start(self) -> None:
        if self._joining is JoinStyle.WATCH:
            # Watching: the terminal stays as it is and stdin unread; Ctrl-C (or TERM) leaves.
            for signum in (signal.SIGINT, signal.SIGTERM):
                self._scope.on_signal(signum, self._leave)
            return
        self._terminal.enter()
        cols, rows = terminal_size(self._console.fd)
        await self._channel.send(PayloadType.SIZE, size_payload(cols, rows))
        self._resize = ResizeWatcher(self._console.fd, self._on_resize)
        self._resize.start()
        for signum, data in SIGNAL_BYTES.items():
            self._scope.on_signal(signum, self._send_key, data)
        self._scope.spawn(self._pump_stdin())

    def _leave(self) -> None:
        if not self.finished.done():
            self.finished.set_result(0)

    def _send_key(self, data: bytes) -> None:
        self._scope.spawn(self._channel.send(PayloadType.OUTPUT, data))

    def _on_resize(self, cols: int, rows: int) -> None:
        self._scope.spawn(self._channel.send(PayloadType.SIZE, size_payload(cols, rows)))

    async def _pump_stdin(self) -> None:
        async for chunk in read_chunks(self._stdin_fd):
            if self._joining is JoinStyle.TYPE and LEAVE_KEY in chunk:
                before = chunk[: chunk.index(LEAVE_KEY)]
                if before:
                    await self._channel.send(PayloadType.OUTPUT, input_payload(before))
                self._leave()  # a joiner leaves; the session goes on for everyone else
                return
            await self._channel.send(PayloadType.OUTPUT, input_payload(chunk))
        if not self.finished.done():
            self.finished.set_result(0)  # stdin EOF ends the session, as with the plugin

    async def close(self) -> None:
        self._scope.close()
        if self._resize is not None:
            self._resize.stop()
        self._terminal.restore()
