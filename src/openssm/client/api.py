"""The SSM API calls the client makes itself (StartSession for ``openssm start-session``;
ResumeSession/TerminateSession during a session), through boto3 with the usual credential chain."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from typing import Any

import boto3
import botocore.config
import botocore.exceptions

from openssm.client.datachannel import ChannelError, backoff_delays

log = logging.getLogger(__name__)

RESUME_ATTEMPTS = 5
# Fail within a minute rather than botocore's default of several, so a dead endpoint is reported.
CLIENT_CONFIG = botocore.config.Config(connect_timeout=10, read_timeout=30, retries={"max_attempts": 3})
# Errors that retrying cannot fix.
_FINAL_ERROR_CODES = frozenset(
    {"DoesNotExistException", "AccessDeniedException", "AccessDenied", "InvalidClientTokenId"}
)


class ResumeFailed(ChannelError):
    """ResumeSession could not be called successfully."""


@dataclasses.dataclass(frozen=True)
class ApiTarget:
    """Where and as whom to call SSM: region/profile/endpoint as the plugin receives them."""

    region: str | None = None
    profile: str | None = None
    endpoint_url: str | None = None

    def client(self, service: str = "ssm") -> Any:
        """A boto3 client. The endpoint URL is for SSM only; KMS uses its default endpoint (or
        ``AWS_ENDPOINT_URL_KMS``), as the plugin does."""
        session = boto3.session.Session(profile_name=self.profile or None, region_name=self.region or None)
        endpoint = (self.endpoint_url or None) if service == "ssm" else None
        return session.client(service, endpoint_url=endpoint, config=CLIENT_CONFIG)


@dataclasses.dataclass(frozen=True)
class StartedSession:
    session_id: str
    token_value: str
    stream_url: str


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


def error_code(exc: BaseException) -> str:
    if isinstance(exc, botocore.exceptions.ClientError):
        return str(exc.response.get("Error", {}).get("Code", ""))
    return ""


class SessionApi:
    """ResumeSession/TerminateSession for one session (run in a thread: boto3 blocks)."""

    def __init__(self, target: ApiTarget, session_id: str) -> None:
        self.target = target
        self.session_id = session_id
        self._client: Any = None

    def _ssm(self) -> Any:
        if self._client is None:
            self._client = self.target.client()
        return self._client

    async def resume(self) -> str | None:
        """New TokenValue for the session; None/"" when the service says it has ended."""
        last_error: Exception | None = None
        for delay in [0.0, *backoff_delays(RESUME_ATTEMPTS - 1)]:
            await asyncio.sleep(delay)
            try:
                response = await asyncio.to_thread(self._call, "resume_session")
            except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
                last_error = exc
                log.debug("ResumeSession failed: %s", exc)
                if error_code(exc) in _FINAL_ERROR_CODES:
                    break
                continue
            token = response.get("TokenValue")
            return token if isinstance(token, str) else None
        raise ResumeFailed(f"ResumeSession failed: {last_error}")

    async def terminate(self) -> None:
        await asyncio.to_thread(self._call, "terminate_session")

    def _call(self, operation: str) -> dict[str, Any]:
        result: dict[str, Any] = getattr(self._ssm(), operation)(SessionId=self.session_id)
        return result
