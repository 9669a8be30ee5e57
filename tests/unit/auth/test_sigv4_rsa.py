"""The managed-instance SigV4 variant: RSASSA-PSS (SHA-256, MGF1-SHA-256, salt 32) over the string-to-sign."""

from __future__ import annotations

import base64
import datetime as dt
import functools

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from openssm.auth import rsa_identity
from openssm.auth.sigv4 import HttpRequest, SigV4Error, parse_request, sign_rsa, verify_rsa

INSTANCE_ID = "mi-0123456789abcdef0"
WHEN = dt.datetime(2026, 11, 28, 16, 32, 13, tzinfo=dt.UTC)
URL = "http://127.0.0.1:19446/"
BODY = b'{"Fingerprint":"92423b92-2ffe-4bff-9225-e31b46e5ab28"}'
AGENT_HEADERS = {
    "Content-Type": "application/x-amz-json-1.1",
    "X-Amz-Target": "AmazonSSM.RequestManagedInstanceRoleToken",
}


@functools.cache
def _key_pair() -> tuple[bytes, bytes]:
    return rsa_identity.generate_key_pair()


def _agent_request(body: bytes = BODY, private_der: bytes | None = None) -> HttpRequest:
    added = sign_rsa(
        "POST", URL, AGENT_HEADERS, body, instance_id=INSTANCE_ID,
        private_key_der=private_der or _key_pair()[0], region="us-east-1", now=WHEN,
    )  # fmt: skip
    headers = [
        ("Host", "127.0.0.1:19446"),
        ("User-Agent", "aws-sdk-go/1.51.20 (go1.22.10; linux; amd64) amazon-ssm-agent/3.3.0.0"),
        ("Transfer-Encoding", "chunked"),
        *AGENT_HEADERS.items(),
        *added.items(),
        ("Accept-Encoding", "gzip"),
    ]
    return HttpRequest("POST", "/", "", headers, body)


def _verify(req: HttpRequest, public_der: bytes | None = None) -> None:
    verify_rsa(req, parse_request(req), public_der or _key_pair()[1], now=WHEN)


def test_sign_rsa_looks_like_the_agent_and_verifies() -> None:
    req = _agent_request()
    parsed = parse_request(req)
    assert parsed.access_key_id == INSTANCE_ID
    assert parsed.signed_headers == ("content-type", "host", "x-amz-date", "x-amz-target")
    assert len(parsed.signature) == 344  # base64 of a 2048-bit signature
    assert req.header_values("X-Amz-Content-Sha256") == [
        "974f79151a81cc8bcde3c00f21b38c520d3ca662de4479737887c174664f7d0f"
    ]
    _verify(req)


def test_signature_is_pss_salt_32_over_the_standard_string_to_sign() -> None:
    req = _agent_request()
    # botocore computes the string-to-sign independently; cryptography checks the PSS parameters.
    oracle = AWSRequest(
        method="POST", url=URL, headers={**AGENT_HEADERS, "X-Amz-Date": "20261128T163213Z"}, data=BODY
    )
    oracle.context["timestamp"] = "20261128T163213Z"
    signer = SigV4Auth(Credentials(INSTANCE_ID, "unused"), "ssm", "us-east-1")
    string_to_sign = signer.string_to_sign(oracle, signer.canonical_request(oracle))
    public_key = serialization.load_der_public_key(_key_pair()[1])
    assert isinstance(public_key, rsa.RSAPublicKey)
    public_key.verify(
        base64.b64decode(parse_request(req).signature),
        string_to_sign.encode(),
        padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32),
        hashes.SHA256(),
    )


def test_other_key_or_tampered_request_fails() -> None:
    req = _agent_request()
    _, other_public = rsa_identity.generate_key_pair()
    with pytest.raises(SigV4Error):
        _verify(req, other_public)
    tampered = HttpRequest("POST", "/", "", req.headers, BODY.replace(b"9242", b"9243"))
    with pytest.raises(SigV4Error) as info:
        _verify(tampered)
    assert "x-amz-content-sha256" in info.value.message  # the unsigned hash header no longer matches
    unhashed = [(name, value) for name, value in req.headers if name != "X-Amz-Content-Sha256"]
    with pytest.raises(SigV4Error) as info:
        _verify(HttpRequest("POST", "/", "", unhashed, BODY.replace(b"9242", b"9243")))
    assert info.value.code == "InvalidSignatureException"


def test_bad_signature_encoding_and_bad_keys_fail_cleanly() -> None:
    req = _agent_request()
    garbled = [
        (name, value.rpartition("Signature=")[0] + "Signature=***")
        if name == "Authorization"
        else (name, value)
        for name, value in req.headers
    ]
    with pytest.raises(SigV4Error):
        _verify(HttpRequest("POST", "/", "", garbled, BODY))
    with pytest.raises(SigV4Error, match="cannot verify"):
        _verify(req, b"not a key")
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024).public_key()
    small_der = small.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    with pytest.raises(SigV4Error, match="1024"):
        _verify(req, small_der)


def test_pkcs8_private_key_signs_too() -> None:
    private = serialization.load_der_private_key(_key_pair()[0], password=None)
    pkcs8 = private.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    _verify(_agent_request(private_der=pkcs8))
    with pytest.raises(rsa_identity.RsaKeyError):
        sign_rsa("POST", URL, {}, b"", instance_id=INSTANCE_ID, private_key_der=b"junk", region="us-east-1")
