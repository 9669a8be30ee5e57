"""Our plugin on a real pseudo-terminal (pexpect): cbreak/-echo while the shell runs, job-control keys
forwarded as bytes, and the terminal restored however the session ends."""

from __future__ import annotations

import asyncio
import json
import os
import pathlib
import signal
import sys
import termios
from collections.abc import AsyncIterator

import pexpect
import pytest
from tests.integration.client_fakes import CREDENTIALS_ENV, SESSION_ID, TARGET, TIMEOUT, FakeService

from openssm.protocol.frames import PayloadType

pytestmark = pytest.mark.slow


@pytest.fixture
async def service() -> AsyncIterator[FakeService]:
    fake = await FakeService().start()
    yield fake
    await fake.stop()


def spawn_plugin(service: FakeService, tmp_path: pathlib.Path) -> pexpect.spawn:
    env = dict(os.environ)
    env.update(CREDENTIALS_ENV)
    env.update(
        AWS_SSM_START_SESSION_RESPONSE=json.dumps(service.start_response()),
        AWS_CONFIG_FILE=str(tmp_path / "config"),
        AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "credentials"),
    )
    argv = [
        "-m", "openssm.client.plugin", "AWS_SSM_START_SESSION_RESPONSE", "us-east-1", "StartSession", "",
        json.dumps({"Target": TARGET}), service.endpoint,
    ]  # fmt: skip
    return pexpect.spawn(sys.executable, argv, env=env, dimensions=(40, 120), timeout=TIMEOUT)


def local_flags(child: pexpect.spawn) -> int:
    """The pty's lflag (master and slave share one termios on Linux)."""
    lflag: int = termios.tcgetattr(child.child_fd)[3]
    return lflag


async def wait_for_flags(child: pexpect.spawn, predicate: object, what: str) -> None:
    assert callable(predicate)
    for _ in range(100):
        if predicate(local_flags(child)):
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"terminal never became {what}")


def cbreak_no_echo(lflag: int) -> bool:
    return not lflag & termios.ICANON and not lflag & termios.ECHO and bool(lflag & termios.ISIG)


def cooked(lflag: int) -> bool:
    return bool(lflag & termios.ICANON and lflag & termios.ECHO)


async def start_shell(service: FakeService, child: pexpect.spawn) -> None:
    await service.next_connection()
    assert cooked(local_flags(child))
    await service.send(PayloadType.OUTPUT, b"$ ")
    size = await service.expect(PayloadType.SIZE)
    assert json.loads(bytes(size.payload)) == {"cols": 120, "rows": 40}
    await wait_for_flags(child, cbreak_no_echo, "cbreak -echo")


async def test_raw_mode_keys_as_bytes_and_restore_on_channel_closed(
    service: FakeService, tmp_path: pathlib.Path
) -> None:
    child = spawn_plugin(service, tmp_path)
    try:
        await start_shell(service, child)
        for key in (b"\x03", b"\x1c", b"\x1a", b"x"):  # Ctrl-C, Ctrl-\, Ctrl-Z reach us as signals
            child.send(key)
            assert (await service.expect(PayloadType.OUTPUT)).payload == key
        child.setwinsize(30, 100)
        resized = await service.expect(PayloadType.SIZE)
        assert json.loads(bytes(resized.payload)) == {"cols": 100, "rows": 30}
        await service.close_channel()
        await asyncio.to_thread(child.expect, pexpect.EOF)
        assert f"Exiting session with sessionId: {SESSION_ID}." in child.before.decode()
        assert "x" not in child.before.decode().replace("Exiting", "")  # no local echo
        child.wait()
        assert child.exitstatus == 0
    finally:
        child.close(force=True)


async def test_terminal_restored_when_killed_by_sigterm(service: FakeService, tmp_path: pathlib.Path) -> None:
    child = spawn_plugin(service, tmp_path)
    try:
        await start_shell(service, child)
        child.kill(signal.SIGTERM)
        await wait_for_flags(child, cooked, "cooked again")
        await asyncio.to_thread(child.expect, pexpect.EOF)
        child.wait()
        assert child.exitstatus == 0
    finally:
        child.close(force=True)


async def test_keys_typed_before_the_shell_starts_are_kept(
    service: FakeService, tmp_path: pathlib.Path
) -> None:
    child = spawn_plugin(service, tmp_path)
    try:
        await service.next_connection()
        child.send("typed-ahead\n")  # before the first Output: still in the pty's queue
        await asyncio.sleep(0.3)
        await service.send(PayloadType.OUTPUT, b"$ ")
        await service.expect(PayloadType.SIZE)
        received = b""
        while received != b"typed-ahead\n":
            received += (await service.expect(PayloadType.OUTPUT)).payload
        await service.close_channel()
        await asyncio.to_thread(child.expect, pexpect.EOF)
    finally:
        child.close(force=True)
