"""``openssm start-session``: StartSession, then the session in this process.

Same options and error output as ``aws ssm start-session`` (exit code 255 on API errors), plus
``--listen-address`` and repeated ``--forward`` port mappings, which AWS's plugin lacks.

Start-up is on the way to every prompt, so this module imports little, not even click (about a
third of the instructions before StartSession went out): :data:`OPTIONS` describes the options
once (:mod:`openssm.plain_options`), the click command (:mod:`openssm.client.start_command`, for
``--help`` and every error) is built from it, and :func:`fast_start_session` parses a plain command
line itself (the ``openssm`` entry point tries it first) and leaves anything else to click. StartSession goes out
on a thread of its own (:mod:`openssm.client.api`; no botocore unless the configuration needs it)
while the main thread imports the session machinery (asyncio, the event loop, the protocol), and
the two meet before the data channel is dialled. ``bench/bench_session_latency.py`` measures it.
"""

from __future__ import annotations

import sys
import threading
from typing import TYPE_CHECKING, Any, Final

from openssm.client.api import NO_REGION as NO_REGION_CODE
from openssm.client.api import ApiError, ApiTarget, Caller, StartedSession, start_session
from openssm.client.parameters import ParameterError, parse_parameters
from openssm.client.trace import mark
from openssm.errors import OpenSSMError
from openssm.plain_options import Option, parse_plain

if TYPE_CHECKING:
    from collections.abc import Sequence

    from openssm.client.session import ClientOptions

AWS_CLI_ERROR_EXIT: Final = 255
COMMAND: Final = "start-session"
PORT_DOCUMENT: Final = "AWS-StartPortForwardingSession"
REMOTE_PORT_DOCUMENT: Final = "AWS-StartPortForwardingSessionToRemoteHost"


class OptionError(OpenSSMError, ValueError):
    """A bad option value (click's BadParameter, with ``param_hint`` when it names the option)."""

    def __init__(self, message: str, param_hint: str | None = None) -> None:
        super().__init__(message)
        self.param_hint = param_hint


class UsageProblem(OpenSSMError, ValueError):
    """Options that do not go together (click's UsageError)."""


OPTIONS: Final = (
    Option("--target", "target", "Managed node id (i-… or mi-…).", required=True),
    Option(
        "--document-name",
        "document_name",
        "Session document, e.g. AWS-StartPortForwardingSession (default: an interactive shell).",
    ),
    Option(
        "--parameters",
        "parameters",
        'JSON ({"portNumber":["80"]}) or shorthand (portNumber=80,localPortNumber=8080).',
    ),
    Option("--reason", "reason", "Reason recorded with the session."),
    Option(
        "--endpoint-url",
        "endpoint_url",
        "OpenSSM (SSM API) endpoint, e.g. https://openssm.example.com "
        "(default: $AWS_ENDPOINT_URL_SSM, $AWS_ENDPOINT_URL or the profile's endpoint_url).",
    ),
    Option(
        "--profile",
        "profile",
        "Named profile from your AWS config/credentials files (default: $AWS_DEFAULT_PROFILE, $AWS_PROFILE).",
    ),
    Option(
        "--region",
        "region",
        "Region to sign requests for (default: $AWS_DEFAULT_REGION or the profile's region).",
    ),
    Option(
        "--listen-address",
        "listen_address",
        "Local address for port forwarding listeners (AWS's plugin always uses localhost).",
        default="localhost",
        show_default=True,
    ),
    Option(
        "--forward",
        "forwards",
        "Forward a port (repeatable; each mapping is its own port session). Replaces --document-name.",
        multiple=True,
        metavar="[LOCAL:][HOST:]REMOTE",
    ),
)


def fast_start_session(args: Sequence[str]) -> None:
    """``openssm start-session ARGS…`` without click, when the command line is plain and its
    requests can be built; otherwise returns, and click takes the command line."""
    options = parse_plain(OPTIONS, args)
    if options is None:
        return
    try:
        requests = session_requests(**options)
    except (OptionError, UsageProblem):
        return  # click says what is wrong, in its words
    run_start_session(requests, **options)


class Forward:
    """One ``--forward [LOCAL_PORT:][HOST:]REMOTE_PORT`` mapping."""

    def __init__(self, spec: str) -> None:
        parts = spec.split(":")
        if not 1 <= len(parts) <= 3 or not all(parts):
            raise OptionError(f"{spec!r}: expected [LOCAL_PORT:][HOST:]REMOTE_PORT")
        self.host: str | None = None
        self.local_port = "0"
        if len(parts) == 3:
            self.local_port, self.host, remote = parts
        elif len(parts) == 2 and parts[0].isdigit():
            self.local_port, remote = parts
        elif len(parts) == 2:
            self.host, remote = parts
        else:
            remote = parts[0]
        if not (remote.isdigit() and self.local_port.isdigit()):
            raise OptionError(f"{spec!r}: ports must be numbers")
        self.remote_port = remote

    def request(self, target: str, reason: str | None) -> dict[str, Any]:
        parameters = {"portNumber": [self.remote_port], "localPortNumber": [self.local_port]}
        if self.host:
            parameters["host"] = [self.host]
        request: dict[str, Any] = {
            "Target": target,
            "DocumentName": REMOTE_PORT_DOCUMENT if self.host else PORT_DOCUMENT,
            "Parameters": parameters,
        }
        if reason:
            request["Reason"] = reason
        return request


def build_request(
    target: str, document_name: str | None, parameters: str | None, reason: str | None
) -> dict[str, Any]:
    request: dict[str, Any] = {"Target": target}
    if document_name:
        request["DocumentName"] = document_name
    if parameters:
        try:
            request["Parameters"] = parse_parameters(parameters)
        except ParameterError as exc:
            raise OptionError(str(exc), param_hint="--parameters") from exc
    if reason:
        request["Reason"] = reason
    return request


def api_error_text(exc: Exception) -> str:
    """The AWS CLI's wording for a failed call."""
    if isinstance(exc, ApiError) and exc.code == NO_REGION_CODE:
        return 'You must specify a region. You can also configure your region by running "aws configure".'
    return str(exc)


class Starting(threading.Thread):
    """StartSession for each request, on a thread, while the caller imports what the session needs.

    Stops at the first failure and keeps it (the sessions started before it are in ``started``).
    """

    def __init__(self, caller: Caller, requests: list[dict[str, Any]]) -> None:
        super().__init__(name="start-session", daemon=True)
        self._caller = caller
        self._requests = requests
        self.started: list[StartedSession] = []
        self.error: ApiError | ValueError | None = None

    def run(self) -> None:
        for request in self._requests:
            try:
                self.started.append(start_session(self._caller, request))
            except (ApiError, ValueError) as exc:
                self.error = exc
                return
        mark("start_session")


def session_requests(
    target: str,
    document_name: str | None,
    parameters: str | None,
    reason: str | None,
    forwards: Sequence[str],
    **_: Any,
) -> list[dict[str, Any]]:
    """The StartSession requests the options ask for (one per ``--forward``, else one)."""
    if forwards:
        if document_name or parameters:
            raise UsageProblem(
                "--forward chooses the port forwarding document itself; drop --document-name/--parameters"
            )
        return [Forward(spec).request(target, reason) for spec in forwards]
    return [build_request(target, document_name, parameters, reason)]


def run_start_session(
    requests: list[dict[str, Any]],
    *,
    target: str,
    endpoint_url: str | None,
    profile: str | None,
    region: str | None,
    listen_address: str,
    **_: Any,
) -> None:
    """Start the sessions and run them in this process; exits with the session's code."""
    mark("ready")
    api = ApiTarget(region=region, profile=profile, endpoint_url=endpoint_url)
    caller = api.caller()
    try:
        caller.prepare()  # whatever the call imports is imported here, not beside the imports below
    except ApiError as exc:
        _error(exc)
        sys.exit(AWS_CLI_ERROR_EXIT)
    mark("credentials")
    starting = Starting(caller, requests)
    starting.start()
    # Meanwhile the event loop and the framing; the rest is imported while the channel opens.
    from openssm.transport import runtime

    named_document = any("DocumentName" in request for request in requests)
    sys.exit(runtime.run(_run(starting, caller, api, listen_address, target, named_document)))


def _error(exc: Exception) -> None:
    print(f"\n{api_error_text(exc)}", file=sys.stderr, flush=True)  # the AWS CLI: "\n%s\n"


async def _run(
    starting: Starting, caller: Caller, api: ApiTarget, listen_address: str, target: str, named_document: bool
) -> int:
    import asyncio

    from openssm.client import startup

    with startup.QuickSwitches():
        imports = startup.Imports(port=named_document)  # without one, a shell
        try:
            await asyncio.to_thread(starting.join)
            if starting.error is not None:
                imports.skip()
                _error(starting.error)
                await asyncio.to_thread(_terminate_all, caller, starting.started)
                return AWS_CLI_ERROR_EXIT
            sessions = await startup.opened(starting.started)
        finally:
            imports.go_on()
        session = await imports.session_module()
    mark("imports")
    options = session.ClientOptions(
        api=api,
        listen_address=listen_address,
        target=target,
        max_chunk=session.chunk_size_from_env(session.FAST_CHUNK),
    )
    if len(sessions) == 1:
        code: int = await session.run_session(sessions[0], options)
        return code
    return await _run_many(sessions, options)


def _terminate_all(caller: Caller, sessions: list[StartedSession]) -> None:
    for session in sessions:
        try:
            caller.call("TerminateSession", {"SessionId": session.session_id})
        except ApiError:
            pass


async def _run_many(sessions: Sequence[StartedSession], options: ClientOptions) -> int:
    """Several port sessions side by side; Ctrl-C ends all of them."""
    import asyncio
    import signal

    from openssm.client.session import run_session

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    options.handle_signals = False
    options.stop = stop
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        codes = await asyncio.gather(*(run_session(session, options) for session in sessions))
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
    return max(codes)
