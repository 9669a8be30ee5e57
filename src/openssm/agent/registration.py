"""Registering a node: a hybrid activation (§5: key pair + unsigned RegisterManagedInstance → ``mi-…``
id), or, as an EC2 instance joins, an ``i-…`` id of its own and IAM credentials from the standard
AWS chain, checked with a first UpdateInstanceInformation."""

from __future__ import annotations

import base64
import dataclasses
import datetime
import pathlib
import re
import uuid
from typing import TYPE_CHECKING, Any, Final

from openssm.agent.config import IAM, Registration, load_fingerprint, save_registration
from openssm.agent.platform_info import short_instance_information
from openssm.agent.signing import CredentialsError, host_header
from openssm.agent.ssm_api import (
    USER_AGENT,
    SsmApi,
    SsmApiError,
    api_url,
    json_request_headers,
    post_json,
)
from openssm.errors import OpenSSMError
from openssm.protocol.frames import go_json
from openssm.transport.http_exchange import HttpClient

if TYPE_CHECKING:  # cryptography makes keys (registering, rotating): never imported by an idle agent
    from cryptography.hazmat.primitives.asymmetric import rsa

KEY_BITS: Final = 2048
INSTANCE_ID_PATTERN: Final = re.compile(r"^mi-[0-9a-f]{17}$")
EC2_INSTANCE_ID_PATTERN: Final = re.compile(r"^i-[0-9a-f]{17}$")


class RegistrationError(OpenSSMError, RuntimeError):
    """Registration failed; the text says why, in the service's words where there are some."""


def generate_private_key() -> rsa.RSAPrivateKey:
    from cryptography.hazmat.primitives.asymmetric import rsa

    return rsa.generate_private_key(public_exponent=65537, key_size=KEY_BITS)


def private_key_pem(key: rsa.RSAPrivateKey) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def public_key_base64(key: rsa.RSAPrivateKey) -> str:
    """Base64 of the DER SubjectPublicKeyInfo, as the real agent sends it."""
    from cryptography.hazmat.primitives import serialization

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


@dataclasses.dataclass(frozen=True, slots=True)
class ServerAddress:
    """Where a node registers: the API endpoint (then the other nodes of a scale-out server, tried
    in order when it is unreachable), the region, and the message gateway if apart."""

    endpoint: str
    region: str
    mgs_endpoint: str | None = None
    failover_endpoints: tuple[str, ...] = ()

    def registration(self, instance_id: str, **identity: Any) -> Registration:
        """The registration to save for ``instance_id`` (``identity``: fingerprint, identity, profile)."""
        return Registration(
            instance_id=instance_id,
            region=self.region,
            endpoint=self.endpoint,
            mgs_endpoint=self.mgs_endpoint,
            registered_at=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            failover_endpoints=self.failover_endpoints,
            **identity,
        )


async def register(
    server: ServerAddress,
    *,
    code: str,
    activation_id: str,
    state_dir: pathlib.Path,
    name: str | None = None,
    timeout: float = 30.0,
) -> Registration:
    """Register this node and save its state; returns the registration (with the ``mi-`` id)."""
    endpoint = server.endpoint
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
        answer = await post_json(HttpClient(timeout=timeout), url, headers, body)
    except SsmApiError as exc:
        raise RegistrationError(f"registration refused: {exc}") from exc
    except (OSError, TimeoutError) as exc:
        raise RegistrationError(f"cannot reach {endpoint}: {exc or type(exc).__name__}") from exc
    instance_id = answer.get("InstanceId")
    if not isinstance(instance_id, str) or not INSTANCE_ID_PATTERN.match(instance_id):
        raise RegistrationError(f"service answered without a valid InstanceId: {instance_id!r}")
    registration = server.registration(instance_id, fingerprint=fingerprint)
    save_registration(state_dir, registration, private_key_pem(key))
    return registration


async def register_iam(
    server: ServerAddress,
    *,
    instance_id: str,
    state_dir: pathlib.Path,
    profile: str | None = None,
    timeout: float = 30.0,
) -> Registration:
    """Join as ``instance_id`` (``i-`` + 17 hex, as EC2 instance ids are) with the IAM credentials of
    the standard AWS chain: the first UpdateInstanceInformation makes the node appear (the server
    checks ``ssm:UpdateInstanceInformation`` on the instance's ARN), then the registration is saved."""
    if not EC2_INSTANCE_ID_PATTERN.match(instance_id):
        raise RegistrationError(f"{instance_id!r} is not an EC2-style instance id (i- and 17 hex digits)")
    from openssm.agent.chain_credentials import ChainCredentials

    credentials = ChainCredentials(profile)
    try:
        await credentials.current()
        ssm = SsmApi(HttpClient(timeout=timeout), server.endpoint, server.region, credentials)
        await ssm.call("UpdateInstanceInformation", short_instance_information(instance_id))
    except CredentialsError as exc:
        raise RegistrationError(str(exc)) from exc
    except SsmApiError as exc:
        raise RegistrationError(f"registration refused: {exc}") from exc
    except (OSError, TimeoutError) as exc:
        raise RegistrationError(f"cannot reach {server.endpoint}: {exc or type(exc).__name__}") from exc
    registration = server.registration(instance_id, fingerprint="", identity=IAM, profile=profile)
    save_registration(state_dir, registration, None)
    return registration
