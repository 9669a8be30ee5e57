"""``openssm agent run`` starts without click: its plain parser reads a command line exactly as the
click command built from the same description does, and leaves anything else to click."""

from __future__ import annotations

import pathlib
import subprocess
import sys

import pytest

from openssm.agent.cli import run_command
from openssm.agent.main import RUN_OPTIONS
from openssm.plain_options import parse_plain


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["--state-dir", "/var/lib/openssm-agent"],
        ["--state-dir=/nonexistent/state", "--log-level", "DEBUG"],
        ["--ssm-user-sudo"],
        ["--instance-id", "i-0123456789abcdef0", "--endpoint", "http://x:8080", "--region", "eu-west-1"],
        ["--mgs-endpoint", "http://gw:8080", "--ssm-user-sudo", "--log-level=warning"],
    ],
)
@pytest.mark.parametrize("log_level_env", [None, "", "ERROR"])
def test_the_plain_parser_reads_an_agent_run_command_line_as_click_does(
    args: list[str], log_level_env: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    if log_level_env is None:
        monkeypatch.delenv("OPENSSM_AGENT_LOG_LEVEL", raising=False)
    else:
        monkeypatch.setenv("OPENSSM_AGENT_LOG_LEVEL", log_level_env)
    with run_command.make_context("run", list(args)) as ctx:
        assert parse_plain(RUN_OPTIONS, args) == ctx.params


def test_the_plain_parser_leaves_anything_else_to_click(tmp_path: pathlib.Path) -> None:
    a_file = tmp_path / "state"
    a_file.write_text("")
    for args in (
        ["--help"],
        ["--ssm-user-sudo=1"],  # a flag takes no value
        ["--state-dir"],  # no value
        ["--state-dir", str(a_file)],  # click says it is a file
        ["--region", "-x"],
        ["extra"],
        ["--log-leve", "DEBUG"],
    ):
        assert parse_plain(RUN_OPTIONS, args) is None, args


def test_a_plain_agent_run_fails_as_the_click_command_does_and_without_click(tmp_path: pathlib.Path) -> None:
    """No registration in the state directory: both paths exit 1 with click's ``Error: …``; the
    plain one never imports click."""
    args = ["agent", "run", "--state-dir", str(tmp_path)]
    # Whether click was imported, written last (at exit) on stderr.
    plain_entry = (
        "import atexit, sys; atexit.register(lambda: print('click' in sys.modules, file=sys.stderr)); "
        "sys.argv[0] = 'openssm'; from openssm.__main__ import run; run()"
    )
    plain = subprocess.run(
        [sys.executable, "-c", plain_entry, *args], capture_output=True, text=True, timeout=60
    )
    through_click = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; sys.argv[0] = 'openssm'; from openssm.cli import main; main()",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert through_click.returncode == plain.returncode == 1
    assert through_click.stderr.startswith("Error: ")
    assert plain.stderr == through_click.stderr + "False\n"
