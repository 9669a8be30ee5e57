"""The default session account: created for real (under a name of this test's own, removed after),
sudo only when asked, and root only by name."""

from __future__ import annotations

import os
import pathlib
import pwd
import secrets
import stat
import subprocess
from collections.abc import Iterator

import pytest
from click.testing import CliRunner
from tests.conftest import require, throwaway_account_name

from openssm.agent import default_user
from openssm.agent.cli import agent_group
from openssm.agent.config import AgentSettings, StateError
from openssm.agent.session_request import SessionRequest
from openssm.agent.sessions.base import SessionFailure
from openssm.agent.sessions.identity import resolve_run_as


@pytest.fixture
def account_name() -> Iterator[str]:
    with throwaway_account_name("ossmu") as name:
        yield name
    with pytest.raises(KeyError):
        pwd.getpwnam(name)


def request(run_as: str = "", **inputs: object) -> SessionRequest:
    return SessionRequest(
        task_id="tester-0123456789abcdef0",
        session_id="tester-0123456789abcdef0",
        document_name="SSM-SessionManagerRunShell",
        session_type="Standard_Stream",
        inputs=dict(inputs),
        properties={},
        parameters={},
        run_as_user=run_as,
        session_owner="arn:aws:iam::123456789012:user/tester",
    )


def test_the_account_is_created_once_with_a_home_and_is_not_root(account_name: str) -> None:
    entry = default_user.ensure_account(account_name)
    assert entry.pw_name == account_name and entry.pw_uid != 0 and entry.pw_gid != 0
    assert entry.pw_gecos == "OpenSSM session user"
    assert entry.pw_shell == ("/bin/bash" if os.access("/bin/bash", os.X_OK) else entry.pw_shell)
    home = pathlib.Path(entry.pw_dir)
    assert home.is_dir() and home.stat().st_uid == entry.pw_uid
    # Existing: looked up, not created again (useradd would fail on a second run).
    assert default_user.ensure_account(account_name, useradd="/bin/false") == entry


@pytest.mark.parametrize("name", ["", "Root", "a b", "x" * 40, "-rf", "ssm-user$", "../x"])
def test_invalid_names_are_refused_before_useradd(name: str) -> None:
    with pytest.raises(default_user.DefaultUserError, match="not a valid user name"):
        default_user.ensure_account(name, useradd="/bin/false")
    with pytest.raises(StateError, match="not a valid user name"):
        AgentSettings.from_mapping({"ssm_user": name})


def test_a_failing_useradd_is_reported_with_its_message() -> None:
    with pytest.raises(default_user.DefaultUserError, match="Failed to create ossm-never"):
        default_user.ensure_account("ossm-never", useradd="/bin/false")


def test_sudo_is_granted_only_when_asked(tmp_path: pathlib.Path) -> None:
    dropin = tmp_path / "ssm-agent-users"
    default_user.apply_sudo_setting("ssm-user", sudo=False, path=dropin)
    assert not dropin.exists()
    default_user.apply_sudo_setting("ssm-user", sudo=True, path=dropin)
    # What AWS's agent writes, mode 0440 (sudo ignores drop-ins others can write).
    assert dropin.read_text() == "# User rules for ssm-user\nssm-user ALL=(ALL) NOPASSWD:ALL\n"
    assert stat.S_IMODE(dropin.stat().st_mode) == 0o440


def test_an_existing_drop_in_is_never_overwritten_by_a_grant(tmp_path: pathlib.Path) -> None:
    dropin = tmp_path / "ssm-agent-users"
    dropin.write_text("# operator's own rules\n")
    default_user.apply_sudo_setting("ssm-user", sudo=True, path=dropin)
    assert dropin.read_text() == "# operator's own rules\n"


def test_with_sudo_off_the_stock_grant_is_taken_back_and_other_rules_kept(tmp_path: pathlib.Path) -> None:
    dropin = tmp_path / "ssm-agent-users"
    dropin.write_text(default_user.sudoers_grant("ssm-user"))  # as AWS's agent left it
    default_user.apply_sudo_setting("ssm-user", sudo=False, path=dropin)
    # AWS's documented way to remove ssm-user's sudo: the file holds the comment line only.
    assert dropin.read_text() == "# User rules for ssm-user\n"
    assert stat.S_IMODE(dropin.stat().st_mode) == 0o440
    assert [p.name for p in tmp_path.iterdir()] == ["ssm-agent-users"]
    edited = "# User rules for ssm-user\nssm-user ALL=(ALL) /usr/bin/systemctl\n"
    dropin.write_text(edited)
    default_user.apply_sudo_setting("ssm-user", sudo=False, path=dropin)
    assert dropin.read_text() == edited


def test_root_agent_without_run_as_uses_the_default_account(account_name: str) -> None:
    settings = AgentSettings(ssm_user=account_name)
    account = resolve_run_as(request(), settings=settings)
    entry = pwd.getpwnam(account_name)
    assert (account.name, account.uid, account.gid, account.switch) == (
        account_name,
        entry.pw_uid,
        entry.pw_gid,
        True,
    )


def test_root_only_when_named_root() -> None:
    require(os.geteuid() == 0, "run-as applies to a root agent")
    account = resolve_run_as(request("root"))
    assert account.uid == 0 and not account.switch
    # Through the preference too (runAsEnabled + runAsDefaultUser).
    assert resolve_run_as(request(runAsEnabled=True, runAsDefaultUser="root")).uid == 0
    # Elevated command documents (runAsElevated) run as the agent itself.
    assert resolve_run_as(request(), elevated=True).uid == 0


def test_another_name_for_uid_0_is_refused(tmp_path: pathlib.Path) -> None:
    require(os.geteuid() == 0, "run-as applies to a root agent")
    aliases = [entry.pw_name for entry in pwd.getpwall() if entry.pw_uid == 0 and entry.pw_name != "root"]
    made = None
    if not aliases:  # make one for the test: a second name for uid 0, removed at the end
        made = f"ossmt-root-{secrets.token_hex(3)}"
        useradd = ["useradd", "--non-unique", "--uid", "0", "--no-create-home", "--no-user-group", made]
        subprocess.run(useradd, check=True, capture_output=True)
        aliases = [made]
    try:
        with pytest.raises(SessionFailure, match="has uid 0"):
            resolve_run_as(request(aliases[0]))
    finally:
        if made is not None:
            subprocess.run(["userdel", "--force", made], check=False, capture_output=True)


def test_settings_and_cli_flag_for_sudo() -> None:
    assert AgentSettings().ssm_user == "ssm-user" and AgentSettings().ssm_user_sudo is False
    assert AgentSettings.load(None, {"OPENSSM_AGENT_SSM_USER_SUDO": "true"}).ssm_user_sudo is True
    assert AgentSettings.from_mapping({"ssm_user_sudo": False}).ssm_user_sudo is False
    with pytest.raises(StateError, match="true or false"):
        AgentSettings.from_mapping({"ssm_user_sudo": "sometimes"})
    help_text = CliRunner().invoke(agent_group, ["run", "--help"]).output
    assert "--ssm-user-sudo" in help_text and "Off by default" in help_text
