"""Hybrid activation (§5): key pair + unsigned RegisterManagedInstance → ``mi-…`` id."""

from __future__ import annotations

import base64
import datetime
import pathlib
import re
import uuid
from collections.abc import Sequence
from typing import Final

import aiohttp
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from openssm.agent.config import Registration, load_fingerprint, save_registration
from openssm.agent.signing import host_header
from openssm.agent.ssm_api import USER_AGENT, SsmApiError, api_url, json_request_headers, read_json_response
from openssm.errors import OpenSSMError
from openssm.protocol.frames import go_json

KEY_BITS: Final = 2048
INSTANCE_ID_PATTERN: Final = re.compile(r"^mi-[0-9a-f]{17}$")


class RegistrationError(OpenSSMError, RuntimeError):
    """Registration failed; the text says why, in the service's words where there are some."""


def generate_private_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=KEY_BITS)


def private_key_pem(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def public_key_base64(key: rsa.RSAPrivateKey) -> str:
    """Base64 of the DER SubjectPublicKeyInfo, as the real agent sends it."""
    der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(der).decode("ascii")


def registration_body(
    code: str, activation_id: str, fingerprint: str, public_key: str, name: str | None = None
) -> dict[str, str]:
    body = {
        "ActivationCode": code,
        "ActivationId": activation_id,
        "Fingerprint": fingerprint,
        "PublicKey": public_key,
        "PublicKeyType": "Rsa",
    }
    if name:
        body["Name"] = name  # OpenSSM extension; AWS-compatible services ignore unknown members
    return body


async def register(
    *,
    endpoint: str,
    code: str,
    activation_id: str,
    region: str,
    state_dir: pathlib.Path,
    name: str | None = None,
    mgs_endpoint: str | None = None,
    failover_endpoints: Sequence[str] = (),
    timeout: float = 30.0,
) -> Registration:
    """Register this node and save its state; returns the registration (with the ``mi-`` id)."""
    fingerprint = load_fingerprint(state_dir) or str(uuid.uuid4())
    key = generate_private_key()
    body = go_json(registration_body(code, activation_id, fingerprint, public_key_base64(key), name))
    url = api_url(endpoint)
    headers = {
        "Host": host_header(url),
        **json_request_headers("RegisterManagedInstance"),
        "User-Agent": USER_AGENT,
    }
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as http,
            http.post(url, data=body, headers=headers) as response,
        ):
            answer = await read_json_response(response)
    except SsmApiError as exc:
        raise RegistrationError(f"registration refused: {exc}") from exc
    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
        raise RegistrationError(f"cannot reach {endpoint}: {exc or type(exc).__name__}") from exc
    instance_id = answer.get("InstanceId")
    if not isinstance(instance_id, str) or not INSTANCE_ID_PATTERN.match(instance_id):
        raise RegistrationError(f"service answered without a valid InstanceId: {instance_id!r}")
    registration = Registration(
        instance_id=instance_id,
        region=region,
        endpoint=endpoint,
        fingerprint=fingerprint,
        mgs_endpoint=mgs_endpoint,
        registered_at=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        failover_endpoints=tuple(failover_endpoints),
    )
    save_registration(state_dir, registration, private_key_pem(key))
    return registration
