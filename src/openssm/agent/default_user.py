"""The account a root agent runs sessions as when nobody asked for one: ``ssm-user``, as AWS's agent.

AWS's agent (``agent/session/utility/utility_unix.go``, 3.x) creates ``ssm-user`` with
``useradd -m`` the first time a session starts without a run-as user, and then, if
``/etc/sudoers.d/ssm-agent-users`` does not exist, writes it granting that user
``ALL=(ALL) NOPASSWD:ALL`` (mode 0440). OpenSSM creates the account the same way (same name,
``useradd --create-home``; bash as its shell where installed, as ``useradd`` gives it on Amazon
Linux, AWS's own distribution, where Debian's default would be ``sh``), but grants sudo only when the
operator asks (``ssm_user_sudo``, ``openssm agent run --ssm-user-sudo``): least privilege by
default. Without that option, a drop-in that is exactly the grant AWS's agent (or ours) wrote is
reduced to its comment line, the way AWS documents removing ssm-user's sudo; any other content of
the file is the operator's and is left alone.

The account is looked up on every session and created only when missing (one ``useradd`` the
first time, on the event loop: a session start already waits on a process start).
"""

from __future__ import annotations

import logging
import os
import pathlib
import pwd
import re
import shutil
import subprocess
from typing import Final

from openssm.errors import OpenSSMError

log = logging.getLogger(__name__)

DEFAULT_USER: Final = "ssm-user"
SUDOERS_FILE: Final = pathlib.Path("/etc/sudoers.d/ssm-agent-users")
SUDOERS_MODE: Final = 0o440
USERADD_TIMEOUT_SECONDS: Final = 30.0
BASH: Final = "/bin/bash"
# A portable user name (shadow-utils' default NAME_REGEX, without the trailing "$" of machine accounts).
USER_NAME: Final = re.compile(r"[a-z_][a-z0-9_-]{0,31}")


class DefaultUserError(OpenSSMError):
    """The default session account cannot be created or used."""


def sudoers_grant(name: str) -> str:
    return f"# User rules for {name}\n{name} ALL=(ALL) NOPASSWD:ALL\n"


def sudoers_comment(name: str) -> str:
    return f"# User rules for {name}\n"


def ensure_account(name: str, *, useradd: str | None = None) -> pwd.struct_passwd:
    """The account ``name``, created (home directory included) if it does not exist yet."""
    if not USER_NAME.fullmatch(name):
        raise DefaultUserError(f"{name!r} is not a valid user name for the default session account")
    try:
        return pwd.getpwnam(name)
    except KeyError:
        pass
    program = useradd or shutil.which("useradd") or "/usr/sbin/useradd"
    shell = ["--shell", BASH] if os.access(BASH, os.X_OK) else []
    try:
        completed = subprocess.run(
            [program, "--create-home", *shell, "--comment", "OpenSSM session user", name],
            capture_output=True,
            text=True,
            timeout=USERADD_TIMEOUT_SECONDS,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise DefaultUserError(f"Failed to create {name}: {exc}") from exc
    try:
        entry = pwd.getpwnam(name)  # another session may have created it at the same moment
    except KeyError:
        detail = completed.stderr.strip() or f"useradd exited with {completed.returncode}"
        raise DefaultUserError(f"Failed to create {name}: {detail}") from None
    if completed.returncode == 0:
        log.info("created %s (uid %d) for sessions without a run-as user", name, entry.pw_uid)
    if entry.pw_uid == 0:
        raise DefaultUserError(f"{name} has uid 0; refusing to use it as the default session account")
    return entry


def apply_sudo_setting(name: str, *, sudo: bool, path: pathlib.Path = SUDOERS_FILE) -> None:
    """Grant ``name`` sudo through the drop-in (``sudo``), or take back the stock grant (not ``sudo``)."""
    try:
        current = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        current = None
    except OSError as exc:
        raise DefaultUserError(f"cannot read {path}: {exc}") from exc
    if sudo:
        if current is None:
            _write_exclusive(path, sudoers_grant(name))
            log.info("granted %s sudo in %s (ssm_user_sudo is on)", name, path)
        return
    if current == sudoers_grant(name):
        _replace(path, sudoers_comment(name))
        log.warning("removed the sudo grant for %s from %s (ssm_user_sudo is off)", name, path)


def _write_exclusive(path: pathlib.Path, text: str) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, SUDOERS_MODE)
    except FileExistsError:
        return  # written meanwhile by another session: as AWS's agent, never overwrite
    except OSError as exc:
        raise DefaultUserError(f"cannot create {path}: {exc}") from exc
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        os.fchmod(handle.fileno(), SUDOERS_MODE)
        handle.write(text)


def _replace(path: pathlib.Path, text: str) -> None:
    """Atomically, so sudo never reads a half-written rule file."""
    temporary = path.with_name(f".{path.name}.openssm")  # sudo skips names with a dot
    try:
        temporary.unlink(missing_ok=True)
        _write_exclusive(temporary, text)
        os.replace(temporary, path)
    except OSError as exc:
        raise DefaultUserError(f"cannot rewrite {path}: {exc}") from exc
