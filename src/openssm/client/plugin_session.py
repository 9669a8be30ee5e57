"""The plugin's session: its arguments read, its data channel opened, the session run.

Kept apart from :mod:`openssm.client.plugin`, which the AWS CLI starts with ``--version`` before
every session: that run imports neither this module nor what it needs (``typing``, ``json``, the
API's types), only the version string.
"""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, Any, NamedTuple

from openssm.client.plugin_usage import LEGACY_ARGC, RESPONSE_ENV_PREFIX, UsageError
from openssm.client.trace import mark

if TYPE_CHECKING:
    from openssm.client.api import ApiTarget, StartedSession


class PluginInvocation(NamedTuple):
    started: StartedSession
    region: str
    operation: str
    profile: str
    target: str
    endpoint_url: str
    named_document: bool = True  # the request names a document (without one: a shell)


def parse_invocation(argv: list[str], environ: dict[str, str] | os._Environ[str]) -> PluginInvocation:
    """Read the CLI's arguments (and the response env var, which is removed from ``environ``)."""
    # Imported here: the AWS CLI runs ``--version`` before every session, so that path stays light.
    from openssm.client.api import parse_start_session_response

    response_text = argv[1]
    if argv[1].startswith(RESPONSE_ENV_PREFIX):
        response_text = environ.get(argv[1], "")
        environ.pop(argv[1], None)  # the token must not leak into child processes
    try:
        started = parse_start_session_response(json.loads(response_text))
    except (json.JSONDecodeError, ValueError) as exc:
        raise UsageError(f"Cannot perform start session: invalid StartSession response: {exc}") from exc
    region, operation = argv[2], argv[3]
    profile = target = endpoint_url = ""
    named_document = True  # not told: as if it might be a port session
    if len(argv) > LEGACY_ARGC:
        profile = argv[4]
    if len(argv) > LEGACY_ARGC + 1:
        target = request_target(argv[5])
        named_document = "DocumentName" in json.loads(argv[5])  # an object: request_target checked
    if len(argv) > LEGACY_ARGC + 2:
        endpoint_url = argv[6]
    return PluginInvocation(started, region, operation, profile, target, endpoint_url, named_document)


def request_target(request_json: str) -> str:
    """``Target`` from the StartSession request parameters (the real plugin panics without it)."""
    try:
        request: Any = json.loads(request_json)
    except json.JSONDecodeError as exc:
        raise UsageError(f"Cannot perform start session: request parameters are not JSON: {exc}") from exc
    target = request.get("Target") if isinstance(request, dict) else None
    if not isinstance(target, str):
        raise UsageError("Cannot perform start session: request parameters lack a string Target")
    return target


async def run(invocation: PluginInvocation, api: ApiTarget) -> int:
    """The session, its data channel opened while the session machinery is imported (client.startup)."""
    from openssm.client import startup
    from openssm.client.terminal import READ_CHUNK

    with startup.QuickSwitches():
        imports = startup.Imports(port=invocation.named_document)
        try:
            (started,) = await startup.opened([invocation.started])
        finally:
            imports.go_on()
        session = await imports.session_module()
    mark("imports")
    # As AWS's plugin: 1 KiB messages, unless the user opts into larger ones.
    options = session.ClientOptions(
        api=api, target=invocation.target, max_chunk=session.chunk_size_from_env(READ_CHUNK)
    )
    code: int = await session.run_session(started, options)
    return code
