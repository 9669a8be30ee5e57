"""Session preferences enforced end to end: a real server (in this process, so its time limits can be
set in seconds), a real OpenSSM agent and the real OpenSSM client.

Idle timeout counts data in either direction; max duration ends even a busy session; run-as takes
the SSMSessionRunAs tag over runAsDefaultUser and is refused clearly for a missing user; the shell
profile runs before the user types. Each ending is visible to the user and in the recording.
"""

from __future__ import annotations

import json
import os
import pathlib
import sys
import time
from collections.abc import Iterator
from typing import Any

import pexpect
import pytest
from tests.e2e.harness import Agent, openssm_argv
from tests.integration.api_harness import REGION, ApiServer, make_user
from tests.support.wait import wait_until

pytestmark = pytest.mark.slow

PROMPT = r"[#$] "
ALLOW_ALL = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "ssm:*", "Resource": "*"}]}


@pytest.fixture
def system(request: pytest.FixtureRequest, tmp_path: pathlib.Path) -> Iterator[tuple[ApiServer, Agent]]:
    overrides: dict[str, Any] = getattr(request, "param", {})
    server = ApiServer(tmp_path / "server", **overrides).start()
    agent = Agent(server, tmp_path / "agent")  # type: ignore[arg-type]  # same client/endpoint surface
    try:
        agent.register()
        agent.start()
        yield server, agent
    finally:
        agent.stop()
        server.stop()


def _env(credentials: tuple[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        AWS_ACCESS_KEY_ID=credentials[0],
        AWS_SECRET_ACCESS_KEY=credentials[1],
        AWS_DEFAULT_REGION=REGION,
        AWS_CONFIG_FILE=os.devnull,
        AWS_SHARED_CREDENTIALS_FILE=os.devnull,
        PATH=f"{pathlib.Path(sys.executable).parent}:{os.environ.get('PATH', '')}",
    )
    return env


def _shell(
    server: ApiServer, agent: Agent, credentials: tuple[str, str] | None = None
) -> tuple[pexpect.spawn, str]:
    assert agent.instance_id
    argv = openssm_argv("start-session", "--target", agent.instance_id, "--endpoint-url", server.endpoint)
    child = pexpect.spawn(
        argv[0],
        argv[1:],
        env=_env(credentials or server.admin_credentials),
        dimensions=(24, 80),
        timeout=30,
        encoding="utf-8",
    )
    child.expect(r"Starting session with SessionId: (\S+)")
    return child, child.match.group(1).strip().rstrip(".")


def _preferences(server: ApiServer, **inputs: Any) -> None:
    content = {"schemaVersion": "1.0", "sessionType": "Standard_Stream", "inputs": inputs}
    server.client().update_document(
        Name="SSM-SessionManagerRunShell", Content=json.dumps(content), DocumentVersion="$LATEST"
    )


def _history(server: ApiServer, session_id: str) -> dict[str, Any]:
    sessions = server.client().describe_sessions(
        State="History", Filters=[{"key": "SessionId", "value": session_id}]
    )
    return dict(sessions["Sessions"][0]) if sessions["Sessions"] else {}


def _ended_event(server: ApiServer, session_id: str) -> dict[str, Any]:
    path = server.config.data_dir / "sessions" / f"{session_id}.jsonl"

    def ended() -> dict[str, Any] | None:
        events = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
        return next((dict(e) for e in events if e["event"] == "session_ended"), None)

    wait_until(lambda: ended() is not None, f"session_ended in {path}", timeout=15)
    event = ended()
    assert event is not None
    return event


@pytest.mark.parametrize("system", [{"idle_timeout_override": 3.0}], indirect=True)
def test_idle_timeout_counts_traffic_both_ways(system: tuple[ApiServer, Agent]) -> None:
    server, agent = system
    child, session_id = _shell(server, agent)
    child.expect(PROMPT)
    # Output alone keeps the session alive (a busy tunnel or a long build is not idle) ...
    started = time.monotonic()
    child.sendline("for i in 1 2 3 4 5 6; do echo tick-$i; sleep 1; done")
    child.expect("tick-6")
    assert time.monotonic() - started > 5
    # ... so does input alone: keystrokes every second, no command run.
    for _ in range(5):
        child.send("x")
        time.sleep(1)  # deliberate: pacing the keystrokes (input, not output, must keep it alive)
    child.send("\x15")  # Ctrl-U: clear the typed line
    # Then silence ends it.
    quiet_from = time.monotonic()
    child.expect("Session idle timeout", timeout=15)
    child.expect(pexpect.EOF)
    assert 2.5 < time.monotonic() - quiet_from < 10
    ended = _ended_event(server, session_id)
    assert ended["status"] == "Terminated" and ended["reason"] == "Session idle timeout"
    assert _history(server, session_id)["Status"] == "Terminated"


@pytest.mark.parametrize("system", [{"max_duration_override": 5.0}], indirect=True)
def test_max_duration_ends_a_busy_session(system: tuple[ApiServer, Agent]) -> None:
    server, agent = system
    child, session_id = _shell(server, agent)
    started = time.monotonic()
    child.expect(PROMPT)
    child.sendline("while true; do echo busy; sleep 0.2; done")
    child.expect("Session reached maximum duration", timeout=20)
    child.expect(pexpect.EOF)
    assert 4.5 < time.monotonic() - started < 12
    ended = _ended_event(server, session_id)
    assert ended["reason"] == "Session reached maximum duration"
    transcript = (server.config.data_dir / "sessions" / f"{session_id}.log").read_text()
    assert "busy" in transcript.splitlines()


def test_run_as_and_shell_profile(system: tuple[ApiServer, Agent]) -> None:
    server, agent = system
    _preferences(
        server,
        runAsEnabled=True,
        runAsDefaultUser="nobody",
        shellProfile={"linux": "export PROFILE_MARK=from-profile", "windows": ""},
    )
    child, session_id = _shell(server, agent)
    child.expect(PROMPT)
    child.sendline("echo user=$(id -un) mark=$PROFILE_MARK")
    child.expect("user=nobody mark=from-profile")
    child.sendline("exit")
    child.expect(pexpect.EOF)
    started = json.loads(
        (server.config.data_dir / "sessions" / f"{session_id}.jsonl").read_text().splitlines()[0]
    )
    assert started["run_as"] == "nobody"

    # The SSMSessionRunAs tag on the IAM user wins over runAsDefaultUser.
    tagged = make_user(server, "tagged", ALLOW_ALL, tags={"SSMSessionRunAs": "daemon"})
    child, _ = _shell(server, agent, tagged)
    child.expect(PROMPT)
    child.sendline("echo user=$(id -un)")
    child.expect("user=daemon")
    child.sendline("exit")
    child.expect(pexpect.EOF)


def test_run_as_a_missing_user_is_refused_clearly(system: tuple[ApiServer, Agent]) -> None:
    server, agent = system
    _preferences(server, runAsEnabled=True, runAsDefaultUser="no-such-user-4711")
    child, session_id = _shell(server, agent)
    child.expect("no-such-user-4711")
    child.expect(pexpect.EOF)
    child.close()
    wait_until(lambda: _history(server, session_id).get("Status") == "Failed", "the session Failed", 15)
