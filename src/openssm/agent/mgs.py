"""Message gateway ("ssmmessages") REST calls and WebSocket dials, signed as the real agent signs them."""

from __future__ import annotations

import urllib.parse
import uuid
import xml.etree.ElementTree as ElementTree
from typing import Final

from openssm.agent.signing import CredentialSource, sign
from openssm.errors import OpenSSMError
from openssm.protocol.frames import MAX_FRAME_SIZE, go_json
from openssm.protocol.websocket import CONTROL_READ_BUFFER, SCRATCH_SIZE
from openssm.transport.http_exchange import HttpClient, HttpError
from openssm.transport.websocket_connection import ClientWebSocket

SERVICE: Final = "ssmmessages"
MAX_XML_SIZE: Final = 1 << 16
GO_USER_AGENT: Final = "Go-http-client/1.1"
CLOSE_TIMEOUT: Final = 1.0  # the real agent just drops the TCP connection; never wait long


class MgsError(OpenSSMError, RuntimeError):
    """The gateway refused or failed a channel request."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status

    @property
    def session_gone(self) -> bool:
        return "already terminated" in str(self).lower() or self.status in {404, 410}


def token_from_xml(text: bytes) -> str:
    """``TokenValue`` from a CreateControlChannel/CreateDataChannel answer, found by element name."""
    if len(text) > MAX_XML_SIZE:
        raise MgsError(f"gateway answer larger than {MAX_XML_SIZE} bytes")
    try:
        # Size-bounded, from our own gateway; expat >= 2.4 also caps entity expansion.
        root = ElementTree.fromstring(text)  # noqa: S314
    except ElementTree.ParseError as exc:
        raise MgsError(f"gateway answer is not XML: {exc}") from exc
    for element in root.iter():
        if element.tag.rsplit("}", 1)[-1] == "TokenValue" and element.text:
            return element.text.strip()
    raise MgsError("gateway answer carries no TokenValue")


def websocket_url(endpoint: str, path: str, query: str) -> str:
    """``ws``/``wss`` following the endpoint's scheme (plain http is allowed for the dev server)."""
    parts = urllib.parse.urlsplit(endpoint)
    scheme = "wss" if parts.scheme in {"https", "wss"} else "ws"
    return urllib.parse.urlunsplit((scheme, parts.netloc, path, query, ""))


def rest_url(endpoint: str, path: str) -> str:
    parts = urllib.parse.urlsplit(endpoint)
    scheme = "https" if parts.scheme in {"https", "wss"} else "http"
    return urllib.parse.urlunsplit((scheme, parts.netloc, path, "", ""))


class MgsClient:
    def __init__(
        self,
        http: HttpClient,
        endpoint: str,
        region: str,
        credentials: CredentialSource,
        *,
        ping_seconds: float = 54.0,
    ) -> None:
        parts = urllib.parse.urlsplit(endpoint)
        if not parts.scheme or not parts.netloc:
            raise ValueError(f"gateway endpoint needs a scheme and host: {endpoint!r}")
        self.http = http
        self.endpoint = endpoint
        self.region = region
        self.credentials = credentials
        self.ping_seconds = ping_seconds
        # The node the control channel is open on, while it is: the node that serves the sessions it
        # delivers, so their data channels go there even when the agent's calls have moved to
        # another node (``endpoint`` fails over on one unanswered call; that node would refuse a
        # session its live peer serves with 503, and the session would never open).
        self.control_endpoint: str | None = None

    def session_endpoint(self) -> str:
        """Where a session's data channel is dialled: the control channel's node, else ``endpoint``
        (no control channel: its node is gone, and the session resumes where the calls went)."""
        return self.control_endpoint or self.endpoint

    async def _create_token(self, path: str, request: dict[str, str], endpoint: str | None) -> str:
        url = rest_url(endpoint or self.endpoint, path)
        body = go_json(request)
        headers = sign(
            "POST",
            url,
            {"Content-Type": "application/json"},
            body,
            credentials=await self.credentials.current(),
            region=self.region,
            service=SERVICE,
            signed=["content-type", "host"],
        )
        headers["User-Agent"] = GO_USER_AGENT
        try:
            response = await self.http.post(url, headers=headers, body=body, limit=MAX_XML_SIZE)
        except HttpError as exc:
            raise MgsError(f"{path}: {exc}") from exc
        text = response.body
        if response.status != 201:
            detail = text[:300].decode("utf-8", "replace")
            raise MgsError(f"{path}: HTTP {response.status}: {detail}", response.status)
        return token_from_xml(text)

    # Each call below goes to ``endpoint`` when given (the token and its WebSocket must reach the
    # same node, whatever fails over in between), else to the current ``self.endpoint``.

    async def create_control_channel(self, instance_id: str, endpoint: str | None = None) -> str:
        return await self._create_token(
            f"/v1/control-channel/{urllib.parse.quote(instance_id, safe='')}",
            {"MessageSchemaVersion": "1.0", "RequestId": str(uuid.uuid4())},
            endpoint,
        )

    async def create_data_channel(self, session_id: str, endpoint: str | None = None) -> str:
        return await self._create_token(
            f"/v1/data-channel/{urllib.parse.quote(session_id, safe='')}",
            {"MessageSchemaVersion": "1.0", "RequestId": str(uuid.uuid4()), "ClientId": ""},
            endpoint,
        )

    async def _signed_headers(self, url: str) -> dict[str, str]:
        headers = sign(
            "GET",
            url,
            {},
            b"",
            credentials=await self.credentials.current(),
            region=self.region,
            service=SERVICE,
            signed=["host"],
        )
        headers["User-Agent"] = GO_USER_AGENT
        return headers

    async def connect_control(self, instance_id: str, endpoint: str | None = None) -> ClientWebSocket:
        url = websocket_url(
            endpoint or self.endpoint,
            f"/v1/control-channel/{urllib.parse.quote(instance_id, safe='')}",
            "role=subscribe&stream=input",
        )
        # A few small frames a minute: a small read buffer (the data channels' is 64 KiB).
        return await self._dial(url, read_buffer=CONTROL_READ_BUFFER)

    async def connect_data(self, session_id: str, endpoint: str | None = None) -> ClientWebSocket:
        url = websocket_url(
            endpoint or self.endpoint,
            f"/v1/data-channel/{urllib.parse.quote(session_id, safe='')}",
            "role=publish_subscribe",
        )
        return await self._dial(url)

    async def _dial(self, url: str, read_buffer: int = SCRATCH_SIZE) -> ClientWebSocket:
        """A channel's WebSocket, framed by ``websocket_connection``, pinging every ``ping_seconds``
        (the real agent's 54 s). A refusal names its status, never our signed headers."""
        return await self.http.websocket(
            url,
            headers=await self._signed_headers(url),
            max_message=MAX_FRAME_SIZE,
            heartbeat=self.ping_seconds,
            close_timeout=CLOSE_TIMEOUT,  # the real agent just drops the TCP connection
            read_buffer=read_buffer,
        )
