"""Starting a program as another account, on any event loop.

asyncio's subprocess functions can switch user and groups themselves (``user=``, ``group=``,
``extra_groups=``), but uvloop refuses those arguments, and the agent runs on uvloop for the
speed of its port relay. So the switch happens in the child instead, just before the program
starts: util-linux ``setpriv`` (Debian's util-linux has it) when present, otherwise a Python shim
doing what subprocess does (setgroups, then setgid, then setuid, then exec). Either way the real,
effective and saved ids all become the account's, and if any step fails the program never runs.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Sequence
from typing import Final

from openssm.agent.sessions.identity import RunAs

_SETPRIV: Final = shutil.which("setpriv")
# The program is looked up on PATH before the switch: the account may not be able to read the
# agent's Python installation, and execvp would import modules to search PATH.
_SHIM: Final = (
    "import os,sys\n"
    "exe=sys.argv[4]\n"
    "if os.sep not in exe:\n"
    " exe=next((c for c in (os.path.join(d,exe) for d in os.get_exec_path()) if os.access(c,os.X_OK)),exe)\n"
    "os.setgroups([int(g) for g in sys.argv[3].split(',') if g])\n"
    "os.setgid(int(sys.argv[2]))\n"
    "os.setuid(int(sys.argv[1]))\n"
    "os.execv(exe,sys.argv[4:])\n"
)
_NO_ID: Final = 2**32 - 1  # (uid_t)-1 means "leave unchanged" to set*id: never a target
_INTERPRETER: Final = os.path.realpath(sys.executable)


def as_account(argv: Sequence[str], account: RunAs, *, setpriv: str | None = _SETPRIV) -> list[str]:
    """``argv`` to run as ``account`` (unchanged when the account is the agent's own)."""
    if not account.switch:
        return list(argv)
    if account.uid == 0:
        raise ValueError("refusing to start a run-as program as root")  # resolve_run_as never asks
    groups = account.groups()
    if not all(0 <= number < _NO_ID for number in (account.uid, account.gid, *groups)):
        raise ValueError(f"account {account.name!r} has an id out of range")
    if setpriv is not None:
        group_option = f"--groups={','.join(map(str, groups))}" if groups else "--clear-groups"
        return [setpriv, f"--reuid={account.uid}", f"--regid={account.gid}", group_option, "--", *argv]
    group_list = ",".join(map(str, groups))
    return python_shim(_SHIM, str(account.uid), str(account.gid), group_list, *argv)


def python_shim(code: str, *args: str) -> list[str]:
    """argv running ``code`` in an isolated interpreter (no site, no user paths): a launcher's
    fallback where the util-linux tool is missing."""
    return [_INTERPRETER, "-I", "-S", "-c", code, *args]
