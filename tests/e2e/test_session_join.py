"""Live-session join end to end, with real processes: an `openssm server`, an `openssm agent`, the
owner's `openssm start-session` shell, and `openssm join-session` for a watcher and a co-typist (each
an IAM user of its own, with the policies of the README's "Live session join" section).

The watcher sees the last screen, then the output as it comes; the co-typist's command runs in the
owner's shell and both others see it; every party sees who joins and leaves; a missing permission
is AccessDeniedException; the owner's refusal ends the watcher and keeps new joiners out; the
recording has the join lines."""

from __future__ import annotations

import json
import pathlib
import subprocess

import pexpect
import pytest

from tests.e2e.cluster import running_cluster
from tests.e2e.harness import Agent, Server, key_env, openssm_argv, running_system, wait_until
from tests.support.join_policies import TYPIST, WATCHER

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

TIMEOUT = 30


class User:
    """An IAM user's environment for `openssm` commands (no profile: the key in the environment)."""

    def __init__(self, server: Server, key: dict[str, str], tmp_path: pathlib.Path) -> None:
        self.server = server
        self.env = key_env(server, key, tmp_path)

    def argv(self, command: str, *args: str) -> list[str]:
        return openssm_argv(command, *args, "--endpoint-url", self.server.endpoint)

    def spawn(self, command: str, *args: str) -> pexpect.spawn:
        argv = self.argv(command, *args)
        return pexpect.spawn(
            argv[0], argv[1:], env=self.env, dimensions=(24, 80), timeout=TIMEOUT, encoding="utf-8"
        )

    def run(self, command: str, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.argv(command, *args), env=self.env, capture_output=True, text=True, timeout=60, check=False
        )


def _user(server: Server, name: str, policy: dict[str, object] | None, tmp_path: pathlib.Path) -> User:
    iam = server.client("iam")
    iam.create_user(UserName=name)
    if policy is not None:
        iam.put_user_policy(UserName=name, PolicyName="join", PolicyDocument=json.dumps(policy))
    return User(server, iam.create_access_key(UserName=name)["AccessKey"], tmp_path)


def test_watch_type_deny_refuse_and_record(tmp_path: pathlib.Path) -> None:
    with running_system(tmp_path) as (server, agent):
        key, secret = server.admin_credentials
        owner = User(server, {"AccessKeyId": key, "SecretAccessKey": secret}, tmp_path)
        watcher = _user(server, "watcher", WATCHER, tmp_path)
        typist = _user(server, "typist", TYPIST, tmp_path)
        nobody = _user(server, "nobody", None, tmp_path)
        assert agent.instance_id

        shell = owner.spawn("start-session", "--target", agent.instance_id)
        shell.expect(r"Starting session with SessionId: (\S+)")
        session_id = shell.match.group(1).strip().rstrip(".")
        shell.sendline("echo before-$((1+1))")
        shell.expect("before-2")

        # A watcher: the last screen first, then its own join line, which the owner sees too.
        watch = watcher.spawn("join-session", "--session-id", session_id, "--read-only", "--last-screen")
        watch.expect("before-2")
        watch.expect(r"\[openssm\] watcher joined \(read-only\)")
        shell.expect(r"\[openssm\] watcher joined \(read-only\)")
        shell.sendline("echo owner-$((2*3))")
        shell.expect("owner-6")
        watch.expect("owner-6")
        watch.send("echo ignored-$((7*7))\r")  # a watcher's keys never reach the shell

        # A co-typist: what it types runs in the owner's shell, after the owner's input; all see it.
        typing = typist.spawn("join-session", "--session-id", session_id)
        typing.expect(r"\[openssm\] typist joined \(read-write\)")
        shell.expect(r"\[openssm\] typist joined \(read-write\)")
        watch.expect(r"\[openssm\] typist joined \(read-write\)")
        typing.send("echo typist-$((3*5))\r")
        for child in (shell, watch, typing):
            child.expect("typist-15")
        shell.sendline("echo owner-again-$((4*4))")
        for child in (shell, watch, typing):
            child.expect("owner-again-16")
        assert "ignored-49" not in shell.before

        # Permissions: the watcher may not type, nobody may even watch.
        denied = watcher.run("join-session", "--session-id", session_id)
        assert denied.returncode == 255 and "AccessDeniedException" in denied.stderr, denied.stderr
        denied = nobody.run("join-session", "--session-id", session_id, "--read-only")
        assert denied.returncode == 255 and "AccessDeniedException" in denied.stderr, denied.stderr
        assert "openssm:JoinSession" in denied.stderr

        # The co-typist leaves with Ctrl-]: the others see it, the session goes on.
        typing.send("\x1d")
        typing.expect(pexpect.EOF)
        shell.expect(r"\[openssm\] typist left")
        watch.expect(r"\[openssm\] typist left")

        # Only the owner may refuse joins; refusing ends the watcher and keeps new joiners out.
        refused = typist.run("set-session-join-policy", "--session-id", session_id, "--refuse")
        assert refused.returncode == 255 and "AccessDeniedException" in refused.stderr
        done = owner.run("set-session-join-policy", "--session-id", session_id, "--refuse")
        assert done.returncode == 0, done.stderr
        watch.expect("refuses joins")
        watch.expect(pexpect.EOF)
        shell.expect(r"\[openssm\] watcher left")
        again = typist.run("join-session", "--session-id", session_id)
        assert again.returncode == 255 and "refuses joins" in again.stderr, again.stderr

        shell.sendline("echo still-$((5*5))")
        shell.expect("still-25")
        shell.sendline("exit")
        shell.expect(pexpect.EOF)

        cast = server.data_dir / "sessions" / f"{session_id}.cast"
        wait_until(lambda: cast.exists() and "typist left" in cast.read_text(), "the recording")
        text = cast.read_text()
        for line in ("watcher joined (read-only)", "typist joined (read-write)", "typist-15", "watcher left"):
            assert line in text


@pytest.mark.postgres
@pytest.mark.redis
def test_a_joiner_asking_any_node_is_sent_to_the_node_that_carries_the_session(
    tmp_path: pathlib.Path,
) -> None:
    """Two nodes: the agent's control channel and the owner's shell are on A; the watcher asks B,
    whose JoinSession points it at A; the owner's refusal, sent to B, ends the watcher on A (bus)."""
    with running_cluster(tmp_path) as (node_a, node_b):
        agent = Agent(node_a, tmp_path / "agent")
        agent.register()
        agent.start()
        try:
            key, secret = node_a.admin_credentials
            owner = User(node_a, {"AccessKeyId": key, "SecretAccessKey": secret}, tmp_path)
            assert agent.instance_id
            shell = owner.spawn("start-session", "--target", agent.instance_id)
            shell.expect(r"Starting session with SessionId: (\S+)")
            session_id = shell.match.group(1).strip().rstrip(".")
            shell.sendline("echo on-a-$((2+2))")
            shell.expect("on-a-4")

            watcher = _user(node_b, "watcher", WATCHER, tmp_path)
            watch = watcher.spawn("join-session", "--session-id", session_id, "--read-only")
            watch.expect(r"\[openssm\] watcher joined \(read-only\)")
            shell.expect(r"\[openssm\] watcher joined \(read-only\)")
            shell.sendline("echo seen-$((3+3))")
            watch.expect("seen-6")

            owner_via_b = User(node_b, {"AccessKeyId": key, "SecretAccessKey": secret}, tmp_path)
            done = owner_via_b.run("set-session-join-policy", "--session-id", session_id, "--refuse")
            assert done.returncode == 0, done.stderr
            watch.expect("refuses joins")
            watch.expect(pexpect.EOF)
            shell.sendline("exit")
            shell.expect(pexpect.EOF)
        finally:
            agent.stop()
