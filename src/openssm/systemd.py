"""``openssm agent install|uninstall`` and ``openssm server install|uninstall``: systemd units.

``install`` writes the unit (``/etc/systemd/system/<name>.service`` unless ``--unit-dir`` says
otherwise), then ``systemctl daemon-reload`` and ``systemctl enable --now``; ``--dry-run`` prints
the unit and what would be run, and changes nothing; ``--unit-only`` writes the unit file and
stops there (packaging, images). Where systemd is not the running init (a container, a chroot),
the unit is written and the command says that it could not be enabled, and exits non-zero.

The units follow systemd practice: ``After=``/``Wants=network-online.target``, a restart policy,
``StateDirectory=`` for the state, ``ExecReload=`` sending SIGHUP (the server reloads its TLS
certificate), and for the server a sandbox (its own user, ``NoNewPrivileges``, a read-only
system, private /tmp and devices, no kernel tunables…). The agent runs as root, because it starts
sessions as other users, and every session it starts inherits its sandbox: ``NoNewPrivileges``
would break ``sudo`` inside sessions, and ``ProtectSystem``/``ProtectHome``/``PrivateTmp`` would
show sessions a file system other than the node's. So the agent's unit sandboxes nothing that a
session would notice; it stops with ``KillMode=mixed`` (the agent ends its sessions first).

This module sits beside ``transport`` in the layers: the agent and the server both use it.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from typing import Final

import click

from openssm.click_options import option_group

SYSTEM_UNIT_DIR: Final = pathlib.Path("/etc/systemd/system")
SERVER_USER: Final = "openssm"


@dataclasses.dataclass(frozen=True, slots=True)
class Service:
    name: str  # unit name without ".service"
    description: str
    arguments: tuple[str, ...]  # after the openssm command
    environment: tuple[tuple[str, str], ...]
    service: tuple[tuple[str, str], ...]  # [Service] directives besides ExecStart/Environment
    user: str | None = None  # a system user the install creates if missing

    @property
    def file_name(self) -> str:
        return f"{self.name}.service"


def openssm_command() -> list[str]:
    """An absolute command line that runs this installation's ``openssm``."""
    script = pathlib.Path(sys.executable).parent / "openssm"
    if script.is_file() and os.access(script, os.X_OK):
        return [str(script)]
    return [sys.executable, "-m", "openssm"]


def _quote(argument: str) -> str:
    """One ExecStart argument, quoted for systemd (specifiers and variables escaped)."""
    escaped = argument.replace("%", "%%").replace("$", "$$")
    if escaped and all(c.isalnum() or c in "/._-=:,+@" for c in escaped):
        return escaped
    return '"' + escaped.replace("\\", "\\\\").replace('"', '\\"') + '"'


def render(service: Service, command: Sequence[str] | None = None) -> str:
    argv = [*(command or openssm_command()), *service.arguments]
    lines = [
        f"# Written by `openssm {service.arguments[0]} install`; `openssm {service.arguments[0]} uninstall` removes it.",
        "[Unit]",
        f"Description={service.description}",
        "After=network-online.target",
        "Wants=network-online.target",
        "",
        "[Service]",
        "Type=exec",
        *(f"Environment={_quote(f'{key}={value}')}" for key, value in service.environment),
        "ExecStart=" + " ".join(_quote(argument) for argument in argv),
        *(f"{key}={value}" for key, value in service.service),
        "",
        "[Install]",
        "WantedBy=multi-user.target",
        "",
    ]
    return "\n".join(lines)


def server_service(config: pathlib.Path | None) -> Service:
    return Service(
        name="openssm-server",
        description="OpenSSM server: AWS SSM-compatible API and session gateway",
        arguments=("server", *(("--config", str(config.absolute())) if config else ())),
        # The audit signing key in a state directory of its own, apart from the data directory.
        environment=(
            ("OPENSSM_DATA_DIR", "/var/lib/openssm"),
            ("OPENSSM_AUDIT_KEY", "/var/lib/openssm-audit/audit-signing.key"),
        ),
        user=SERVER_USER,
        service=(
            ("User", SERVER_USER),
            ("Group", SERVER_USER),
            ("ExecReload", "/bin/kill -HUP $MAINPID"),  # reloads the TLS certificate and key
            ("Restart", "on-failure"),
            ("RestartSec", "5s"),
            ("TimeoutStopSec", "30s"),
            ("StateDirectory", "openssm openssm-audit"),
            ("StateDirectoryMode", "0700"),
            ("ConfigurationDirectory", "openssm"),
            ("LimitNOFILE", "65536"),  # a socket per agent, two per session
            ("UMask", "0077"),
            ("NoNewPrivileges", "yes"),
            ("ProtectSystem", "strict"),  # only StateDirectory is writable
            ("ProtectHome", "read-only"),
            ("PrivateTmp", "yes"),
            ("PrivateDevices", "yes"),
            ("ProtectKernelTunables", "yes"),
            ("ProtectKernelModules", "yes"),
            ("ProtectKernelLogs", "yes"),
            ("ProtectControlGroups", "yes"),
            ("ProtectClock", "yes"),
            ("ProtectHostname", "yes"),
            ("RestrictNamespaces", "yes"),
            ("RestrictRealtime", "yes"),
            ("RestrictSUIDSGID", "yes"),
            ("LockPersonality", "yes"),
            ("SystemCallArchitectures", "native"),
            ("RestrictAddressFamilies", "AF_UNIX AF_INET AF_INET6"),
            ("CapabilityBoundingSet", "CAP_NET_BIND_SERVICE"),  # may listen on 443
            ("AmbientCapabilities", "CAP_NET_BIND_SERVICE"),
        ),
    )


def agent_service(state_dir: pathlib.Path | None) -> Service:
    return Service(
        name="openssm-agent",
        description="OpenSSM agent: keeps this node connected to its server and runs its sessions",
        arguments=("agent", "run", *(("--state-dir", str(state_dir.absolute())) if state_dir else ())),
        environment=(("OPENSSM_AGENT_STATE", "/var/lib/openssm-agent"),),
        service=(
            # Root, unsandboxed on purpose: sessions run as other users and inherit the sandbox.
            ("Restart", "always"),
            ("RestartSec", "5s"),
            ("KillMode", "mixed"),  # SIGTERM to the agent, which ends its sessions; then the rest
            ("TimeoutStopSec", "20s"),
            ("StateDirectory", "openssm-agent"),
            ("StateDirectoryMode", "0700"),
        ),
    )


def systemd_problem() -> str | None:
    """Why ``systemctl`` cannot manage units here, or None."""
    if shutil.which("systemctl") is None:
        return "systemctl is not installed"
    if not pathlib.Path("/run/systemd/system").is_dir():  # sd_booted(): systemd is PID 1
        try:
            init = pathlib.Path("/proc/1/comm").read_text().strip()
        except OSError:
            init = "unknown"
        return f"systemd is not the running init system here (PID 1 is {init!r})"
    return None


def _run(argv: list[str]) -> None:
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise click.ClickException(f"`{' '.join(argv)}` failed: {(result.stderr or result.stdout).strip()}")


def _ensure_user(name: str, home: str) -> None:
    if subprocess.run(["id", "-u", name], capture_output=True, check=False).returncode == 0:
        return
    shell = "/usr/sbin/nologin"
    _run(
        [
            "useradd",
            "--system",
            "--user-group",
            "--home-dir",
            home,
            "--no-create-home",
            "--shell",
            shell,
            name,
        ]
    )
    click.echo(f"created system user {name}")


def _write_unit(path: pathlib.Path, text: str) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.tmp")
        temporary.write_text(text)
        temporary.chmod(0o644)
        temporary.replace(path)
    except PermissionError as exc:
        raise click.ClickException(f"cannot write {path}: permission denied (run as root)") from exc


def install(service: Service, unit_dir: pathlib.Path, *, dry_run: bool, unit_only: bool) -> None:
    text = render(service)
    path = unit_dir / service.file_name
    steps = (
        [] if unit_only else [["systemctl", "daemon-reload"], ["systemctl", "enable", "--now", service.name]]
    )
    if dry_run:
        click.echo(f"# {path}\n{text}", nl=False)
        if service.user and not unit_only:
            click.echo(f"# then: create the system user {service.user} if missing")
        for step in steps:
            click.echo(f"# then: {' '.join(step)}")
        return
    executable = openssm_command()[0]
    if service.user and executable.startswith(("/root/", "/home/")):
        click.echo(
            f"warning: {executable} is under a home directory; user {service.user} may not be able "
            "to run it (install OpenSSM into /opt or /usr/local)",
            err=True,
        )
    problem = None if unit_only else systemd_problem()
    if service.user and not unit_only and problem is None:
        _ensure_user(service.user, f"/var/lib/{service.user}")
    _write_unit(path, text)
    click.echo(f"wrote {path}")
    if unit_only:
        return
    if problem is not None:
        raise click.ClickException(
            f"{problem}: {service.name} was not enabled or started. On a machine booted with "
            f"systemd, run: systemctl daemon-reload && systemctl enable --now {service.name}"
        )
    for step in steps:
        _run(step)
    click.echo(f"{service.name} enabled and started (journalctl -u {service.name} shows its log)")


def uninstall(name: str, unit_dir: pathlib.Path, *, dry_run: bool, unit_only: bool) -> None:
    path = unit_dir / f"{name}.service"
    steps = [] if unit_only else [["systemctl", "disable", "--now", name]]
    if dry_run:
        for step in steps:
            click.echo(f"# would run: {' '.join(step)}")
        click.echo(f"# would remove: {path}")
        return
    problem = None if unit_only else systemd_problem()
    if problem is None:
        for step in steps:
            _run(step)
    path.unlink(missing_ok=True)
    click.echo(f"removed {path}")
    if problem is None and not unit_only:
        _run(["systemctl", "daemon-reload"])
    elif problem is not None:
        raise click.ClickException(
            f"{problem}: could not stop or disable {name}; only its unit file was removed"
        )
    click.echo("its state directory is kept (remove it yourself if it is no longer needed)")


_unit_options = option_group(
    click.option("--dry-run", is_flag=True, help="Print the unit and the steps; change nothing."),
    click.option(
        "--unit-dir",
        type=click.Path(file_okay=False, path_type=pathlib.Path),
        default=SYSTEM_UNIT_DIR,
        show_default=True,
        help="Directory of the unit file.",
    ),
    click.option(
        "--unit-only",
        is_flag=True,
        help="Only write (or remove) the unit file: no user, no systemctl (packaging, images).",
    ),
)


def install_command(
    make: Callable[..., Service], name: str, extra: Sequence[click.Option] = ()
) -> click.Command:
    """``install``: a click command that installs the unit ``make(**extra options)`` describes."""

    @_unit_options
    def run(dry_run: bool, unit_dir: pathlib.Path, unit_only: bool, **options: object) -> None:
        install(make(**options), unit_dir, dry_run=dry_run, unit_only=unit_only)

    command = click.command(
        "install",
        short_help=f"Install {name} as a systemd service, enabled and started.",
        help=f"Install {name} as a systemd service ({name}.service), enable it and start it.\n\n"
        "--dry-run prints the unit and changes nothing.",
    )(run)
    command.params.extend(extra)
    return command


def uninstall_command(name: str) -> click.Command:
    @_unit_options
    def run(dry_run: bool, unit_dir: pathlib.Path, unit_only: bool) -> None:
        uninstall(name, unit_dir, dry_run=dry_run, unit_only=unit_only)

    return click.command(
        "uninstall",
        short_help=f"Stop, disable and remove the {name} systemd service.",
        help=f"Stop and disable {name}.service and remove its unit file (its state is kept).",
    )(run)


def add_service_commands(
    group: click.Group, make: Callable[[pathlib.Path | None], Service], path_option: str, path_help: str
) -> None:
    """Add ``install`` and ``uninstall`` to ``group``; ``make(path)`` describes the unit, given the
    path option the service runs with (``--config FILE`` of the server, ``--state-dir`` of the agent)."""
    name = make(None).name
    option = click.Option(
        [path_option, "path"],
        type=click.Path(path_type=pathlib.Path),
        default=None,
        help=path_help,
    )

    def service(path: pathlib.Path | None) -> Service:
        return make(path)

    group.add_command(install_command(service, name, [option]))
    group.add_command(uninstall_command(name))
