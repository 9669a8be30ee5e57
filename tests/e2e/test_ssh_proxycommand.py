"""ssh and scp through Session Manager with the operator's ``~/.ssh/config`` ProxyCommand.

Real OpenSSH (a throw-away sshd on a high port, tests/support/sshd.py), the real AWS CLI exec'ing
OpenSSM's session-manager-plugin, and ``openssm start-session`` in its place. The config file is
the operator's, byte for byte, plus ``--endpoint-url``.
"""

from __future__ import annotations

import hashlib
import os
import pathlib
import subprocess
from collections.abc import Iterator

import pytest

from tests.conftest import require
from tests.e2e.harness import Agent, Server, running_system
from tests.support.sshd import SshServer, run_sshd, sshd_available

pytestmark = [pytest.mark.slow, pytest.mark.sshd]

AWS_PROXY_COMMAND = (
    'ProxyCommand sh -c "aws ssm start-session --target %h --document-name AWS-StartSSHSession '
    "--parameters 'portNumber=%p'"
)
OPENSSM_PROXY_COMMAND = (
    'ProxyCommand sh -c "openssm start-session --target %h --document-name AWS-StartSSHSession '
    "--parameters 'portNumber=%p'"
)
FILE_SIZE = 6 * 1024 * 1024 + 12345  # several MiB, not a round number


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshServer]:
    require(sshd_available(), "OpenSSH server and client (openssh-server, openssh-client) are not installed")
    with run_sshd(tmp_path_factory.mktemp("sshd")) as server:
        yield server


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Agent]]:
    with running_system(tmp_path_factory.mktemp("ssh-system")) as pair:
        yield pair


def ssh_config(path: pathlib.Path, proxy_command: str, server: Server, sshd: SshServer) -> pathlib.Path:
    """The operator's host block; the extra options only make the test hermetic."""
    path.write_text(
        "\n".join(
            [
                "# SSH over Session Manager",
                "host i-* mi-*",
                f'    {proxy_command} --endpoint-url {server.endpoint}"',
                f"    User {sshd.user}",
                f"    Port {sshd.port}",
                f"    IdentityFile {sshd.client_key}",
                "    IdentitiesOnly yes",
                "    StrictHostKeyChecking no",
                "    UserKnownHostsFile /dev/null",
                "    LogLevel ERROR",
                "    BatchMode yes",
                "",
            ]
        )
    )
    return path


def sha256_of(path: pathlib.Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("proxy_command", [AWS_PROXY_COMMAND, OPENSSM_PROXY_COMMAND], ids=["aws", "openssm"])
def test_ssh_and_scp_through_proxycommand(
    tmp_path: pathlib.Path, sshd: SshServer, system: tuple[Server, Agent], proxy_command: str
) -> None:
    server, agent = system
    assert agent.instance_id
    config = ssh_config(tmp_path / "ssh_config", proxy_command, server, sshd)
    env = server.aws_env()  # PATH starts with the venv: aws, openssm and session-manager-plugin are ours
    host = agent.instance_id

    def run(argv: list[str]) -> subprocess.CompletedProcess[str]:
        out = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120, check=False)
        assert out.returncode == 0, f"{argv[0]} failed ({out.returncode}):\n{out.stdout}\n{out.stderr}"
        return out

    remote = run(["ssh", "-F", str(config), host, "echo answer-$((6*7)) && echo $SSH_CONNECTION"])
    lines = remote.stdout.split("\n")
    assert lines[0] == "answer-42"
    assert lines[1].split()[2:] == ["127.0.0.1", str(sshd.port)]  # the sshd really was reached via the agent

    original = tmp_path / "payload.bin"
    original.write_bytes(os.urandom(FILE_SIZE))
    remote_dir = tmp_path / "remote"
    remote_dir.mkdir()
    run(["scp", "-F", str(config), str(original), f"{host}:{remote_dir}/"])
    uploaded = remote_dir / "payload.bin"
    assert uploaded.stat().st_size == FILE_SIZE
    assert sha256_of(uploaded) == sha256_of(original)

    downloaded = tmp_path / "back.bin"
    run(["scp", "-F", str(config), f"{host}:{uploaded}", str(downloaded)])
    assert sha256_of(downloaded) == sha256_of(original)

    checksum = run(["ssh", "-F", str(config), host, f"sha256sum {uploaded}"]).stdout.split()[0]
    assert checksum == sha256_of(original)

    # Every ssh/scp above was its own Session Manager session, and each one ended.
    ssm = server.client("ssm")
    mine = [
        s
        for s in ssm.describe_sessions(State="History")["Sessions"]
        + ssm.describe_sessions(State="Active")["Sessions"]
        if s["Target"] == host
    ]
    assert len(mine) >= 4
