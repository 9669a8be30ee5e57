"""Shells of a root agent: the default account without a run-as user, root only when named.

Runs a real agent against the fake service and a real login shell on a PTY; the default account is
created for real, under a name of this test's own (removed afterwards), never the machine's
``ssm-user``.
"""

from __future__ import annotations

import pathlib
import pwd
import re
from collections.abc import Iterator

import pytest
from tests.conftest import throwaway_account_name
from tests.unit.agent.fake_mgs import agent_session, session_content, task_result

from openssm.agent.default_user import SUDOERS_FILE
from openssm.protocol.frames import PayloadType

SID = "tester-0123456789abcdef0"


@pytest.fixture
def account_name() -> Iterator[str]:
    with throwaway_account_name("ossmi") as name:
        yield name


def _sudoers_state() -> str | None:
    try:
        return SUDOERS_FILE.read_text()
    except FileNotFoundError:
        return None


async def _whoami(content: dict[str, object], **settings: object) -> tuple[str, dict[str, object]]:
    async with agent_session(content, **settings) as (fake, client):
        await client.send_input(PayloadType.OUTPUT, b"echo who=$(id -un) home=$HOME sudo=$(id -Gn)\r")
        await client.wait_for(lambda: re.search(rb"who=[a-z]", client.output_bytes) is not None, "id -un")
        await client.send_input(PayloadType.OUTPUT, b"exit\r")
        result = await task_result(fake)
    match = re.search(rb"who=(\S+) home=(\S+)", client.output_bytes)
    assert match is not None, client.output_bytes
    return f"{match.group(1).decode()} {match.group(2).decode()}", result


async def test_without_run_as_a_root_agent_runs_the_shell_as_the_default_account(account_name: str) -> None:
    sudoers_before = _sudoers_state()
    with pytest.raises(KeyError):
        pwd.getpwnam(account_name)
    who, result = await _whoami(session_content(SID, "Standard_Stream", {}), ssm_user=account_name)
    entry = pwd.getpwnam(account_name)  # created by the agent for this session
    assert who == f"{account_name} {entry.pw_dir}"
    assert pathlib.Path(entry.pw_dir).is_dir()
    assert result["FinalTaskStatus"] == "Success"
    # Sudo is off by default: the agent wrote no sudoers rule.
    assert _sudoers_state() == sudoers_before
    # A second session reuses the account.
    again, _ = await _whoami(session_content(SID, "Standard_Stream", {}), ssm_user=account_name)
    assert again == who and pwd.getpwnam(account_name).pw_uid == entry.pw_uid


async def test_run_as_root_by_name_runs_the_shell_as_root(account_name: str) -> None:
    content = session_content(SID, "Standard_Stream", {}, run_as_user="root")
    who, result = await _whoami(content, ssm_user=account_name)
    assert who.split()[0] == "root" and result["FinalTaskStatus"] == "Success"
    with pytest.raises(KeyError):  # the default account was not needed
        pwd.getpwnam(account_name)
