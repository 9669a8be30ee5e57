"""Run-as without subprocess's user=/group=: setpriv or the Python shim, on both event loops."""

from __future__ import annotations

import asyncio
import os
import pwd
from collections.abc import Callable, Coroutine
from typing import Any

import pytest
import uvloop
from tests.conftest import require
from tests.unit.agent.test_pty_process import lines_until_exit

from openssm.agent import privileges
from openssm.agent.pty_process import PtyProcess
from openssm.agent.sessions.identity import RunAs

Run = Callable[[Coroutine[Any, Any, None]], None]
root_only = pytest.mark.requires(os.geteuid() == 0, "switching accounts needs root")


def nobody() -> RunAs:
    entry = pwd.getpwnam("nobody")
    return RunAs(entry.pw_name, entry.pw_uid, entry.pw_gid, "/", "/bin/sh", switch=True)


@pytest.fixture(params=["asyncio", "uvloop"])
def run(request: pytest.FixtureRequest) -> Run:
    return uvloop.run if request.param == "uvloop" else asyncio.run


@pytest.fixture(params=["setpriv", "python-shim"])
def launcher(request: pytest.FixtureRequest) -> str | None:
    if request.param == "python-shim":
        return None
    require(privileges._SETPRIV is not None, "setpriv(1) not installed (util-linux)")
    return privileges._SETPRIV


def test_the_agents_own_account_needs_no_switch() -> None:
    own = RunAs("me", os.geteuid(), os.getegid(), "/", "/bin/sh", switch=False)
    assert privileges.as_account(["id", "-u"], own) == ["id", "-u"]


def test_root_is_never_a_run_as_account() -> None:
    with pytest.raises(ValueError, match="root"):
        privileges.as_account(["id"], RunAs("root", 0, 0, "/", "/bin/sh", switch=True))


@root_only
def test_a_command_runs_with_the_accounts_ids_only(run: Run, launcher: str | None) -> None:
    account = nobody()
    argv = privileges.as_account(
        ["sh", "-c", "id -u; id -g; id -G; cat /proc/self/status | grep -E '^(Uid|Gid):'"],
        account,
        setpriv=launcher,
    )

    async def main() -> None:
        process = await asyncio.create_subprocess_exec(
            *argv, stdout=asyncio.subprocess.PIPE, env={"PATH": "/usr/bin:/bin"}, cwd="/"
        )
        out, _ = await process.communicate()
        assert process.returncode == 0
        lines = out.decode().splitlines()
        assert lines[0] == str(account.uid)
        assert lines[1] == str(account.gid)
        assert set(lines[2].split()) == {str(group) for group in account.groups()} | {str(account.gid)}
        # Real, effective, saved and filesystem ids: all the account's, so root cannot come back.
        assert lines[3].split()[1:] == [str(account.uid)] * 4
        assert lines[4].split()[1:] == [str(account.gid)] * 4

    run(main())


@root_only
def test_a_pty_shell_runs_as_the_account_on_both_loops(
    run: Run, launcher: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(privileges, "_SETPRIV", launcher)
    account = nobody()

    async def main() -> None:
        pty = await PtyProcess.spawn(
            "/bin/sh",
            ["sh", "-c", "id -u; ps -o tty= -p $$"],
            env={"PATH": "/usr/bin:/bin"},
            cwd="/",
            account=account,
        )
        lines = await lines_until_exit(pty)
        assert lines[0] == str(account.uid)
        assert lines[1].startswith("pts/")  # still the controlling terminal after the switch

    run(main())


def test_ids_that_mean_unchanged_are_refused() -> None:
    # (uid_t)-1 tells setresuid to leave the id alone: the program would keep running as root.
    with pytest.raises(ValueError, match="out of range"):
        privileges.as_account(["id"], RunAs("odd", 2**32 - 1, 100, "/", "/bin/sh", switch=True))


@root_only
def test_if_the_switch_fails_nothing_runs(run: Run, launcher: str | None) -> None:
    argv = privileges.as_account(["sh", "-c", "echo ran"], nobody(), setpriv=launcher)
    uid_at = next(i for i, arg in enumerate(argv) if arg.startswith("--reuid=") or arg == str(nobody().uid))
    argv[uid_at] = "--reuid=not-a-number" if launcher else "not-a-number"

    async def main() -> None:
        process = await asyncio.create_subprocess_exec(
            *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL
        )
        out, _ = await process.communicate()
        assert process.returncode != 0
        assert b"ran" not in out

    run(main())
