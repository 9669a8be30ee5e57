"""``openssm start-session`` as a user runs it: StartSession (profiles, endpoint), the session in the
same process, and AWS CLI-style errors with exit code 255."""

from __future__ import annotations

import asyncio
import os
import pathlib
import sys
from collections.abc import AsyncIterator

import pytest
from tests.integration.client_fakes import (
    SESSION_ID,
    TARGET,
    TIMEOUT,
    FakeService,
    handshake_complete_payload,
    handshake_payload,
)
from tests.support.net import free_port

from openssm.protocol.frames import PayloadType

pytestmark = pytest.mark.slow


@pytest.fixture
async def service() -> AsyncIterator[FakeService]:
    fake = await FakeService().start()
    yield fake
    await fake.stop()


def profile_env(tmp_path: pathlib.Path) -> dict[str, str]:
    """No credentials in the environment: only profile "ops" in a credentials file."""
    credentials = tmp_path / "credentials"
    credentials.write_text("[ops]\naws_access_key_id = AKIDOPS\naws_secret_access_key = secret-ops\n")
    config = tmp_path / "config"
    config.write_text("[profile ops]\nregion = eu-west-1\n")
    env = {key: value for key, value in os.environ.items() if not key.startswith("AWS_")}
    env.update(AWS_SHARED_CREDENTIALS_FILE=str(credentials), AWS_CONFIG_FILE=str(config), HOME=str(tmp_path))
    return env


async def openssm(env: dict[str, str], *args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "openssm", "start-session", *args,
        env=env, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip


async def test_port_forwarding_with_shorthand_parameters_and_a_profile(
    service: FakeService, tmp_path: pathlib.Path
) -> None:
    port = free_port()
    process = await openssm(
        profile_env(tmp_path),
        "--target", TARGET, "--document-name", "AWS-StartPortForwardingSession",
        "--parameters", f"portNumber=80, localPortNumber={port}", "--reason", "debugging",
        "--endpoint-url", service.endpoint, "--profile", "ops",
    )  # fmt: skip
    assert process.stdout is not None and process.stderr is not None
    try:
        await service.next_connection()
        assert service.calls == [
            (
                "StartSession",
                {
                    "Target": TARGET,
                    "DocumentName": "AWS-StartPortForwardingSession",
                    "Parameters": {"portNumber": ["80"], "localPortNumber": [str(port)]},
                    "Reason": "debugging",
                },
            )
        ]
        assert "Credential=AKIDOPS/" in service.authorizations[0]
        assert "/eu-west-1/ssm/aws4_request" in service.authorizations[0]
        properties = {"localPortNumber": str(port), "portNumber": "80", "type": "LocalPortForwarding"}
        await service.send(PayloadType.HANDSHAKE_REQUEST, handshake_payload("Port", properties, "3.3.987.0"))
        await service.expect(PayloadType.HANDSHAKE_RESPONSE)
        await service.send(PayloadType.HANDSHAKE_COMPLETE, handshake_complete_payload())
        banner = f"Port {port} opened for sessionId {SESSION_ID}.\nWaiting for connections...\n".encode()
        seen = b""
        while banner not in seen:
            seen += await asyncio.wait_for(process.stdout.read(1024), TIMEOUT)
        process.send_signal(2)  # Ctrl-C: Flag TerminateSession, then exit 0
        flag = await service.expect(PayloadType.FLAG)
        assert flag.payload == b"\x00\x00\x00\x02"
        assert await asyncio.wait_for(process.wait(), TIMEOUT) == 0
        # The data channel opened at start-up (client.startup) is the one the session used.
        assert len(service.open_frames) == 1 and service.open_frames[0].client_id
        rest = (await process.stdout.read()).decode()
        assert (
            rest
            == f"Terminate signal received, exiting.\n\n\nExiting session with sessionId: {SESSION_ID}.\n\n"
        )
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


@pytest.mark.parametrize(
    ("status", "code", "message"),
    [
        (400, "AccessDeniedException", "User: arn:aws:iam::123456789012:user/bob is not authorized"),
        (400, "TargetNotConnected", f"{TARGET} is not connected."),
        (400, "InvalidDocument", "Document Nope does not exist."),
    ],
)
async def test_api_errors_read_like_the_aws_cli(
    tmp_path: pathlib.Path, status: int, code: str, message: str
) -> None:
    failing = await FakeService(start_error=(status, code, message)).start()
    try:
        process = await openssm(
            profile_env(tmp_path), "--target", TARGET, "--endpoint-url", failing.endpoint, "--profile", "ops"
        )
        _stdout, stderr = await asyncio.wait_for(process.communicate(), TIMEOUT)
        assert process.returncode == 255
        assert stderr.decode() == (
            f"\nAn error occurred ({code}) when calling the StartSession operation: {message}\n"
        )
        assert not failing.open_frames
    finally:
        await failing.stop()


async def test_missing_credentials_are_reported_not_a_traceback(tmp_path: pathlib.Path) -> None:
    env = profile_env(tmp_path)
    process = await openssm(
        env, "--target", TARGET, "--endpoint-url", "http://127.0.0.1:9", "--region", "us-east-1"
    )
    _stdout, stderr = await asyncio.wait_for(process.communicate(), TIMEOUT)
    assert process.returncode == 255
    assert "Unable to locate credentials" in stderr.decode()
    assert "Traceback" not in stderr.decode()
