"""Calls to the SSM JSON 1.1 API (``POST /``, ``X-Amz-Target: AmazonSSM.<Op>``)."""

from __future__ import annotations

import json
from typing import Any, Final

import aiohttp

from openssm.agent.config import AGENT_NAME, AGENT_VERSION
from openssm.agent.signing import CredentialSource, sign
from openssm.errors import OpenSSMError
from openssm.protocol.frames import go_json
from openssm.transport.bounded_read import BodyTooLarge, read_bounded

JSON_CONTENT_TYPE: Final = "application/x-amz-json-1.1"
TARGET_PREFIX: Final = "AmazonSSM."
MAX_RESPONSE_SIZE: Final = 1 << 20
USER_AGENT: Final = f"{AGENT_NAME}/{AGENT_VERSION} (python; linux)"


class SsmApiError(OpenSSMError, RuntimeError):
    """An error answer from the service, in AWS terms."""

    def __init__(self, code: str, message: str, status: int) -> None:
        super().__init__(f"{code}: {message}" if message else code)
        self.code = code
        self.message = message
        self.status = status


def api_url(endpoint: str) -> str:
    return endpoint.rstrip("/") + "/"


async def read_json_response(response: aiohttp.ClientResponse) -> dict[str, Any]:
    """The JSON object of a 2xx answer; raises ``SsmApiError`` for AWS-shaped errors."""
    try:
        raw = await read_bounded(response.content, MAX_RESPONSE_SIZE)
    except BodyTooLarge as exc:
        raise SsmApiError(
            "ResponseTooLarge", f"more than {MAX_RESPONSE_SIZE} bytes", response.status
        ) from exc
    try:
        body = json.loads(raw) if raw.strip() else {}
    except (UnicodeDecodeError, json.JSONDecodeError):
        body = None
    if response.status >= 300:
        code, message = f"HTTP{response.status}", raw[:300].decode("utf-8", "replace")
        if isinstance(body, dict):
            code = str(body.get("__type") or response.headers.get("x-amzn-ErrorType") or code)
            code = code.rsplit("#", 1)[-1]
            message = str(body.get("message") or body.get("Message") or "")
        raise SsmApiError(code, message, response.status)
    if not isinstance(body, dict):
        raise SsmApiError("InvalidResponse", "answer is not a JSON object", response.status)
    return body


def json_request_headers(operation: str) -> dict[str, str]:
    return {"Content-Type": JSON_CONTENT_TYPE, "X-Amz-Target": TARGET_PREFIX + operation}


class SsmApi:
    """Signed SSM API calls with the agent's (temporary) credentials."""

    def __init__(
        self, http: aiohttp.ClientSession, endpoint: str, region: str, credentials: CredentialSource
    ) -> None:
        self.http = http
        self.url = api_url(endpoint)
        self.region = region
        self.credentials = credentials

    async def call(self, operation: str, request: dict[str, Any]) -> dict[str, Any]:
        return await self.call_service(self.url, "ssm", json_request_headers(operation), request)

    async def call_service(
        self, url: str, service: str, headers: dict[str, str], request: dict[str, Any]
    ) -> dict[str, Any]:
        """One JSON 1.1 call to ``service`` at ``url`` (KMS too: ``openssm.agent.encryption``)."""
        body = go_json(request)
        headers = {**headers, "Content-Length": str(len(body))}
        signed = sign(
            "POST",
            url,
            headers,
            body,
            credentials=await self.credentials.current(),
            region=self.region,
            service=service,
            signed=["content-length", "content-type", "host", "x-amz-target"],
        )
        signed["User-Agent"] = USER_AGENT
        async with self.http.post(url, data=body, headers=signed) as response:
            return await read_json_response(response)
