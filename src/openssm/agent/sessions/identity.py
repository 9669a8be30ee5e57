"""Who a session's process runs as, and its environment (§3.1 RunAs).

A root agent never runs a session as root unless asked by name: without a run-as user the session
runs as the default account (``ssm-user``, created on first use as AWS's agent does, see
``openssm.agent.default_user``); a run-as user (the SSMSessionRunAs tag or ``runAsDefaultUser``)
of exactly ``root`` runs as root, any other name must be an account other than uid 0. An agent
that is not root runs every session as itself.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import pwd
from collections.abc import Mapping
from typing import Final

from openssm.agent import default_user
from openssm.agent.config import AgentSettings
from openssm.agent.session_request import SessionRequest, truthy
from openssm.agent.sessions.base import SessionFailure

log = logging.getLogger(__name__)

DEFAULT_PATH: Final = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
NO_LOGIN_SHELLS: Final = frozenset({"", "/bin/false", "/usr/bin/false", "/sbin/nologin", "/usr/sbin/nologin"})
# Secrets the agent itself may have been started with; a session user must not inherit them
# (OPENSSM_* covers the agent's own settings and, under quickstart, the server's master key).
PRIVATE_ENV: Final = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")
PRIVATE_ENV_PREFIX: Final = "OPENSSM_"
ROOT: Final = "root"  # the one name that may run a session as uid 0


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


def resolve_run_as(
    request: SessionRequest, *, elevated: bool = False, settings: AgentSettings | None = None
) -> RunAs:
    """The account a session runs as (see the module's docstring); ``elevated``: the agent's own."""
    current = _current_account()
    if elevated:
        return current
    name = requested_user(request)
    if current.uid != 0:
        if name:
            log.info("session %s: RunAs %r ignored: the agent is not root", request.session_id, name)
        return current
    if not name:
        return _default_account(request, settings or AgentSettings())
    if name == ROOT:
        log.info("session %s: runs as root, as its RunAs user says", request.session_id)
        return current
    try:
        entry = pwd.getpwnam(name)
    except (KeyError, ValueError):  # ValueError: a NUL byte in the name sent to us
        raise SessionFailure(f"Unable to start command: RunAs user {name!r} does not exist.") from None
    if entry.pw_uid == 0:
        raise SessionFailure(
            f"Unable to start command: RunAs user {name!r} has uid 0; refusing to run as root "
            f"(name {ROOT!r} explicitly to run as root)."
        )
    return _account(entry)


def _account(entry: pwd.struct_passwd) -> RunAs:
    return RunAs(entry.pw_name, entry.pw_uid, entry.pw_gid, entry.pw_dir, entry.pw_shell, switch=True)


def _default_account(request: SessionRequest, settings: AgentSettings) -> RunAs:
    """The default session account, created on first use; sudo as ``settings.ssm_user_sudo`` says."""
    try:
        entry = default_user.ensure_account(settings.ssm_user)
        default_user.apply_sudo_setting(settings.ssm_user, sudo=settings.ssm_user_sudo)
    except default_user.DefaultUserError as exc:
        raise SessionFailure(f"Unable to start command: {exc}") from exc
    log.info("session %s: no RunAs user: runs as %s", request.session_id, entry.pw_name)
    return _account(entry)


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
