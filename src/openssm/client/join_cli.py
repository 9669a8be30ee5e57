"""``openssm join-session``: attach to someone's running shell session, to watch or to type too.

JoinSession (OpenSSM's API, ``OpenSSM_20261201.JoinSession``, called as ``openssm access`` calls its
API: your AWS credentials, ``--profile``, ``--region``, ``--endpoint-url``) answers a StreamUrl and a
single-use token bound to you and the session; the session then runs as ``openssm start-session``
runs a shell, except that it is not yours: it is never resumed or terminated from here, watching
leaves the terminal alone and reads no keys (Ctrl-C leaves), and a read-write joiner leaves with
Ctrl-] (typing ``exit`` would end the shell for everyone).
"""

from __future__ import annotations

import sys
from typing import Final

import click

from openssm.client.access_api import AccessApi, ApiError
from openssm.client.access_cli import connection_options

AWS_CLI_ERROR_EXIT: Final = 255


@click.command("join-session", short_help="Watch, or type into, someone's running shell session.")
@click.option("--session-id", required=True, help="The running session to join (see DescribeSessions).")
@click.option(
    "--read-only",
    is_flag=True,
    help="Watch only (needs openssm:JoinSession allowed for openssm:JoinMode ReadOnly). Ctrl-C leaves.",
)
@click.option(
    "--last-screen", is_flag=True, help="Begin with the session's most recent output (about a screenful)."
)
@connection_options
def join_session_command(
    session_id: str,
    read_only: bool,
    last_screen: bool,
    endpoint_url: str | None,
    profile: str | None,
    region: str | None,
) -> None:
    """Join a running shell session: everyone in it sees "[openssm] NAME joined (read-only)" or
    "(read-write)", and "left" when you go. Read-write (the default) types into the same shell, in
    order with its owner; Ctrl-] leaves. The session's owner may refuse joins
    (SetSessionJoinPolicy)."""
    try:
        api = AccessApi.configured(profile=profile, region=region, endpoint_url=endpoint_url)
        answer = api.call(
            "JoinSession", {"SessionId": session_id, "ReadOnly": read_only, "LastScreen": last_screen}
        )
    except ApiError as exc:
        click.echo(f"\n{exc}", err=True)  # the AWS CLI's "\n%s\n"
        sys.exit(AWS_CLI_ERROR_EXIT)
    from openssm.client.api import parse_start_session_response
    from openssm.client.session import ClientOptions, run_session
    from openssm.client.shell import LEAVE_KEY, JoinStyle
    from openssm.transport import runtime

    try:
        started = parse_start_session_response(answer)
    except ValueError as exc:
        click.echo(f"\nJoinSession answered unexpectedly: {exc}", err=True)
        sys.exit(AWS_CLI_ERROR_EXIT)
    style = JoinStyle.WATCH if read_only else JoinStyle.TYPE
    leave = "Ctrl-C" if read_only else f"Ctrl-{chr(LEAVE_KEY[0] + 64)}"
    click.echo(
        f"Joining {session_id} ({'read-only' if read_only else 'read-write'}); {leave} leaves.", err=True
    )
    options = ClientOptions(joining=style)  # no api: a joiner never resumes or ends the session
    sys.exit(runtime.run(run_session(started, options)))


@click.command("set-session-join-policy", short_help="Refuse (or allow again) joins of your own session.")
@click.option("--session-id", required=True, help="Your running session.")
@click.option(
    "--refuse/--allow", "refuse", default=True, show_default=True, help="Refuse joins, or allow them."
)
@connection_options
def set_join_policy_command(
    session_id: str, refuse: bool, endpoint_url: str | None, profile: str | None, region: str | None
) -> None:
    """Refuse joins of a session you started (joiners already in it are ended too), or allow them
    again. Only the session's owner may; it is audited."""
    try:
        api = AccessApi.configured(profile=profile, region=region, endpoint_url=endpoint_url)
        api.call("SetSessionJoinPolicy", {"SessionId": session_id, "AllowJoins": not refuse})
    except ApiError as exc:
        click.echo(f"\n{exc}", err=True)
        sys.exit(AWS_CLI_ERROR_EXIT)
    click.echo(f"Joins of {session_id} {'refused' if refuse else 'allowed'}.")
