"""client.startup: the data channel opened while the session machinery is imported."""

from __future__ import annotations

from tests.support.net import free_port

from openssm.client import startup
from openssm.client.api import StartedSession


async def test_a_channel_that_cannot_be_opened_is_left_to_the_session() -> None:
    refused = StartedSession("s-1", "token", f"ws://127.0.0.1:{free_port()}/v1/data-channel/s-1")
    (session,) = await startup.opened([refused])
    assert session == refused and session.opened is None and session.client_id is None


async def test_the_imports_wait_for_the_channels_and_can_be_skipped() -> None:
    imports = startup.Imports()
    module = await imports.session_module()
    assert module.__name__ == "openssm.client.session"
    skipped = startup.Imports()
    skipped.skip()
    assert await skipped._result is None
