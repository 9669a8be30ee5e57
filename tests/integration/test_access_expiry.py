"""A just-in-time grant ends on time by the server's one clock, with no request coming in: the whole
flow with real programs (an `openssm agent`, `openssm access` and `openssm start-session` processes)
against a server whose clock is a ManualClock. The test moves the clock past the grant's end; the
server's expiry task deletes the grant and ends the requester's live shell through TerminateSession's
path, and the next StartSession is refused. Nothing waits for the grant's real duration."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import pathlib
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pexpect
import pytest
from aiohttp import web
from tests.e2e.harness import Agent
from tests.integration.api_harness import ACCOUNT, REGION, ApiServer, make_user
from tests.support.access_policies import APPROVER, REQUESTER

from openssm.clock import ManualClock
from openssm.server.composition import compose
from openssm.server.process import close_services, create_services
from openssm.services import AccessSettings
from openssm.store import access_requests, sessions

pytestmark = pytest.mark.slow

GRANT_SECONDS = 8  # the clock is moved past it in steps under the node's 10 s liveness window


class ClockedServer(ApiServer):
    """The composed server (API, gateway, console, access tasks) on a clock the test moves. Signatures
    are made by the real clock, so the server does not check their age (clock_skew_seconds=0)."""

    def __init__(self, data_dir: pathlib.Path, clock: ManualClock) -> None:
        super().__init__(data_dir, clock_skew_seconds=0, access=AccessSettings(poll_seconds=0.1))
        self.clock = clock

    def _run(self) -> None:
        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            services = await create_services(self.config)
            services.clock = self.clock
            runner = web.AppRunner(compose(services).app, access_log=None, shutdown_timeout=5)
            await runner.setup()
            try:
                await web.TCPSite(runner, "127.0.0.1", self.port).start()
                await self._stop.wait()
            finally:
                await runner.cleanup()
                await close_services(services)

        try:
            asyncio.run(main())
        except BaseException as exc:
            self._error = exc


def user_env(server: ApiServer, credentials: tuple[str, str], tmp_path: pathlib.Path) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("AWS_")}
    env.update(
        AWS_ACCESS_KEY_ID=credentials[0],
        AWS_SECRET_ACCESS_KEY=credentials[1],
        AWS_DEFAULT_REGION=REGION,
        AWS_CONFIG_FILE=str(tmp_path / "no-config"),
        AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "no-credentials"),
        AWS_ENDPOINT_URL=server.endpoint,
        PATH=f"{pathlib.Path(sys.executable).parent}:{os.environ.get('PATH', '')}",
    )
    return env


def openssm(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "openssm", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture
def system(tmp_path: pathlib.Path) -> Iterator[tuple[ClockedServer, Agent]]:
    clock = ManualClock(dt.datetime.now(dt.UTC))
    server = ClockedServer(tmp_path / "server", clock).start()
    agent = Agent(server, tmp_path / "agent")  # type: ignore[arg-type]  # duck-typed: client/endpoint/region
    try:
        agent.register()
        agent.start()
        yield server, agent
    finally:
        agent.stop()
        server.stop()


def test_the_grant_and_the_live_session_end_when_the_clock_passes_the_grant_s_end(
    system: tuple[ClockedServer, Agent], tmp_path: pathlib.Path
) -> None:
    server, agent = system
    target = agent.instance_id
    assert target is not None
    alice = user_env(server, make_user(server, "alice", REQUESTER), tmp_path)
    bob = user_env(server, make_user(server, "bob", APPROVER), tmp_path)

    requested = openssm(alice, "access", "request", "--target", target, "--duration", f"{GRANT_SECONDS}s",
                        "--reason", "rotate the logs")  # fmt: skip
    assert requested.returncode == 0, requested.stderr
    request_id = json.loads(requested.stdout)["AccessRequest"]["AccessRequestId"]
    approved = openssm(bob, "access", "approve", request_id)
    assert approved.returncode == 0, approved.stderr
    expires = dt.datetime.fromisoformat(json.loads(approved.stdout)["AccessRequest"]["ExpirationDate"])
    assert abs((expires - server.clock.now()).total_seconds() - GRANT_SECONDS) < 0.01  # by the server's clock

    shell = pexpect.spawn(
        sys.executable, ["-m", "openssm", "start-session", "--target", target],
        env=alice, timeout=30, encoding="utf-8", dimensions=(24, 100),
    )  # fmt: skip
    try:
        shell.expect(r"Starting session with SessionId: (alice-[0-9a-f]{17})")
        session_id = shell.match.group(1)
        shell.sendline("echo granted-$((40+2))")
        shell.expect("granted-42")

        server.clock.advance(GRANT_SECONDS - 1)  # not yet
        shell.sendline("echo still-$((1+1))")
        shell.expect("still-2")

        server.clock.advance(2)  # past the grant's end: nothing else happens but the clock moving
        shell.expect(f"Access request {request_id} expired", timeout=20)
        shell.expect(pexpect.EOF, timeout=20)
    finally:
        shell.close(force=True)

    def ended(engine: Any) -> Any:
        async def work() -> Any:
            return await sessions.get(engine, session_id), await access_requests.get(engine, request_id)

        return work()

    session, request = server.db(ended)
    assert (
        session.status == "Terminated"
        and session.termination_reason == f"Access request {request_id} expired"
    )
    assert request.status == "Expired" and request.ended_at >= request.expires_at
    iam = server.client("iam")
    assert f"openssm-access-{request_id}" not in iam.list_user_policies(UserName="alice")["PolicyNames"]

    again = openssm(alice, "start-session", "--target", target)
    assert again.returncode == 255 and "AccessDeniedException" in again.stderr
    mine = openssm(alice, "access", "list", "--requester", "alice", "--output", "text")
    assert mine.returncode == 0, mine.stderr
    assert mine.stdout.split("\t")[:2] == [request_id, "Expired"]

    # The server did it by itself, and says so in the audit trail.
    events = server.client("cloudtrail").lookup_events(MaxResults=50)["Events"]
    names = [
        e["EventName"]
        for e in events
        if (json.loads(e["CloudTrailEvent"]).get("serviceEventDetails") or {}).get("accessRequestId")
        == request_id
    ]
    assert names == ["TerminateSession", "DeleteUserPolicy", "ExpireAccessRequest", "PutUserPolicy"]
    assert session.owner_arn == f"arn:aws:iam::{ACCOUNT}:user/alice"
