"""The real AWS CLI (``.venv/bin/aws``) runs ``aws ssm start-session`` against a fake SSM endpoint and
execs OpenSSM's ``session-manager-plugin`` from PATH, which connects to the fake data channel."""

from __future__ import annotations

import asyncio
import json
import os
import pathlib
import sys

import pytest
from tests.conftest import require
from tests.integration.client_fakes import CREDENTIALS_ENV, SESSION_ID, TARGET, TIMEOUT, FakeService

from openssm.protocol.frames import PayloadType
from openssm.protocol.versions import CLIENT_VERSION

pytestmark = pytest.mark.slow
AWS = pathlib.Path(sys.executable).parent / "aws"


def plugin_on_path(tmp_path: pathlib.Path) -> dict[str, str]:
    """An environment whose PATH starts with a directory holding our session-manager-plugin."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    plugin = bin_dir / "session-manager-plugin"
    plugin.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m openssm.client.plugin "$@"\n')
    plugin.chmod(0o755)
    env = {key: value for key, value in os.environ.items() if not key.startswith("AWS_")}
    env.update(CREDENTIALS_ENV)
    env.update(
        PATH=f"{bin_dir}{os.pathsep}{env.get('PATH', '')}",
        HOME=str(tmp_path),
        AWS_CONFIG_FILE=str(tmp_path / "no-config"),
        AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "no-credentials"),
    )
    return env


async def aws_start_session(service: FakeService, tmp_path: pathlib.Path) -> asyncio.subprocess.Process:
    require(
        AWS.exists(), "the aws CLI is not installed in this environment (make install puts it in the venv)"
    )
    return await asyncio.create_subprocess_exec(
        str(AWS), "ssm", "start-session", "--target", TARGET, "--endpoint-url", service.endpoint,
        "--region", "us-east-1",
        env=plugin_on_path(tmp_path),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip


async def test_aws_cli_execs_our_plugin_for_a_shell_session(tmp_path: pathlib.Path) -> None:
    service = await FakeService().start()
    aws = await aws_start_session(service, tmp_path)
    assert aws.stdin is not None and aws.stdout is not None and aws.stderr is not None
    try:
        await service.next_connection()
        # The CLI's StartSession, then the plugin's open frame with the token it handed over.
        assert service.calls == [("StartSession", {"Target": TARGET})]
        opened = service.open_frames[0]
        assert opened.token_value == service.tokens[0]
        assert opened.client_version == CLIENT_VERSION
        assert service.paths == [f"/v1/data-channel/{SESSION_ID}?role=publish_subscribe"]

        await service.send(PayloadType.OUTPUT, b"$ ")
        size = await service.expect(PayloadType.SIZE)
        assert json.loads(bytes(size.payload)) == {"cols": 300, "rows": 100}  # stdout is not a terminal
        aws.stdin.write(b"echo hi\n")
        await aws.stdin.drain()
        typed = await service.expect(PayloadType.OUTPUT)
        assert typed.payload == b"echo hi\n"
        await service.send(PayloadType.OUTPUT, b"hi\r\n$ ")
        await service.close_channel("Session ended by the test.")
        code = await asyncio.wait_for(aws.wait(), TIMEOUT)
        stdout = (await aws.stdout.read()).decode()
        stderr = (await aws.stderr.read()).decode()
        assert code == 0, stderr
        assert stdout == (
            f"\nStarting session with SessionId: {SESSION_ID}\n$ hi\r\n$ "
            f"\n\nSessionId: {SESSION_ID} : Session ended by the test.\n\n"
        )
    finally:
        if aws.returncode is None:
            aws.kill()
            await aws.wait()
        await service.stop()


async def test_aws_cli_reports_start_session_errors_without_running_the_plugin(
    tmp_path: pathlib.Path,
) -> None:
    service = await FakeService(
        start_error=(400, "TargetNotConnected", f"{TARGET} is not connected.")
    ).start()
    try:
        aws = await aws_start_session(service, tmp_path)
        _stdout, stderr = await asyncio.wait_for(aws.communicate(), TIMEOUT)
        assert aws.returncode == 255
        assert "TargetNotConnected" in stderr.decode()
        assert not service.open_frames
    finally:
        await service.stop()
