"""Calls to the SSM JSON 1.1 API (``POST /``, ``X-Amz-Target: AmazonSSM.<Op>``)."""

from __future__ import annotations

import json
from typing import Any, Final

from openssm.agent.config import AGENT_NAME, AGENT_VERSION
from openssm.agent.signing import CredentialSource, sign
from openssm.errors import OpenSSMError
from openssm.protocol.frames import go_json
from openssm.transport.http_exchange import HttpClient

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


def json_answer(status: int, raw: bytes, error_type: str | None = None) -> dict[str, Any]:
    """The JSON object of a 2xx answer; raises ``SsmApiError`` for AWS-shaped errors
    (``error_type``: the answer's ``x-amzn-ErrorType`` header, if any)."""
    try:
        body = json.loads(raw) if raw.strip() else {}
    except (UnicodeDecodeError, json.JSONDecodeError):
        body = None
    if status >= 300:
        code, message = f"HTTP{status}", raw[:300].decode("utf-8", "replace")
        if isinstance(body, dict):
            code = str(body.get("__type") or error_type or code)
            code = code.rsplit("#", 1)[-1]
            message = str(body.get("message") or body.get("Message") or "")
        raise SsmApiError(code, message, status)
    if not isinstance(body, dict):
        raise SsmApiError("InvalidResponse", "answer is not a JSON object", status)
    return body


async def post_json(http: HttpClient, url: str, headers: dict[str, str], body: bytes) -> dict[str, Any]:
    """POST a JSON 1.1 call; its answer as :func:`json_answer` reads it (at most
    ``MAX_RESPONSE_SIZE`` bytes: more is an ``HttpError``)."""
    answer = await http.post(url, headers=headers, body=body, limit=MAX_RESPONSE_SIZE)
    return json_answer(answer.status, answer.body, answer.header("x-amzn-ErrorType"))


def json_request_headers(operation: str) -> dict[str, str]:
    return {"Content-Type": JSON_CONTENT_TYPE, "X-Amz-Target": TARGET_PREFIX + operation}


class SsmApi:
    """Signed SSM API calls with the agent's (temporary) credentials."""

    def __init__(self, http: HttpClient, endpoint: str, region: str, credentials: CredentialSource) -> None:
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
        return await post_json(self.http, url, signed, body)
