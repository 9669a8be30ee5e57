"""OpenSSM's KMS subset through boto3's kms client and the real ``aws kms`` CLI against a real server:
keys and aliases, data keys bound to their encryption context, IAM on the key ARN, AWS's error shapes,
the audit log, and key material that is never stored in clear."""

from __future__ import annotations

import base64
import pathlib
from collections.abc import Iterator
from typing import Any

import botocore.exceptions
import pytest
import sqlalchemy as sa
from tests.integration.api_harness import ACCOUNT, REGION, ApiServer, make_user

from openssm.store import audit_log
from openssm.store.tables import kms_keys

CONTEXT = {"aws:ssm:SessionId": "alice-0123456789abcdef0", "aws:ssm:TargetId": "mi-0123456789abcdef0"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    running = ApiServer(tmp_path_factory.mktemp("kms") / "data").start()
    try:
        yield running
    finally:
        running.stop()


def _code(exc: pytest.ExceptionInfo[botocore.exceptions.ClientError]) -> str:
    return str(exc.value.response["Error"]["Code"])


def test_keys_aliases_and_a_data_key_that_decrypts_only_in_its_context(server: ApiServer) -> None:
    kms = server.client("kms")
    created = kms.create_key(Description="session encryption")["KeyMetadata"]
    key_id = created["KeyId"]
    arn = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/{key_id}"
    assert created["Arn"] == arn and created["KeyState"] == "Enabled" and created["Enabled"] is True
    kms.create_alias(AliasName="alias/ssm-sessions", TargetKeyId=key_id)
    for name in (key_id, arn, "alias/ssm-sessions", f"arn:aws:kms:{REGION}:{ACCOUNT}:alias/ssm-sessions"):
        assert kms.describe_key(KeyId=name)["KeyMetadata"]["KeyId"] == key_id
    assert {"KeyId": key_id, "KeyArn": arn} in kms.list_keys()["Keys"]
    aliases = kms.list_aliases(KeyId=key_id)["Aliases"]
    assert [(a["AliasName"], a["TargetKeyId"]) for a in aliases] == [("alias/ssm-sessions", key_id)]

    data = kms.generate_data_key(KeyId="alias/ssm-sessions", NumberOfBytes=64, EncryptionContext=CONTEXT)
    assert data["KeyId"] == arn and len(data["Plaintext"]) == 64
    assert data["Plaintext"] not in data["CiphertextBlob"]
    decrypted = kms.decrypt(
        CiphertextBlob=data["CiphertextBlob"], EncryptionContext=dict(reversed(CONTEXT.items()))
    )
    assert decrypted["Plaintext"] == data["Plaintext"] and decrypted["KeyId"] == arn
    for wrong in ({}, {**CONTEXT, "aws:ssm:TargetId": "mi-00000000000000000"}, {**CONTEXT, "extra": "x"}):
        with pytest.raises(botocore.exceptions.ClientError) as refused:
            kms.decrypt(CiphertextBlob=data["CiphertextBlob"], EncryptionContext=wrong)
        assert _code(refused) == "InvalidCiphertextException"
    tampered = bytearray(data["CiphertextBlob"])
    tampered[-1] ^= 1
    with pytest.raises(botocore.exceptions.ClientError) as refused:
        kms.decrypt(CiphertextBlob=bytes(tampered), EncryptionContext=CONTEXT)
    assert _code(refused) == "InvalidCiphertextException"
    assert len(kms.generate_data_key(KeyId=key_id, KeySpec="AES_256")["Plaintext"]) == 32

    sealed = kms.encrypt(KeyId=key_id, Plaintext=b"secret", EncryptionContext={"purpose": "test"})
    assert (
        kms.decrypt(CiphertextBlob=sealed["CiphertextBlob"], EncryptionContext={"purpose": "test"})[
            "Plaintext"
        ]
        == b"secret"
    )
    other = kms.create_key()["KeyMetadata"]["KeyId"]
    with pytest.raises(botocore.exceptions.ClientError) as refused:
        kms.decrypt(
            CiphertextBlob=sealed["CiphertextBlob"], KeyId=other, EncryptionContext={"purpose": "test"}
        )
    assert _code(refused) == "IncorrectKeyException"


def test_errors_in_aws_shapes(server: ApiServer) -> None:
    kms = server.client("kms")
    key_id = kms.create_key()["KeyMetadata"]["KeyId"]
    cases: list[tuple[str, dict[str, Any], str]] = [
        ("describe_key", {"KeyId": "00000000-0000-0000-0000-000000000000"}, "NotFoundException"),
        ("describe_key", {"KeyId": "alias/none"}, "NotFoundException"),
        ("generate_data_key", {"KeyId": key_id}, "ValidationException"),
        (
            "generate_data_key",
            {"KeyId": key_id, "KeySpec": "AES_256", "NumberOfBytes": 32},
            "ValidationException",
        ),
        ("generate_data_key", {"KeyId": key_id, "NumberOfBytes": 1025}, "ValidationException"),
        ("decrypt", {"CiphertextBlob": b"not ours"}, "InvalidCiphertextException"),
        ("create_alias", {"AliasName": "no-prefix", "TargetKeyId": key_id}, "ValidationException"),
        ("create_key", {"Policy": "{}"}, "UnsupportedOperationException"),
    ]
    for method, params, code in cases:
        with pytest.raises(botocore.exceptions.ClientError) as refused:
            getattr(kms, method)(**params)
        assert _code(refused) == code, (method, params)
    kms.create_alias(AliasName="alias/taken", TargetKeyId=key_id)
    with pytest.raises(kms.exceptions.AlreadyExistsException):
        kms.create_alias(AliasName="alias/taken", TargetKeyId=key_id)


def test_iam_on_the_key_arn_is_enforced_and_audited(server: ApiServer) -> None:
    kms = server.client("kms")
    allowed = kms.create_key()["KeyMetadata"]["Arn"]
    other = kms.create_key()["KeyMetadata"]["Arn"]
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": "kms:GenerateDataKey", "Resource": allowed},
            {
                "Effect": "Allow",
                "Action": "kms:Decrypt",
                "Resource": allowed,
                "Condition": {
                    "StringEquals": {"kms:EncryptionContext:aws:ssm:TargetId": CONTEXT["aws:ssm:TargetId"]}
                },
            },
        ],
    }
    user = server.client("kms", make_user(server, "kms-user", policy))
    data = user.generate_data_key(KeyId=allowed, NumberOfBytes=64, EncryptionContext=CONTEXT)
    assert (
        user.decrypt(CiphertextBlob=data["CiphertextBlob"], EncryptionContext=CONTEXT)["Plaintext"]
        == data["Plaintext"]
    )
    refusals: list[tuple[str, dict[str, Any]]] = [
        ("generate_data_key", {"KeyId": other, "NumberOfBytes": 64}),
        ("describe_key", {"KeyId": allowed}),
        ("create_key", {}),
    ]
    for method, params in refusals:
        with pytest.raises(botocore.exceptions.ClientError) as refused:
            getattr(user, method)(**params)
        assert _code(refused) == "AccessDeniedException"
    elsewhere = kms.generate_data_key(
        KeyId=allowed, NumberOfBytes=64, EncryptionContext={"aws:ssm:TargetId": "mi-x"}
    )
    with pytest.raises(botocore.exceptions.ClientError) as refused:  # the condition on the context holds
        user.decrypt(
            CiphertextBlob=elsewhere["CiphertextBlob"], EncryptionContext={"aws:ssm:TargetId": "mi-x"}
        )
    assert _code(refused) == "AccessDeniedException"

    query = audit_log.AuditQuery(principal_name="kms-user", event_source="kms", limit=100)
    events = server.db(lambda engine: audit_log.lookup(engine, query))
    decisions = {(event.action, event.decision) for event in events}
    assert {
        ("kms:GenerateDataKey", "allowed"),
        ("kms:Decrypt", "allowed"),
        ("kms:Decrypt", "implicitDeny"),
    } <= decisions
    decrypts = [event for event in events if event.action == "kms:Decrypt" and event.decision == "allowed"]
    assert decrypts[0].resource == allowed and decrypts[0].detail["encryptionContext"] == CONTEXT


def test_key_material_is_stored_encrypted(server: ApiServer) -> None:
    kms = server.client("kms")
    key_id = kms.create_key()["KeyMetadata"]["KeyId"]

    async def stored_material(engine: Any) -> bytes:
        async with engine.connect() as conn:
            query = sa.select(kms_keys.c.material_encrypted).where(kms_keys.c.key_id == key_id)
            return bytes((await conn.execute(query)).scalar_one())

    stored = server.db(stored_material)
    assert stored[:1] == b"\x01" and len(stored) == 1 + 12 + 32 + 16  # SecretCipher: version, nonce, key, tag


def test_the_aws_cli_makes_a_round_trip(server: ApiServer, tmp_path: pathlib.Path) -> None:
    key_id = server.aws("kms", "create-key", "--description", "cli")["KeyMetadata"]["KeyId"]
    server.aws("kms", "create-alias", "--alias-name", "alias/cli", "--target-key-id", key_id)
    data = server.aws(
        "kms",
        "generate-data-key",
        "--key-id",
        "alias/cli",
        "--number-of-bytes",
        "64",
        "--encryption-context",
        "aws:ssm:SessionId=s-1,aws:ssm:TargetId=mi-1",
    )
    blob = tmp_path / "blob"
    blob.write_bytes(base64.b64decode(data["CiphertextBlob"]))
    decrypted = server.aws(
        "kms",
        "decrypt",
        "--ciphertext-blob",
        f"fileb://{blob}",
        "--encryption-context",
        "aws:ssm:TargetId=mi-1,aws:ssm:SessionId=s-1",
    )
    assert decrypted["Plaintext"] == data["Plaintext"] and decrypted["KeyId"].endswith(key_id)
