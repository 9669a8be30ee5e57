"""A client process's first tenth of a second: what runs while what is imported.

Most of the client's start-up is importing (asyncio, the event loop, the protocol, the session
kinds) and most of the rest is waiting: for StartSession, then for the gateway to pair the data
channel with the agent and the agent to start the shell. So the event loop starts as soon as
asyncio and the framing are imported, and while one thread imports the session machinery, the
loop opens each session's data channel (dial, upgrade, open frame): the gateway and the agent do
their part meanwhile, and the prompt is often waiting in the socket when the session starts.
``bench/bench_session_latency.py`` shows the steps.

A channel that cannot be opened here is left to the session, which dials again with its retries.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
import uuid
from collections.abc import Sequence
from types import ModuleType
from typing import Final

from openssm.client.api import StartedSession
from openssm.client.dial import open_channel
from openssm.client.trace import mark

log = logging.getLogger(__name__)

# While the import thread runs, the loop gets the interpreter back this often (default: 5 ms):
# each step of a dial waits for it, and a TLS dial has several.
SWITCH_INTERVAL: Final = 0.0005


class Imports:
    """The session machinery, imported on a thread in two parts: the open frame's module at once
    (while StartSession is answered), the rest once the data channels are open (while the gateway
    pairs them and the agent starts the shell), so that the dial does not wait for the interpreter.
    """

    def __init__(self, *, port: bool = True) -> None:
        """``port``: the session may well be a port session (a document was named), so the port
        machinery is imported too; a shell never needs it, and its prompt would wait for it."""
        self._opened = threading.Event()
        self._wanted = True
        self._port = port
        self._result = asyncio.get_running_loop().run_in_executor(None, self._load)

    def _load(self) -> ModuleType | None:
        import openssm.protocol.messages.data_channel  # noqa: F401  (the open frame's)

        self._opened.wait()
        if not self._wanted:
            return None
        from openssm.client import session

        if self._port:
            from openssm.client import port  # noqa: F401  (session imports it when the handshake asks)
        return session

    def go_on(self) -> None:
        """The channels are open (or will not be): import the rest."""
        self._opened.set()

    def skip(self) -> None:
        """No session will run (StartSession failed): the thread ends without importing the rest."""
        self._wanted = False
        self._opened.set()

    async def session_module(self) -> ModuleType:
        self.go_on()
        module = await self._result
        assert module is not None, "skip() was called"
        return module


async def opened(sessions: Sequence[StartedSession]) -> list[StartedSession]:
    """The sessions with their data channels open (each one that could be)."""
    result = []
    for session in sessions:
        client_id = str(uuid.uuid4())
        try:
            connection = await open_channel(session.stream_url, session.token_value, client_id)
        except (OSError, TimeoutError) as exc:
            log.debug("opening the data channel at start-up failed (the session retries): %s", exc)
            result.append(session)
            continue
        result.append(session._replace(client_id=client_id, opened=connection))
    mark("dial")
    return result


class QuickSwitches:
    """The interpreter's switch interval lowered while the import thread runs."""

    def __enter__(self) -> QuickSwitches:
        self._saved = sys.getswitchinterval()
        sys.setswitchinterval(SWITCH_INTERVAL)
        return self

    def __exit__(self, *exc: object) -> None:
        sys.setswitchinterval(self._saved)
