"""What the client imports decides how soon a prompt appears (bench/bench_session_latency.py): its
modules must not pull in boto3, botocore or aiohttp (each about a sixth of the old start-up)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ("boto3", "botocore", "aiohttp")


def loaded_after(code: str) -> set[str]:
    """Modules in sys.modules after running ``code`` in a fresh interpreter."""
    probe = f"{code}\nimport sys, json\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    return set(json.loads(out.stdout.splitlines()[-1]))


@pytest.mark.parametrize(
    "module",
    [
        "openssm.client.cli",
        "openssm.client.plugin",
        "openssm.client.session",
        "openssm.transport.websocket_connection",
    ],
)
def test_client_modules_import_no_boto3_botocore_or_aiohttp(module: str) -> None:
    assert not loaded_after(f"import {module}") & set(HEAVY)


def test_the_cli_module_leaves_the_event_loop_for_later() -> None:
    # asyncio and uvloop are imported while StartSession is in flight, not before it is sent.
    assert not loaded_after("import openssm.cli, openssm.client.cli") & {"asyncio", "uvloop", *HEAVY}


def test_start_session_with_a_plain_command_line_imports_no_click() -> None:
    # click (with typing's and inspect's share) and dataclasses were about a third of the
    # instructions before StartSession went out; the command's help and errors still use click.
    code = "import sys\nsys.argv = ['openssm', 'start-session']\nimport openssm.__main__, openssm.client.cli"
    assert not loaded_after(code) & {"click", "dataclasses", "inspect", "asyncio", *HEAVY}


def test_the_plugin_version_check_imports_no_session_machinery() -> None:
    # The AWS CLI runs `session-manager-plugin --version` before every session: typing, json and
    # dataclasses were about 75 M of its 140 M instructions (now 65 M; a bare interpreter: 41 M).
    # (json cannot be checked here: the probe itself imports it.)
    loaded = loaded_after("import openssm.client.plugin as p\np.run(['session-manager-plugin', '--version'])")
    assert not loaded & {"asyncio", "uvloop", "logging", "typing", "dataclasses", *HEAVY}


def test_a_shell_session_imports_no_port_machinery() -> None:
    # smux, the mux and the port session were about two thirds of the session machinery's imports,
    # and the shell's prompt waited for them: they are imported when a port session starts.
    loaded = loaded_after("import openssm.client.session")
    assert not loaded & {"openssm.client.port", "openssm.protocol.smux", "openssm.transport.mux"}


@pytest.mark.parametrize("port", [False, True])
def test_the_import_thread_brings_the_port_machinery_only_when_a_document_was_named(port: bool) -> None:
    code = (
        "import asyncio\nfrom openssm.client import startup\n"
        f"async def main():\n    await startup.Imports(port={port}).session_module()\n"
        "asyncio.run(main())"
    )
    assert ("openssm.client.port" in loaded_after(code)) is port


def test_the_way_to_a_shell_prompt_imports_no_pathlib_or_importlib_util() -> None:
    # Everything a shell session's prompt waits for (StartSession, the loop, the dial, the open
    # frame, the session machinery): pathlib and importlib.util were 7 M instructions on the way,
    # only for finding aiohttp's compiled XOR, which a shell's small frames never need.
    modules = (
        "openssm.client.cli, openssm.transport.runtime, openssm.client.startup, openssm.client.dial, "
        "openssm.protocol.messages.data_channel, openssm.client.session"
    )
    assert not loaded_after(f"import {modules}") & {"pathlib", "importlib.util", "click", *HEAVY}
