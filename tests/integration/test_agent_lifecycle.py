"""The agent as a process: register, RSA-signed credentials, health pings, reconnects, shutdown."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import json
import os
import pathlib
import signal
import stat
import sys
import time
from collections.abc import Callable

import pytest
from tests.support.wait import wait_for
from tests.unit.agent.fake_mgs import (
    CREDENTIALS,
    FakeMgs,
    Recorded,
    interactive_shell,
    running_agent,
    session_content,
)

from openssm.auth import sigv4
from openssm.clock import SYSTEM_CLOCK, Clock, ManualClock

ACTIVATION_ID = "0a1b2c3d-4e5f-6071-8293-a4b5c6d7e8f9"
ACTIVATION_CODE = "EXAMPLEactivationCODE0123"
MANAGED_ID = "mi-0123456789abcdef0"
TEMP_KEY, TEMP_SECRET, TEMP_TOKEN = "ASIAEXAMPLETEMP", "temporary/secret/EXAMPLE", "session-token-EXAMPLE"


class RegistrationService:
    """Answers RegisterManagedInstance and RequestManagedInstanceRoleToken, checking both."""

    def __init__(
        self, fake: FakeMgs, lifetime: float = 3600.0, rotate_once: bool = False, clock: Clock = SYSTEM_CLOCK
    ) -> None:
        self.lifetime = lifetime
        self.clock = clock
        self.rotate_once = rotate_once
        self.rotations = 0
        self.public_key_der: bytes | None = None
        self.fingerprint: str | None = None
        self.token_requests = 0
        fake.api_answers["AmazonSSM.RegisterManagedInstance"] = self.register
        fake.api_answers["AmazonSSM.RequestManagedInstanceRoleToken"] = self.role_token
        fake.api_answers["AmazonSSM.UpdateInstanceInformation"] = self.instance_information
        fake.api_answers["AmazonSSM.UpdateManagedInstancePublicKey"] = self.new_public_key

    def register(self, request: Recorded) -> dict[str, object]:
        assert request.header("Authorization") is None and request.header("X-Amz-Date") is None
        body = request.json()
        assert list(body) == ["ActivationCode", "ActivationId", "Fingerprint", "PublicKey", "PublicKeyType"]
        assert body["ActivationCode"] == ACTIVATION_CODE and body["ActivationId"] == ACTIVATION_ID
        assert body["PublicKeyType"] == "Rsa" and len(body["PublicKey"]) == 392
        self.public_key_der = base64.b64decode(body["PublicKey"])
        self.fingerprint = body["Fingerprint"]
        return {"InstanceId": MANAGED_ID}

    def role_token(self, request: Recorded) -> dict[str, object]:
        assert self.public_key_der is not None
        http_request = request.http_request()
        parsed = sigv4.parse_request(http_request)
        assert parsed.access_key_id == MANAGED_ID and parsed.service == "ssm"
        assert parsed.signed_headers == ("content-type", "host", "x-amz-date", "x-amz-target")
        sigv4.verify_rsa(http_request, parsed, self.public_key_der)
        assert request.json() == {"Fingerprint": self.fingerprint}
        self.token_requests += 1
        rotate, self.rotate_once = self.rotate_once, False
        return {
            "AccessKeyId": TEMP_KEY,
            "SecretAccessKey": TEMP_SECRET,
            "SessionToken": TEMP_TOKEN,
            "TokenExpirationDate": self.clock.now().timestamp() + self.lifetime,
            "UpdateKeyPair": rotate,
        }

    def new_public_key(self, request: Recorded) -> dict[str, object]:
        assert self.public_key_der is not None
        http_request = request.http_request()
        parsed = sigv4.parse_request(http_request)
        assert parsed.access_key_id == MANAGED_ID
        sigv4.verify_rsa(http_request, parsed, self.public_key_der)  # signed with the old key
        body = request.json()
        assert body["NewPublicKeyType"] == "Rsa"
        self.public_key_der = base64.b64decode(body["NewPublicKey"])
        self.rotations += 1
        return {}

    def instance_information(self, request: Recorded) -> dict[str, object]:
        parsed = sigv4.parse_request(request.http_request())
        assert parsed.access_key_id == TEMP_KEY and parsed.security_token == TEMP_TOKEN
        sigv4.verify_hmac(request.http_request(), parsed, TEMP_SECRET)
        return {}


async def run_cli(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "openssm",
        "agent",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def until(predicate: Callable[[], bool], timeout: float = 20.0) -> None:
    await wait_for(predicate, timeout, "the condition never held")


@pytest.mark.slow
async def test_register_then_run_as_a_process(tmp_path: pathlib.Path) -> None:
    fake = FakeMgs()
    await fake.start()
    service = RegistrationService(fake)
    state = tmp_path / "state"
    try:
        code, out, err = await run_cli(
            "register",
            "--endpoint",
            fake.endpoint,
            "--code",
            ACTIVATION_CODE,
            "--id",
            ACTIVATION_ID,
            "--region",
            "us-east-1",
            "--state-dir",
            str(state),
        )
        assert code == 0, err
        assert out.strip() == MANAGED_ID
        assert stat.S_IMODE(state.stat().st_mode) == 0o700
        for name in ("registration.json", "private-key.pem"):
            assert stat.S_IMODE((state / name).stat().st_mode) == 0o600
        saved = json.loads((state / "registration.json").read_text())
        assert saved["instance_id"] == MANAGED_ID and saved["fingerprint"] == service.fingerprint
        assert ACTIVATION_CODE not in (state / "registration.json").read_text()

        env = {**os.environ, "OPENSSM_AGENT_HEARTBEAT_SECONDS": "0.5"}
        env.pop("AWS_ACCESS_KEY_ID", None)
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "openssm",
            "agent",
            "run",
            "--state-dir",
            str(state),
            stderr=asyncio.subprocess.PIPE,
            env=env,
        )
        try:
            await asyncio.wait_for(fake.control_connected.wait(), 30)
            await until(lambda: len(fake.requests_to("/", "AmazonSSM.UpdateInstanceInformation")) >= 3)
        finally:
            process.send_signal(signal.SIGTERM)
            _out, log = await asyncio.wait_for(process.communicate(), 15)
        assert process.returncode == 0, log.decode()
    finally:
        await fake.close()

    assert service.token_requests >= 1
    pings = fake.requests_to("/", "AmazonSSM.UpdateInstanceInformation")
    assert list(pings[0].json()) == ["AgentName", "AgentVersion", "InstanceId", "PlatformType"]
    full = pings[1].json()
    assert full["AgentStatus"] == "Active" and full["InstanceId"] == MANAGED_ID
    assert full["PlatformName"] and full["PlatformVersion"] is not None and full["ComputerName"]
    assert (
        pings[1].signed_headers()
        == "content-length;content-type;host;x-amz-date;x-amz-security-token;x-amz-target"
    )
    for prefix, signed in (
        (
            "/v1/control-channel/",
            {
                "POST": "content-type;host;x-amz-date;x-amz-security-token",
                "GET": "host;x-amz-date;x-amz-security-token",
            },
        ),
    ):
        for request in fake.requests_to(prefix):
            assert request.signed_headers() == signed[request.method]
            request.verify(TEMP_SECRET)
    assert fake.control_open is not None and fake.control_open["TokenValue"]
    assert TEMP_SECRET not in log.decode() and ACTIVATION_CODE not in log.decode()


async def runs_a_session(fake: FakeMgs, session_id: str, word: str) -> None:
    """``fake`` sends the agent a session that echoes ``word``; its data channel comes to ``fake``."""
    props = {"linux": {"commands": f"echo {word}", "runAsElevated": True}}
    await fake.send_control(
        interactive_shell(session_id, session_content(session_id, "InteractiveCommands", props))
    )
    client = await fake.next_client()
    await client.wait_for(lambda: client.output_bytes == f"{word}\r\n".encode(), "the session's output")


async def test_control_channel_reconnects_after_the_service_drops_it() -> None:
    fake = FakeMgs()
    await fake.start()
    try:
        async with running_agent(fake) as agent:
            await asyncio.wait_for(fake.control_connected.wait(), 10)
            await fake.drop_control()
            await until(lambda: agent.control.connections >= 2, 10)
            assert len([r for r in fake.requests_to("/v1/control-channel/") if r.method == "POST"]) == 2
            await runs_a_session(fake, "tester-0123456789abcdef2", "again")  # the new channel serves them
    finally:
        await fake.close()


async def test_a_session_opens_on_its_control_channels_node_after_the_agents_calls_failed_over() -> None:
    """A scale-out server's node, A, holds the control channel; one unanswered call has moved the
    agent's calls to node B. A session A delivers is served by A: its data channel must go to A
    (B would refuse it with 503 while A lives, and the session would never open)."""
    node_a, node_b = FakeMgs(), FakeMgs()
    await node_a.start()
    await node_b.start()
    try:
        async with running_agent(node_a, failover=(node_b.endpoint,)) as agent:
            await asyncio.wait_for(node_a.control_connected.wait(), 10)
            agent._unreachable(node_a.endpoint)  # what an unanswered API call to A does
            assert agent.mgs.endpoint == node_b.endpoint
            await runs_a_session(node_a, "tester-0123456789abcdef3", "served")
            assert not node_b.requests_to("/v1/data-channel/")
    finally:
        await node_a.close()
        await node_b.close()


async def test_stop_is_prompt_while_the_service_is_unreachable() -> None:
    fake = FakeMgs()
    await fake.start()
    await fake.close()  # nothing listens there any more
    started = time.monotonic()
    async with running_agent(fake, reconnect_initial_seconds=0.2):
        await asyncio.sleep(1.0)  # deliberate: a while of failing retries (0.2 s apart), then the stop
    assert time.monotonic() - started < 4.0


async def test_task_complete_is_retried_until_acknowledged() -> None:
    fake = FakeMgs()
    await fake.start()
    fake.acknowledge_tasks = False
    sid = "tester-0123456789abcdef3"
    try:
        async with running_agent(fake, task_complete_retry_seconds=0.2):
            props = {"linux": {"commands": "true", "runAsElevated": True}}
            await fake.send_control(
                interactive_shell(sid, session_content(sid, "InteractiveCommands", props))
            )
            await until(lambda: len(fake.task_completes) >= 3, 10)
            await asyncio.sleep(0.5)  # a negative check: over two retry periods, and no fourth
    finally:
        await fake.close()
    assert len(fake.task_completes) == 3
    assert len({f.message_id for f in fake.task_completes}) == 1
    assert all(f.json()["TaskId"] == sid for f in fake.task_completes)
    _ = CREDENTIALS


async def test_role_credentials_are_refreshed_at_the_configured_fraction(tmp_path: pathlib.Path) -> None:
    """By the one clock, a ManualClock: nothing sleeps, so a loaded machine cannot make it early or late."""

    from openssm.agent.config import AgentSettings, load_registration
    from openssm.agent.credentials import RoleCredentials
    from openssm.agent.registration import ServerAddress, register
    from openssm.transport.http_exchange import HttpClient

    fake = FakeMgs()
    await fake.start()
    clock = ManualClock(dt.datetime.now(dt.UTC))
    service = RegistrationService(fake, lifetime=3600.0, clock=clock)
    try:
        await register(
            ServerAddress(fake.endpoint, "us-east-1"),
            code=ACTIVATION_CODE,
            activation_id=ACTIVATION_ID,
            state_dir=tmp_path,
        )
        registration, key_pem = load_registration(tmp_path)
        settings = AgentSettings.from_mapping({"credentials_refresh_fraction": 0.5})
        http = HttpClient(timeout=15.0)
        credentials = RoleCredentials(http, registration, key_pem, settings, clock=clock)
        first = await credentials.current()
        assert first.access_key_id == TEMP_KEY and first.session_token == TEMP_TOKEN
        assert credentials.seconds_until_refresh() == pytest.approx(1800.0, abs=0.01)
        refresher = asyncio.create_task(credentials.run_refresh_loop())
        try:
            for _ in range(2):  # each refresh comes at half of the new credentials' lifetime
                fetched = service.token_requests
                clock.advance(1799.0)
                credentials.wake()
                for _ in range(20):  # the loop looks (no I/O on that path) and waits on
                    await asyncio.sleep(0)
                assert service.token_requests == fetched, "refreshed before its time"
                assert credentials.seconds_until_refresh() == pytest.approx(1.0, abs=0.01)
                clock.advance(1.0)
                credentials.wake()
                await until(lambda: service.token_requests == fetched + 1, 30)  # noqa: B023
                await until(lambda: credentials.fetches == service.token_requests, 30)
                assert credentials.seconds_until_refresh() == pytest.approx(1800.0, abs=0.01)
        finally:
            refresher.cancel()
            await asyncio.gather(refresher, return_exceptions=True)
    finally:
        await fake.close()
    assert service.token_requests == 3  # the first fetch and two refreshes, no more


async def test_key_pair_is_rotated_when_the_service_asks(tmp_path: pathlib.Path) -> None:

    from openssm.agent.config import AgentSettings, load_registration
    from openssm.agent.credentials import RoleCredentials
    from openssm.agent.registration import ServerAddress, register
    from openssm.transport.http_exchange import HttpClient

    fake = FakeMgs()
    await fake.start()
    service = RegistrationService(fake, rotate_once=True)
    try:
        await register(
            ServerAddress(fake.endpoint, "us-east-1"),
            code=ACTIVATION_CODE,
            activation_id=ACTIVATION_ID,
            state_dir=tmp_path,
        )
        registration, old_pem = load_registration(tmp_path)
        http = HttpClient(timeout=15.0)
        credentials = RoleCredentials(http, registration, old_pem, AgentSettings(), state_dir=tmp_path)
        await credentials.refresh()  # answers UpdateKeyPair: true → rotation
        await credentials.refresh()  # must verify with the new key
    finally:
        await fake.close()
    assert service.rotations == 1 and service.token_requests == 2
    _registration, new_pem = load_registration(tmp_path)
    assert new_pem != old_pem
    assert stat.S_IMODE((tmp_path / "private-key.pem").stat().st_mode) == 0o600
