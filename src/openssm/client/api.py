"""The API calls the client makes itself: StartSession (``openssm start-session``), ResumeSession and
TerminateSession during a session, and kms:GenerateDataKey for KMS-encrypted sessions.

When :mod:`openssm.auth.credentials` resolves the configuration (static keys from the environment
or the shared files: the common case), the calls are signed and sent by
:mod:`openssm.client.aws_http`; otherwise boto3 makes them with its whole credential chain (SSO,
``credential_process``, assume-role, instance metadata...), imported only then. Either way a
failure is an :class:`ApiError` whose text is botocore's wording of it.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Final, NamedTuple, Protocol

from openssm.auth.credentials import NotServed
from openssm.client.aws_http import ApiError, JsonApiClient, ServiceError
from openssm.client.aws_settings import client_settings

if TYPE_CHECKING:
    from openssm.transport.websocket_connection import ClientWebSocket

__all__ = ["ApiError", "ApiTarget", "ServiceError", "StartedSession", "parse_start_session_response"]


NO_REGION: Final = "NoRegionError"  # ApiError.code when no region is configured anywhere


def _log() -> Any:
    """This module's logger (logging is imported when something is logged, not on the way to StartSession)."""
    import logging

    return logging.getLogger(__name__)


class Caller(Protocol):
    """Makes one API operation's call; raises :class:`ApiError`."""

    def prepare(self) -> None:
        """Do now, on this thread, what the first call would import or load."""

    def call(self, operation: str, params: Mapping[str, Any]) -> dict[str, Any]: ...


class ApiTarget(NamedTuple):
    """Where and as whom to call SSM: region/profile/endpoint as the plugin receives them."""

    region: str | None = None
    profile: str | None = None
    endpoint_url: str | None = None

    def caller(self, service: str = "ssm") -> Caller:
        """A caller for ``service``. The endpoint URL is for SSM only; KMS uses its own (or
        ``AWS_ENDPOINT_URL_KMS``), as the plugin does."""
        endpoint = (self.endpoint_url or None) if service == "ssm" else None
        try:
            settings = client_settings(
                service, profile=self.profile or None, region=self.region or None, endpoint_url=endpoint
            )
            return JsonApiClient(settings)
        except NotServed as exc:
            _log().debug("%s calls go through botocore: %s", service, exc)
            return BotoCaller(self, service)

    def kms(self) -> KmsClient:
        return KmsClient(self.caller("kms"))

    def boto3_client(self, service: str = "ssm") -> Any:
        """A boto3 client for ``service`` (imported on first use: not on the start-up path), for
        commands that want boto3's full surface (paginators, every operation) rather than a caller."""
        import boto3
        import botocore.config

        config = botocore.config.Config(connect_timeout=10, read_timeout=30, retries={"max_attempts": 3})
        session = boto3.session.Session(profile_name=self.profile or None, region_name=self.region or None)
        endpoint = (self.endpoint_url or None) if service == "ssm" else None
        return session.client(service, endpoint_url=endpoint, config=config)


class BotoCaller:
    """The same calls through boto3, for configurations only botocore resolves."""

    def __init__(self, target: ApiTarget, service: str) -> None:
        self._target = target
        self._service = service
        self._client: Any = None

    def prepare(self) -> None:
        """Import boto3 and make the client now (on the calling thread)."""
        import botocore.exceptions

        if self._client is None:
            try:
                self._client = self._target.boto3_client(self._service)
            except botocore.exceptions.BotoCoreError as exc:
                raise _api_error(exc, "") from exc

    def call(self, operation: str, params: Mapping[str, Any]) -> dict[str, Any]:
        import botocore.exceptions

        self.prepare()
        method = "".join(f"_{char.lower()}" if char.isupper() else char for char in operation).lstrip("_")
        try:
            result: dict[str, Any] = getattr(self._client, method)(**params)
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
            raise _api_error(exc, operation) from exc
        return result


def _api_error(exc: Exception, operation: str) -> ApiError:
    import botocore.exceptions

    if isinstance(exc, botocore.exceptions.ClientError):
        code = str(exc.response.get("Error", {}).get("Code", ""))
        return ApiError(str(exc), code=code, operation=operation)
    if isinstance(exc, botocore.exceptions.NoRegionError):
        return ApiError(str(exc), code=NO_REGION, operation=operation)
    return ApiError(str(exc), operation=operation)


class KmsClient:
    """kms:GenerateDataKey with boto3's call shape (blobs as bytes), for ``encryption.py``."""

    def __init__(self, caller: Caller) -> None:
        self._caller = caller

    def generate_data_key(self, **params: Any) -> dict[str, Any]:
        response = self._caller.call("GenerateDataKey", params)
        try:
            for name in ("CiphertextBlob", "Plaintext"):
                value = response.get(name)
                if isinstance(value, str):  # JSON carries blobs in base64; boto3 has decoded them
                    response[name] = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ApiError(f"GenerateDataKey answered a blob that is not base64: {exc}") from exc
        return response


# -- StartSession ---------------------------------------------------------------------------------------


class StartedSession(NamedTuple):
    session_id: str
    token_value: str
    stream_url: str
    # Set when the data channel was opened at start-up (client.startup), with this client id.
    client_id: str | None = None
    opened: ClientWebSocket | None = None


def parse_start_session_response(data: Any) -> StartedSession:
    """The StartSession response (or the JSON the AWS CLI hands the plugin)."""
    if not isinstance(data, dict):
        raise ValueError("the StartSession response is not a JSON object")
    values = {}
    for key in ("SessionId", "TokenValue", "StreamUrl"):
        value = data.get(key)
        if not isinstance(value, str) or (key != "TokenValue" and not value):
            raise ValueError(f"the StartSession response lacks a string {key}")
        values[key] = value
    if not values["StreamUrl"].startswith(("ws://", "wss://")):
        raise ValueError(f"StreamUrl must be a ws:// or wss:// URL, got {values['StreamUrl']!r}")
    return StartedSession(values["SessionId"], values["TokenValue"], values["StreamUrl"])


def start_session_problems(request: Mapping[str, Any]) -> list[str]:
    """botocore's parameter validation of a StartSession request, for what our CLI can send: the
    service model's minimum lengths (botocore checks minimums, not maximums or patterns), in the
    request's order, worded as botocore words them."""
    problems = []

    def too_short(name: str, value: str, minimum: int = 1) -> None:
        if len(value) < minimum:
            problems.append(
                f"Invalid length for parameter {name}, value: {len(value)}, valid min length: {minimum}"
            )

    for field, given in request.items():
        if field in ("Target", "Reason"):
            too_short(field, str(given))
        elif field == "Parameters":
            for key, values in dict(given or {}).items():
                too_short(f"Parameters (key: {key})", key)
                for index, value in enumerate(values):
                    too_short(f"Parameters.{key}[{index}]", str(value))
    return problems


def start_session(caller: Caller, request: Mapping[str, Any]) -> StartedSession:
    """StartSession; raises ApiError (or ValueError for an answer that is not a session)."""
    problems = start_session_problems(request)
    if problems:
        raise ApiError("Parameter validation failed:\n" + "\n".join(problems), operation="StartSession")
    return parse_start_session_response(caller.call("StartSession", request))


# -- during a session ------------------------------------------------------------------------------------


class SessionApi:
    """ResumeSession/TerminateSession for one session (blocking calls, run in a thread)."""

    def __init__(self, target: ApiTarget, session_id: str) -> None:
        self.target = target
        self.session_id = session_id
        self._caller: Caller | None = None
        self.stream_url: str | None = None  # the last ResumeSession's (another node, if ours died)

    def _ssm(self) -> Caller:
        if self._caller is None:
            self._caller = self.target.caller()
        return self._caller

    async def resume(self) -> str | None:
        """One ResumeSession call: the new TokenValue, or None/"" when the service says the session
        has ended. Raises ``ResumeFailed`` (final or not); the data channel retries within its window."""

        from openssm.client.datachannel import ResumeFailed

        try:
            response = await _in_daemon_thread(self._call, "ResumeSession")
        except ApiError as exc:
            _log().debug("ResumeSession failed: %s", exc)
            raise ResumeFailed(f"ResumeSession failed: {exc}", final=exc.code in _FINAL_ERROR_CODES) from exc
        token = response.get("TokenValue")
        url = response.get("StreamUrl")
        self.stream_url = url if isinstance(url, str) and url else None
        return token if isinstance(token, str) else None

    async def terminate(self) -> None:
        import asyncio

        await asyncio.to_thread(self._call, "TerminateSession")

    def _call(self, operation: str) -> dict[str, Any]:
        return self._ssm().call(operation, {"SessionId": self.session_id})


async def _in_daemon_thread(function: Callable[[str], dict[str, Any]], argument: str) -> dict[str, Any]:
    """``asyncio.to_thread`` on a daemon thread of its own: a call still retrying when its caller gave
    up (the resume window ended) neither holds the process at exit nor the event loop at shutdown."""
    import asyncio
    import contextlib
    import threading

    loop = asyncio.get_running_loop()
    future: asyncio.Future[dict[str, Any]] = loop.create_future()

    def settle(result: dict[str, Any] | None, error: BaseException | None) -> None:
        if future.done():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result or {})

    def work() -> None:
        try:
            outcome: tuple[dict[str, Any] | None, BaseException | None] = (function(argument), None)
        except BaseException as exc:  # handed to the waiting coroutine, as to_thread does
            outcome = (None, exc)
        with contextlib.suppress(RuntimeError):  # the loop closed while the call went on
            loop.call_soon_threadsafe(settle, *outcome)

    threading.Thread(target=work, name=f"openssm-{argument}", daemon=True).start()
    return await future


# Errors that retrying cannot fix.
_FINAL_ERROR_CODES: Final = frozenset(
    {"DoesNotExistException", "AccessDeniedException", "AccessDenied", "InvalidClientTokenId"}
)
