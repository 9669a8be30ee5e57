"""What every session handler shares: outcome, failure, handshake (§2.4)."""

from __future__ import annotations

import abc
import asyncio
import dataclasses
import logging
import time
from collections.abc import Mapping
from typing import Any, Final

from openssm.agent import encryption
from openssm.agent.config import AgentSettings
from openssm.agent.data_channel import DataChannel
from openssm.agent.session_request import SessionRequest
from openssm.errors import OpenSSMError
from openssm.protocol import messages
from openssm.protocol.datachannel import StreamData
from openssm.protocol.frames import Frame, PayloadType
from openssm.protocol.session_cipher import (
    CUSTOMER_MESSAGE,
    ENCRYPTED_FROM_AGENT,
    ENCRYPTED_TO_AGENT,
    EncryptionError,
    SessionCipher,
)
from openssm.transport.datachannel import Delivered

log = logging.getLogger(__name__)

HANDSHAKE_TIMEOUT_MESSAGE: Final = (
    "Handshake timed out. Please ensure that you have the latest version of the session manager plugin."
)


@dataclasses.dataclass(frozen=True)
class Outcome:
    """What ``agent_task_complete`` reports."""

    status: str = "Success"  # FinalTaskStatus: Success | Failed | Cancelled
    output: str = ""


class SessionFailure(OpenSSMError):
    """The session cannot start or continue; the text goes to the client via the service."""


def error_output(message: str) -> str:
    """The real agent's layout of a failure in ``agent_task_complete.Output``."""
    return f"\n----------ERROR-------\n{message}\n"


def linux_properties(request: SessionRequest) -> dict[str, Any]:
    """``properties.linux`` of a command document (InteractiveCommands, NonInteractiveCommands)."""
    properties = request.properties
    linux = properties.get("linux") if isinstance(properties, dict) else None
    if not isinstance(linux, dict):
        raise SessionFailure("document has no properties.linux for this platform")
    return linux


@dataclasses.dataclass(frozen=True)
class HandshakeResult:
    client_version: str
    # Top-level keys of the response beyond AWS's three (OpenSSM clients' extension answers).
    extensions: Mapping[str, Any] = dataclasses.field(default_factory=dict)


class SessionHandler(abc.ABC):
    """One running session. ``run`` returns when the session's work is done."""

    # kms:Decrypt for sessions whose preferences name a kmsKeyId (set by ``Session``).
    kms: encryption.KmsApi | None = None

    def __init__(self, request: SessionRequest, channel: DataChannel, settings: AgentSettings) -> None:
        self.request = request
        self.channel = channel
        self.settings = settings
        self._handshake_response: asyncio.Future[Frame] | None = None
        self._challenge_response: asyncio.Future[Frame] | None = None
        self._cipher: SessionCipher | None = None

    @abc.abstractmethod
    async def run(self) -> Outcome: ...

    async def handle_input(self, frame: Frame) -> None:  # noqa: B027 (optional hook)
        """A client stream message in sequence (handshake responses excluded)."""

    async def _on_input(self, frame: Frame) -> None:
        if frame.payload_type in (PayloadType.HANDSHAKE_RESPONSE, PayloadType.ENC_CHALLENGE_RESPONSE):
            waiter = (
                self._handshake_response
                if frame.payload_type == PayloadType.HANDSHAKE_RESPONSE
                else self._challenge_response
            )
            if waiter is not None and not waiter.done():
                waiter.set_result(frame)
            return
        if self._cipher is not None and frame.payload_type in ENCRYPTED_TO_AGENT:
            try:
                frame = frame.with_payload(self._cipher.decrypt(frame.payload))
            except EncryptionError as exc:
                log.warning("session %s: dropped client input: %s", self.request.session_id, exc)
                return
        await self.handle_input(frame)

    # The data channel's handler contract (transport.datachannel.ChannelHandler).
    def ready(self, frame: Frame) -> bool:
        return True

    async def on_event(self, event: StreamData | Delivered) -> None:
        if isinstance(event, StreamData):
            await self._on_input(event.frame)

    def accept_input(self) -> None:
        self.channel.accept_input(self)

    async def handshake(self, session_type: str, properties: Any) -> HandshakeResult:
        """HandshakeRequest → HandshakeResponse (15 s) → HandshakeComplete."""
        started = time.monotonic_ns()
        self._handshake_response = asyncio.get_running_loop().create_future()
        self.accept_input()
        # KMS encryption as AWS's agent asks for it: when the preferences name a key, never for ports.
        key_id = encryption.kms_key_id(self.request) if session_type != "Port" else ""
        request = messages.handshake_request(
            session_type,
            properties,
            kms_key_id=key_id or None,
            challenge=encryption.handshake_challenge() if key_id else None,
        )
        await self.channel.send(PayloadType.HANDSHAKE_REQUEST, request.encode())
        response = await self._await_input(self._handshake_response)
        result = _check_handshake_response(response)
        if key_id:
            await self._start_encryption(response)
        complete = messages.HandshakeComplete(
            time.monotonic_ns() - started, CUSTOMER_MESSAGE if key_id else ""
        )
        await self.channel.send(PayloadType.HANDSHAKE_COMPLETE, complete.encode())
        return result

    async def _await_input(self, waiter: asyncio.Future[Frame]) -> Frame:
        try:
            async with asyncio.timeout(self.settings.handshake_timeout_seconds):
                return await waiter
        except TimeoutError:
            raise SessionFailure(HANDSHAKE_TIMEOUT_MESSAGE) from None

    async def _start_encryption(self, response: Frame) -> None:
        """kms:Decrypt of the client's data key, the challenge, then every stream payload encrypted."""
        if self.kms is None:
            raise SessionFailure("KMS encryption was requested but this agent has no KMS endpoint")
        try:
            cipher = await encryption.session_cipher(
                self.kms,
                messages.parse_handshake_response(response.payload).actions,
                session_id=self.request.session_id,
                instance_id=self.channel.instance_id,
            )
        except (encryption.KmsFailure, messages.MessageError) as exc:
            raise SessionFailure(f"KMS encryption failed: {exc}") from exc
        self._cipher = cipher
        self._challenge_response = asyncio.get_running_loop().create_future()
        secret, challenge = cipher.challenge()
        await self.channel.send(
            PayloadType.ENC_CHALLENGE_REQUEST, messages.EncryptionChallenge(challenge).encode()
        )
        answer = await self._await_input(self._challenge_response)
        try:
            answered = messages.parse_encryption_challenge(answer.payload).challenge
        except messages.MessageError as exc:
            raise SessionFailure(f"KMS encryption failed: {exc}") from exc
        if not cipher.check_answer(secret, answered):
            raise SessionFailure("KMS encryption failed: the client's challenge response does not match")
        # OPENSSM-KMS: from here the data channel encrypts what the agent sends (see DataChannel.send).
        self.channel.encrypt = lambda payload_type, payload: (
            cipher.encrypt(payload) if payload_type in ENCRYPTED_FROM_AGENT else payload
        )
        log.info(
            "session %s: encrypted with KMS key %s",
            self.request.session_id,
            encryption.kms_key_id(self.request),
        )


def _check_handshake_response(frame: Frame) -> HandshakeResult:
    try:
        response = messages.parse_handshake_response(frame.payload)
    except messages.MessageError as exc:
        raise SessionFailure(f"Handshake failed: {exc}") from exc
    if response.errors:
        raise SessionFailure("Handshake failed: " + "; ".join(response.errors))
    if not response.actions:
        raise SessionFailure("Handshake failed: no ProcessedClientActions")
    for action in response.actions:
        if action.action_status != messages.ActionStatus.SUCCESS:
            detail = action.error or "failed"
            raise SessionFailure(f"Handshake failed: client could not process {action.action_type}: {detail}")
    return HandshakeResult(response.client_version, dict(response.extensions))
