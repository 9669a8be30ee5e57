"""``openssm agent|server install|uninstall``: the units pass ``systemd-analyze verify`` (Debian's
systemd), ``--dry-run`` changes nothing, ``--unit-dir`` installs where a test can look, and where
systemd is not the running init (here) the command writes the unit and says it could not enable it."""

from __future__ import annotations

import pathlib
import shutil
import subprocess

import pytest
from click.testing import CliRunner
from tests.conftest import require

from openssm import systemd
from openssm.cli import main

COMMANDS = {"openssm-server": ["server"], "openssm-agent": ["agent"]}


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result.exit_code, result.output


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_units_pass_systemd_analyze_verify(tmp_path: pathlib.Path, name: str) -> None:
    require(shutil.which("systemd-analyze") is not None, "systemd-analyze is not installed (Debian: systemd)")
    extra = ["--config", str(tmp_path / "server.toml")] if name == "openssm-server" else []
    code, output = invoke(*COMMANDS[name], "install", "--unit-only", "--unit-dir", str(tmp_path), *extra)
    assert code == 0, output
    unit = tmp_path / f"{name}.service"
    verified = subprocess.run(
        ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, check=False, cwd=tmp_path
    )
    assert verified.returncode == 0, verified.stderr
    assert verified.stderr.strip() == "", verified.stderr  # unknown keys and bad values are only warned
    text = unit.read_text()
    for directive in (
        "After=network-online.target",
        "Wants=network-online.target",
        "StateDirectory=",
        "Restart=",
    ):
        assert directive in text
    assert "ExecStart=/" in text  # an absolute command line: this installation's openssm


def test_server_unit_is_sandboxed(tmp_path: pathlib.Path) -> None:
    require(shutil.which("systemd-analyze") is not None, "systemd-analyze is not installed (Debian: systemd)")
    text = systemd.render(systemd.server_service(pathlib.Path("/etc/openssm/server.toml")))
    assert "NoNewPrivileges=yes" in text and "User=openssm" in text and "ProtectSystem=strict" in text
    assert "ExecReload=/bin/kill -HUP $MAINPID" in text
    assert "server --config /etc/openssm/server.toml" in text
    unit = tmp_path / "openssm-server.service"
    unit.write_text(text)
    security = subprocess.run(
        ["systemd-analyze", "security", "--offline=yes", "--threshold=40", str(unit)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert security.returncode == 0, security.stdout[-2000:]  # exposure at most 4.0 of 10


def test_agent_unit_runs_as_root_without_a_sandbox_its_sessions_would_inherit() -> None:
    text = systemd.render(systemd.agent_service(None))
    assert "User=" not in text
    for directive in ("NoNewPrivileges", "ProtectSystem", "ProtectHome", "PrivateTmp"):
        assert directive not in text
    assert "KillMode=mixed" in text and "StateDirectory=openssm-agent" in text


def test_dry_run_prints_the_unit_and_changes_nothing(tmp_path: pathlib.Path) -> None:
    code, output = invoke("agent", "install", "--dry-run", "--unit-dir", str(tmp_path))
    assert code == 0, output
    assert f"# {tmp_path / 'openssm-agent.service'}" in output
    assert "[Service]" in output and "agent run" in output
    assert "# then: systemctl enable --now openssm-agent" in output
    assert list(tmp_path.iterdir()) == []
    code, output = invoke("server", "uninstall", "--dry-run", "--unit-dir", str(tmp_path))
    assert code == 0 and "would run: systemctl disable --now openssm-server" in output


def test_install_without_a_running_systemd_writes_the_unit_and_says_so(tmp_path: pathlib.Path) -> None:
    problem = systemd.systemd_problem()
    require(problem is not None, "systemd runs here: this test is about a machine where it does not")
    code, output = invoke("agent", "install", "--unit-dir", str(tmp_path))
    assert code == 1
    assert f"wrote {tmp_path / 'openssm-agent.service'}" in output
    assert "was not enabled or started" in output and "systemctl enable --now openssm-agent" in output
    assert problem is not None and problem in output
    code, output = invoke("agent", "uninstall", "--unit-dir", str(tmp_path))
    assert code == 1 and "only its unit file was removed" in output
    assert not (tmp_path / "openssm-agent.service").exists()


def test_unit_only_install_and_uninstall(tmp_path: pathlib.Path) -> None:
    code, output = invoke("server", "install", "--unit-only", "--unit-dir", str(tmp_path))
    assert code == 0, output
    assert (tmp_path / "openssm-server.service").is_file()
    assert oct((tmp_path / "openssm-server.service").stat().st_mode & 0o777) == "0o644"
    code, output = invoke("server", "uninstall", "--unit-only", "--unit-dir", str(tmp_path))
    assert code == 0, output
    assert list(tmp_path.iterdir()) == []


def test_exec_start_arguments_are_quoted_for_systemd() -> None:
    service = systemd.agent_service(pathlib.Path("/var/lib/my agent/100%"))
    text = systemd.render(service, command=["/opt/openssm/bin/openssm"])
    assert 'ExecStart=/opt/openssm/bin/openssm agent run --state-dir "/var/lib/my agent/100%%"' in text
