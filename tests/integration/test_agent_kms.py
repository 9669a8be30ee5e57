"""The agent's side of KMS session encryption, against the fake service (which answers kms:Decrypt with
the test's data key, as the server would): the KMSEncryption action, the Decrypt call (signed for
``kms``, the session's encryption context), the challenge, encrypted output and decrypted input; a
wrong challenge answer or a refused Decrypt ends the session."""

from __future__ import annotations

import base64
import json
import os
from typing import Any

from tests.unit.agent.fake_mgs import Recorded, agent_session, session_content, task_result

from openssm.protocol.frames import PayloadType, go_json
from openssm.protocol.session_cipher import CUSTOMER_MESSAGE, SessionCipher

SID = "tester-0123456789abcdef0"
INSTANCE = "i-0123456789abcdef0"
DATA_KEY = os.urandom(64)
BLOB = b"ciphertext-of-the-data-key"


def _content() -> dict[str, Any]:
    return session_content(SID, "Standard_Stream", None, inputs={"kmsKeyId": "alias/sessions"})


def _response(blob: bytes = BLOB) -> bytes:
    actions = [
        {"ActionType": "SessionType", "ActionStatus": 1, "ActionResult": None, "Error": ""},
        {
            "ActionType": "KMSEncryption",
            "ActionStatus": 1,
            "ActionResult": {"KMSCipherTextKey": base64.b64encode(blob).decode(), "KMSCipherTextHash": None},
            "Error": "",
        },
    ]
    return go_json({"ClientVersion": "1.2.677.0", "ProcessedClientActions": actions, "Errors": None})


def _decrypt(recorded: Recorded) -> dict[str, Any]:
    assert recorded.verify().service == "kms"
    body = recorded.json()
    if base64.b64decode(body["CiphertextBlob"]) != BLOB:
        raise ValueError("not the data key")
    assert body["EncryptionContext"] == {"aws:ssm:SessionId": SID, "aws:ssm:TargetId": INSTANCE}
    return {
        "KeyId": "arn:aws:kms:us-east-1:123456789012:key/k",
        "Plaintext": base64.b64encode(DATA_KEY).decode(),
    }


def _challenge(payload: bytes) -> bytes:
    return base64.b64decode(json.loads(payload)["Challenge"])


async def test_an_encrypted_shell() -> None:
    client_cipher = SessionCipher.from_data_key(DATA_KEY)
    async with agent_session(_content()) as (fake, client):
        fake.api_answers["TrentService.Decrypt"] = _decrypt
        await client.wait_for(
            lambda: bool(client.outputs_of(PayloadType.HANDSHAKE_REQUEST)), "HandshakeRequest"
        )
        actions = client.outputs_of(PayloadType.HANDSHAKE_REQUEST)[0].json()["RequestedClientActions"]
        kms = actions[1]["ActionParameters"]
        assert actions[1]["ActionType"] == "KMSEncryption" and kms["KMSKeyId"] == "alias/sessions"
        assert len(base64.b64decode(kms["Challenge"])) == 16
        await client.send_input(PayloadType.HANDSHAKE_RESPONSE, _response())
        await client.wait_for(lambda: bool(client.outputs_of(PayloadType.ENC_CHALLENGE_REQUEST)), "challenge")
        challenge = _challenge(client.outputs_of(PayloadType.ENC_CHALLENGE_REQUEST)[0].payload)
        answer = client_cipher.answer_challenge(challenge)
        await client.send_input(
            PayloadType.ENC_CHALLENGE_RESPONSE, go_json({"Challenge": base64.b64encode(answer).decode()})
        )
        await client.wait_for(lambda: bool(client.outputs_of(PayloadType.HANDSHAKE_COMPLETE)), "complete")
        assert (
            client.outputs_of(PayloadType.HANDSHAKE_COMPLETE)[0].json()["CustomerMessage"] == CUSTOMER_MESSAGE
        )
        await client.send_input(PayloadType.OUTPUT, client_cipher.encrypt(b"echo kms-$((6*7)); exit\r"))

        def shown() -> bytes:
            return b"".join(client_cipher.decrypt(f.payload) for f in client.outputs_of(PayloadType.OUTPUT))

        await client.wait_for(lambda: b"kms-42" in shown(), "the decrypted output")
        result = await task_result(fake)
    assert result["FinalTaskStatus"] == "Success"
    assert b"kms-42" not in client.output_bytes  # on the wire, only ciphertext


async def test_a_wrong_challenge_answer_or_a_refused_decrypt_ends_the_session() -> None:
    async with agent_session(_content()) as (fake, client):
        fake.api_answers["TrentService.Decrypt"] = _decrypt
        await client.wait_for(
            lambda: bool(client.outputs_of(PayloadType.HANDSHAKE_REQUEST)), "HandshakeRequest"
        )
        await client.send_input(PayloadType.HANDSHAKE_RESPONSE, _response())
        await client.wait_for(lambda: bool(client.outputs_of(PayloadType.ENC_CHALLENGE_REQUEST)), "challenge")
        stranger = SessionCipher.from_data_key(os.urandom(64))
        wrong = stranger.encrypt(os.urandom(64))
        await client.send_input(
            PayloadType.ENC_CHALLENGE_RESPONSE, go_json({"Challenge": base64.b64encode(wrong).decode()})
        )
        result = await task_result(fake)
    assert result["FinalTaskStatus"] == "Failed" and "challenge response does not match" in result["Output"]
    assert not client.outputs_of(PayloadType.HANDSHAKE_COMPLETE)

    async with agent_session(_content()) as (fake, client):
        fake.api_answers["TrentService.Decrypt"] = _decrypt
        await client.wait_for(
            lambda: bool(client.outputs_of(PayloadType.HANDSHAKE_REQUEST)), "HandshakeRequest"
        )
        await client.send_input(PayloadType.HANDSHAKE_RESPONSE, _response(b"another key's ciphertext"))
        result = await task_result(fake)
    assert result["FinalTaskStatus"] == "Failed" and "KMS Decrypt failed" in result["Output"]
    assert not client.outputs_of(PayloadType.ENC_CHALLENGE_REQUEST)
