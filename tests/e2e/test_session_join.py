"""Live-session join end to end, with real processes: an `openssm server`, an `openssm agent`, the
owner's `openssm start-session` shell, and `openssm join-session` for a watcher and a co-typist (each
an IAM user of its own, with the policies of the README's "Live session join" section).

The watcher sees the last screen, then the output as it comes; the co-typist's command runs in the
owner's shell and both others see it; every party sees who joins and leaves; a missing permission
is AccessDeniedException; the owner's refusal ends the watcher and keeps new joiners out; the
recording has the join lines."""

from __future__ import annotations

import contextlib
import hashlib
import json
import pathlib
import signal
import subprocess
from collections.abc import Iterator

import pexpect
import pytest

from tests.e2e.cluster import running_cluster
from tests.e2e.harness import Agent, Server, key_env, openssm_argv, proxied_system, running_system, wait_until
from tests.e2e.test_faults_shell import DATA, LINE, LINES, Terminal, assert_every_line_once
from tests.support.join_policies import TYPIST, WATCHER

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

TIMEOUT = 30
RESTART_LINES = 2000
SIGNALS = {"SIGTERM": signal.SIGTERM, "SIGKILL": signal.SIGKILL}


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


@contextlib.contextmanager
def restartable(tmp_path: pathlib.Path) -> Iterator[tuple[Server, list[str], dict[str, str], User]]:
    """A server to restart (resume window 60 s) with an agent online: (the server, the owner's
    start-session argv, the owner's environment, a co-typist)."""
    server = Server(tmp_path / "server", extra_args=("--session-resume-window", "60")).start()
    agent = Agent(server, tmp_path / "agent")
    try:
        agent.register()
        agent.start()
        assert agent.instance_id
        key, secret = server.admin_credentials
        yield (
            server,
            openssm_argv("start-session", "--target", agent.instance_id, "--endpoint-url", server.endpoint),
            key_env(server, {"AccessKeyId": key, "SecretAccessKey": secret}, tmp_path),
            _user(server, "typist", TYPIST, tmp_path),
        )
    finally:
        agent.stop()
        server.stop()


def _user(server: Server, name: str, policy: dict[str, object] | None, tmp_path: pathlib.Path) -> User:
    iam = server.client("iam")
    iam.create_user(UserName=name)
    if policy is not None:
        iam.put_user_policy(UserName=name, PolicyName="join", PolicyDocument=json.dumps(policy))
    return User(server, iam.create_access_key(UserName=name)["AccessKey"], tmp_path)


def test_watch_type_deny_refuse_and_record(tmp_path: pathlib.Path) -> None:
    with running_system(tmp_path, server_args=("--record-input",)) as (server, agent):
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

        # A second watcher (same user) leaves with Ctrl-C.
        second = watcher.spawn("join-session", "--session-id", session_id, "--read-only")
        second.expect(r"\[openssm\] watcher joined \(read-only\)")
        shell.expect(r"\[openssm\] watcher joined \(read-only\)")
        second.sendintr()
        second.expect(pexpect.EOF)
        shell.expect(r"\[openssm\] watcher left")

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
        events = [json.loads(line) for line in text.splitlines()[1:]]
        typed = "".join(event[2] for event in events if event[1] == "i")
        assert "echo typist-$((3*5))" in typed  # the co-typist's keys, recorded as the owner's are
        assert "ignored" not in typed  # the watcher's never reached the session


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


@pytest.mark.timeout(300)
def test_a_joined_session_survives_agent_data_channel_faults(tmp_path: pathlib.Path) -> None:
    """Once someone joined, both directions are renumbered by the gateway. The agent's data channel
    is then reset twice and black-holed for 10 s (fault proxy) while the shell prints 3,000 numbered
    lines: the agent resends with its own numbers, and the owner and the co-typist must each get
    every line once, in order (hashed against the node's own count); then both still type."""
    with proxied_system(tmp_path) as system:
        server, agent = system.server, system.agent
        assert agent.instance_id
        key, secret = server.admin_credentials
        owner_env = key_env(server, {"AccessKeyId": key, "SecretAccessKey": secret}, tmp_path)
        typist = _user(server, "typist", TYPIST, tmp_path)
        owner = Terminal(
            openssm_argv("start-session", "--target", agent.instance_id, "--endpoint-url", server.endpoint),
            owner_env,
        )
        joiner: Terminal | None = None
        try:
            session_id = owner.wait_for(r"Starting session with SessionId: (\S+)").group(1).rstrip(".")
            owner.child.sendline("stty -echo; echo READY-$((6*7))")
            owner.wait_for("READY-42")
            joiner = Terminal(typist.argv("join-session", "--session-id", session_id), typist.env)
            owner.wait_for(r"\[openssm\] typist joined \(read-write\)")
            joiner.child.send("echo JOINER-$((3*5))\r")
            owner.wait_for("JOINER-15")
            owner.child.sendline(
                f"p=$(mktemp); (for i in $(seq 1 {LINES}); do printf 'L%05dE\\n' $i; sleep 0.002; done) | tee $p;"
                " echo NODE-SHA256 $(sha256sum < $p) NODE-BYTES $(wc -c < $p); rm -f $p"
            )
            proxy = system.agent_path
            for at, fault in ((500, "reset"), (1000, "reset"), (1500, "blackhole")):
                owner.wait_for(f"L{at:05d}E")
                newest = proxy.last_link_id()
                if fault == "reset":
                    assert proxy.reset(DATA) >= 1
                else:
                    assert proxy.blackhole(10.0) >= 1
                    proxy.wait_restored(40)
                    newest = 0
                proxy.wait_moved(1024, timeout=30, match=DATA, after=newest)
            node = owner.wait_for(r"NODE-SHA256 ([0-9a-f]{64}) - NODE-BYTES (\d+)", timeout=120)
            joiner.wait_for("NODE-SHA256", timeout=60)
            for terminal in (owner, joiner):
                numbers = [int(found) for found in LINE.findall(terminal.text)]
                assert numbers == list(range(1, LINES + 1)), "lines lost, duplicated or reordered"
                received = "".join(f"L{number:05d}E\n" for number in numbers).encode()
                assert hashlib.sha256(received).hexdigest() == node.group(1)
            joiner.child.send("echo AFTER-$((7*6))\r")
            owner.wait_for("AFTER-42")
            owner.child.sendline("echo OWNER-$((9*9))")
            joiner.wait_for("OWNER-81")
        finally:
            if joiner is not None:
                joiner.close()
            owner.close()


@pytest.mark.timeout(300)
@pytest.mark.parametrize("how", ["SIGTERM", "SIGKILL"])
def test_a_joined_session_survives_a_server_restart(tmp_path: pathlib.Path, how: str) -> None:
    """A co-typist joined, so the gateway renumbers both directions; then the server is stopped with
    SIGTERM or SIGKILL and started again while the owner's shell prints numbered lines. The owner's
    session goes on with the numbering the store kept: every line once, in order (hashed against the
    node's count), the recording too. The joiner does not resume: it says how to rejoin and exits;
    joining again works, and its keys reach the same shell."""
    with restartable(tmp_path) as (server, owner_argv, owner_env, typist):
        owner = Terminal(owner_argv, owner_env)
        joiners: list[Terminal] = []
        try:
            session_id = owner.wait_for(r"Starting session with SessionId: (\S+)").group(1).rstrip(".")
            owner.child.sendline("stty -echo; echo READY-$((6*7))")
            owner.wait_for("READY-42")
            joiners.append(Terminal(typist.argv("join-session", "--session-id", session_id), typist.env))
            owner.wait_for(r"\[openssm\] typist joined \(read-write\)")
            joiners[0].child.send("echo JOINER-$((3*5))\r")
            owner.wait_for("JOINER-15")
            owner.child.sendline(
                f"p=$(mktemp); (for i in $(seq 1 {RESTART_LINES}); do printf 'L%05dE\\n' $i; sleep 0.004; done)"
                " | tee $p; echo NODE-SHA256 $(sha256sum < $p) NODE-BYTES $(wc -c < $p); rm -f $p"
            )
            owner.wait_for("L00300E")
            assert server.process is not None
            server.process.stop(SIGNALS[how], timeout=30)
            server.start()
            said = joiners[0].wait_for(r"\[openssm\] lost the connection[^\n]*", timeout=120).group(0)
            wait_until(lambda: not joiners[0].child.isalive(), "the joiner to exit", timeout=30)
            node = owner.wait_for(r"NODE-SHA256 ([0-9a-f]{64}) - NODE-BYTES (\d+)", timeout=180)
            print(f"server {how}: the joiner said {said.strip()!r}")
            assert_every_line_once(owner.text, node, RESTART_LINES, f"the owner, across the {how} restart")

            # Joining again: the join line reaches the owner, the joiner's keys the same shell.
            joiners.append(Terminal(typist.argv("join-session", "--session-id", session_id), typist.env))
            owner.wait_for(r"(?s)typist joined \(read-write\).*typist joined \(read-write\)")
            joiners[1].child.send("echo AGAIN-$((6*7+1))\r")
            owner.wait_for("AGAIN-43")
            owner.child.sendline("echo OWNER-$((9*9))")
            joiners[1].wait_for("OWNER-81")
            assert (server.session_record(session_id) or {}).get("Status") == "Connected"
            owner.child.sendline("exit")
            owner.wait_for(r"Exiting session with sessionId")
            transcript = server.data_dir / "sessions" / f"{session_id}.log"
            wait_until(lambda: "OWNER-81" in transcript.read_text(errors="replace"), "the recording")
            recorded = [int(found) for found in LINE.findall(transcript.read_text(errors="replace"))]
            assert recorded == list(range(1, RESTART_LINES + 1)), "the recording lost or repeated lines"
        finally:
            for terminal in joiners:
                terminal.close()
            owner.close()


@pytest.mark.timeout(300)
def test_joining_a_session_first_after_a_server_restart(tmp_path: pathlib.Path) -> None:
    """Nobody had joined either of two shells when the server restarted. After a SIGTERM the
    gateway kept each shell's own numbering, so the first join works and the co-typist's keys run in
    the owner's shell. After a SIGKILL it could not: joining says so clearly, the owner goes on."""
    with restartable(tmp_path) as (server, argv, owner_env, typist):
        shells: list[Terminal] = []
        ids: list[str] = []
        try:
            for number in range(2):
                shells.append(Terminal(argv, owner_env))
                ids.append(
                    shells[-1].wait_for(r"Starting session with SessionId: (\S+)").group(1).rstrip(".")
                )
                shells[-1].child.sendline(f"stty -echo; echo READY-$(({number}+40))")
                shells[-1].wait_for(f"READY-{number + 40}")
            assert server.process is not None
            for sig, shell, marker in ((signal.SIGTERM, shells[0], "A"), (signal.SIGKILL, shells[1], "B")):
                server.process.stop(sig, timeout=30)
                server.start()
                shell.child.sendline(f"echo BACK-{marker}-$((2+3))")
                shell.wait_for(f"BACK-{marker}-5", timeout=120)
                if sig is signal.SIGTERM:
                    shells.append(Terminal(typist.argv("join-session", "--session-id", ids[0]), typist.env))
                    shell.wait_for(r"\[openssm\] typist joined \(read-write\)")
                    shells[-1].child.send("echo TYPED-$((6*7))\r")
                    shell.wait_for("TYPED-42")
                    shells[-1].child.send("\x1d")
                    shell.wait_for(r"\[openssm\] typist left")
            refused = typist.run("join-session", "--session-id", ids[1])
            said = refused.stdout + refused.stderr  # (the gateway refuses it as the channel opens)
            assert "cannot be joined: its server was killed" in said, said
            shells[1].child.sendline("echo STILL-$((5*5))")
            shells[1].wait_for("STILL-25")
            assert (server.session_record(ids[1]) or {}).get("Status") == "Connected"
        finally:
            for terminal in shells:
                terminal.close()
