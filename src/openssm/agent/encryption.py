"""KMS session encryption, agent side (``session-manager-protocol.md`` §2.5), as AWS's agent does it.

When the session's preferences name a ``kmsKeyId`` (and the session is not a port session), the
handshake asks the client for ``KMSEncryption`` with a 16-byte random challenge. The client answers
with the ciphertext of a 64-byte data key it got from ``kms:GenerateDataKey``; the agent calls
``kms:Decrypt`` on it with the node's credentials and the context ``{"aws:ssm:SessionId",
"aws:ssm:TargetId"}`` — at ``kms_endpoint`` (AWS's ``Kms.Endpoint``), else the node's API endpoint,
which serves OpenSSM's KMS — derives the two directional keys, and checks the client holds them
with the encryption challenge. From then on Output/StdErr/ExitCode are encrypted and client Output
decrypted (:class:`openssm.protocol.session_cipher.SessionCipher`).
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Sequence
from typing import Final

from openssm.agent.session_request import SessionRequest
from openssm.agent.ssm_api import JSON_CONTENT_TYPE, SsmApi, SsmApiError, api_url
from openssm.errors import OpenSSMError
from openssm.protocol.messages import ActionType, ProcessedAction
from openssm.protocol.session_cipher import EncryptionError, SessionCipher, encryption_context

HANDSHAKE_CHALLENGE_BYTES: Final = 16
MAX_BLOB_CHARS: Final = 8192


class KmsFailure(OpenSSMError):
    """The session's key could not be agreed; the text says why (it ends the session)."""


def kms_key_id(request: SessionRequest) -> str:
    """The ``kmsKeyId`` preference of the session ("" when it is not encrypted)."""
    value = request.inputs.get("kmsKeyId")
    return value.strip() if isinstance(value, str) else ""


class KmsApi:
    """``kms:Decrypt`` with the node's credentials (those of its API calls)."""

    def __init__(self, ssm: SsmApi, endpoint: str = "") -> None:
        self._ssm = ssm
        self._endpoint = endpoint

    @property
    def url(self) -> str:
        """The configured KMS endpoint, else the node's current API endpoint (it follows fail-over)."""
        return api_url(self._endpoint) if self._endpoint else self._ssm.url

    async def decrypt(self, blob: bytes, context: dict[str, str]) -> bytes:
        headers = {"Content-Type": JSON_CONTENT_TYPE, "X-Amz-Target": "TrentService.Decrypt"}
        request = {"CiphertextBlob": base64.b64encode(blob).decode("ascii"), "EncryptionContext": context}
        answer = await self._ssm.call_service(self.url, "kms", headers, request)
        plaintext = answer.get("Plaintext")
        if not isinstance(plaintext, str):
            raise KmsFailure("KMS Decrypt answered no Plaintext")
        try:
            return base64.b64decode(plaintext, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise KmsFailure("KMS Decrypt answered a Plaintext that is not base64") from exc


def handshake_challenge() -> str:
    """The ``Challenge`` parameter of the KMSEncryption action: 16 random bytes, base64."""
    return base64.b64encode(os.urandom(HANDSHAKE_CHALLENGE_BYTES)).decode("ascii")


def _ciphertext_key(actions: Sequence[ProcessedAction]) -> bytes:
    """``KMSCipherTextKey`` of the client's processed KMSEncryption action."""
    for action in actions:
        if action.action_type == ActionType.KMS_ENCRYPTION.value:
            result = action.action_result
            encoded = result.get("KMSCipherTextKey") if isinstance(result, dict) else None
            if not isinstance(encoded, str) or not 0 < len(encoded) <= MAX_BLOB_CHARS:
                raise KmsFailure("the client sent no KMSCipherTextKey")
            try:
                return base64.b64decode(encoded, validate=True)
            except (binascii.Error, ValueError) as exc:
                raise KmsFailure("the client's KMSCipherTextKey is not base64") from exc
    raise KmsFailure("the client did not process the KMSEncryption action")


async def session_cipher(
    kms: KmsApi, actions: Sequence[ProcessedAction], *, session_id: str, instance_id: str
) -> SessionCipher:
    """The agent's cipher from the client's processed actions (``kms:Decrypt`` of its data key)."""
    blob = _ciphertext_key(actions)
    try:
        plaintext = await kms.decrypt(blob, encryption_context(session_id, instance_id))
        return SessionCipher.from_data_key(plaintext, agent=True)
    except (SsmApiError, OSError, TimeoutError) as exc:
        raise KmsFailure(f"KMS Decrypt failed: {exc}") from exc
    except EncryptionError as exc:
        raise KmsFailure(str(exc)) from exc
