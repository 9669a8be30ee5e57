"""Who a session's process runs as, and its environment (§3.1 RunAs)."""

from __future__ import annotations

import dataclasses
import logging
import os
import pwd
from collections.abc import Mapping
from typing import Final

from openssm.agent.session_request import SessionRequest, truthy
from openssm.agent.sessions.base import SessionFailure

log = logging.getLogger(__name__)

DEFAULT_PATH: Final = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
NO_LOGIN_SHELLS: Final = frozenset({"", "/bin/false", "/usr/bin/false", "/sbin/nologin", "/usr/sbin/nologin"})
# Secrets the agent itself may have been started with; a session user must not inherit them
# (OPENSSM_* covers the agent's own settings and, under quickstart, the server's master key).
PRIVATE_ENV: Final = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")
PRIVATE_ENV_PREFIX: Final = "OPENSSM_"


@dataclasses.dataclass(frozen=True)
class RunAs:
    """The account a session runs as. ``switch`` is False when it is the agent's own account."""

    name: str
    uid: int
    gid: int
    home: str
    shell: str
    switch: bool

    @property
    def login_shell(self) -> str:
        if self.shell not in NO_LOGIN_SHELLS and os.access(self.shell, os.X_OK):
            return self.shell
        return "/bin/sh"

    def groups(self) -> list[int]:
        return os.getgrouplist(self.name, self.gid) if self.switch else []

    def cwd(self) -> str:
        return self.home if os.path.isdir(self.home) else "/"


def _current_account() -> RunAs:
    uid = os.geteuid()
    try:
        entry = pwd.getpwuid(uid)
    except KeyError:
        return RunAs(str(uid), uid, os.getegid(), os.environ.get("HOME", "/"), "/bin/sh", switch=False)
    return RunAs(entry.pw_name, uid, entry.pw_gid, entry.pw_dir, entry.pw_shell, switch=False)


def requested_user(request: SessionRequest) -> str:
    """RunAsUser from the service, else the preference ``runAsDefaultUser`` when RunAs is enabled."""
    if request.run_as_user:
        return request.run_as_user
    if truthy(request.inputs.get("runAsEnabled")):
        default = request.inputs.get("runAsDefaultUser")
        if not isinstance(default, str) or not default.strip():
            raise SessionFailure("Run As is enabled but no RunAs user was given for this session.")
        return default.strip()
    return ""


def resolve_run_as(request: SessionRequest, *, elevated: bool = False) -> RunAs:
    """Root agents switch to the requested user (never uid 0); others run as themselves."""
    current = _current_account()
    name = "" if elevated else requested_user(request)
    if not name:
        return current
    if current.uid != 0:
        log.info("session %s: RunAs %r ignored: the agent is not root", request.session_id, name)
        return current
    try:
        entry = pwd.getpwnam(name)
    except (KeyError, ValueError):  # ValueError: a NUL byte in the name sent to us
        raise SessionFailure(f"Unable to start command: RunAs user {name!r} does not exist.") from None
    if entry.pw_uid == 0:
        raise SessionFailure(
            f"Unable to start command: RunAs user {name!r} has uid 0; refusing to run as root."
        )
    return RunAs(entry.pw_name, entry.pw_uid, entry.pw_gid, entry.pw_dir, entry.pw_shell, switch=True)


def session_environment(account: RunAs, parent: Mapping[str, str] | None = None) -> dict[str, str]:
    """The agent's environment for its own account (as the real agent), a clean one for others."""
    parent = os.environ if parent is None else parent
    if account.switch:
        env = {"PATH": DEFAULT_PATH}
        if "LANG" in parent:
            env["LANG"] = parent["LANG"]
    else:
        env = {
            key: value
            for key, value in parent.items()
            if key not in PRIVATE_ENV and not key.startswith(PRIVATE_ENV_PREFIX)
        }
        env.setdefault("PATH", DEFAULT_PATH)
    env.update(
        HOME=account.home,
        USER=account.name,
        LOGNAME=account.name,
        SHELL=account.login_shell,
        TERM="xterm-256color",
    )
    env.setdefault("LANG", "C.UTF-8")
    return env
