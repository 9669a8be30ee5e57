"""``session-manager-plugin`` drop-in: the argv/env contract the AWS CLI uses (§1.3).

    session-manager-plugin <response-json | AWS_SSM_START_SESSION_RESPONSE> <region> StartSession
                           <profile> <start-session-request-json> <ssm-endpoint-url>

Installed as both ``openssm-session-manager-plugin`` and ``session-manager-plugin`` so that
``aws ssm start-session`` finds it on PATH. The AWS CLI runs ``--version`` before every session,
so that path imports next to nothing (not even ``typing``: the interpreter and this module, see
"Client start-up" in DESIGN.md); a session imports its machinery (:mod:`openssm.client.plugin_session`)
only once it is sure to run.
"""

from __future__ import annotations

import os
import sys

from openssm.client.plugin_usage import LEGACY_ARGC, UsageError
from openssm.client.trace import mark
from openssm.protocol.versions import PLUGIN_REPORTED_VERSION

TYPE_CHECKING = False  # typing is not imported for the version check
if TYPE_CHECKING:
    from typing import Final, NoReturn

mark("start")

START_SESSION: Final = "StartSession"
INSTALLED_BANNER: Final = (
    "\nThe Session Manager plugin was installed successfully. Use the AWS CLI to start a session.\n\n"
)
LOG_LEVEL_ENV: Final = "OPENSSM_PLUGIN_LOG"  # e.g. DEBUG; logs go to stderr
USAGE: Final = f"""\
session-manager-plugin: OpenSSM's drop-in for AWS's Session Manager plugin.

The AWS CLI runs it for `aws ssm start-session`; it opens the session's data channel and connects
it to this terminal (shell) or to local ports (port forwarding, SSH ProxyCommand).

Usage:
  session-manager-plugin --version     print the plugin version the AWS CLI checks
  session-manager-plugin <StartSession response JSON | name of an env var holding it>
      <region> StartSession [<profile> <StartSession request JSON> <SSM endpoint URL>]
                                       (as the AWS CLI calls it)

Environment:
  {LOG_LEVEL_ENV}=DEBUG             log to stderr
  OPENSSM_CLIENT_CHUNK_BYTES=N         bytes per data message (default 1024, as AWS's plugin)
"""


def unknown_operation(argv1: str) -> str:
    return f"\nUnknown operation {argv1}. \nUse session-manager-plugin --version to check the version.\n\n"


def run(argv: list[str], environ: dict[str, str] | os._Environ[str] | None = None) -> int:
    """Everything :func:`main` does, returning the exit code."""
    environ = os.environ if environ is None else environ
    argc = len(argv)
    if argc <= 1:
        sys.stdout.write(INSTALLED_BANNER)
        return 0
    if argc == 2 and argv[1] == "--version":
        sys.stdout.write(f"{PLUGIN_REPORTED_VERSION}\n")
        mark("version")
        return 0
    if argc == 2 and argv[1] in ("--help", "-h"):
        sys.stdout.write(USAGE)
        return 0
    if argc < LEGACY_ARGC:
        sys.stdout.write(unknown_operation(argv[1]))
        return 0
    from openssm.client import plugin_session

    try:
        invocation = plugin_session.parse_invocation(argv, environ)
    except UsageError as exc:
        print(exc, file=sys.stderr)
        return 1
    if invocation.operation != START_SESSION:
        print(f"Invalid operation {invocation.operation}: only {START_SESSION} is supported", file=sys.stderr)
        return 1
    from openssm.client.api import ApiTarget
    from openssm.transport import runtime

    api = ApiTarget(
        region=invocation.region or None,
        profile=invocation.profile or None,
        endpoint_url=invocation.endpoint_url or None,
    )
    try:
        return runtime.run(plugin_session.run(invocation, api))
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # a user-facing tool: say what failed, keep the traceback for debug logs
        import logging

        logging.getLogger(__name__).debug("session failed", exc_info=True)
        print(f"\nCannot perform start session: {exc}", file=sys.stderr)
        return 1


def main() -> NoReturn:
    if sys.argv[1:] != ["--version"]:  # the AWS CLI's check before each session stays light
        import logging

        level = os.environ.get(LOG_LEVEL_ENV)
        logging.basicConfig(level=level.upper() if level else logging.CRITICAL, stream=sys.stderr)
    sys.exit(run(sys.argv))


if __name__ == "__main__":
    main()
