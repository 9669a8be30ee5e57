"""Operations only the SSM agent calls: registration, role credentials, health pings, MDS long poll.

A node joins one of two ways. Through an activation (``RegisterManagedInstance``: an ``mi-`` id and
a key pair whose RSA-signed calls fetch the activation role's credentials), or, as an EC2 instance
does, with IAM credentials of its own: its first ``UpdateInstanceInformation`` reporting an
``i-`` + 17 hex id, signed by an IAM user or role allowed ``ssm:UpdateInstanceInformation`` on
that instance's ARN, makes the node appear under that id.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import dataclasses
import datetime as dt
import hmac
import logging
import re
from typing import Any, Final

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import load_der_public_key
from sqlalchemy.ext.asyncio import AsyncConnection

from openssm.api.errors import ApiError
from openssm.api.registry import json_action
from openssm.api.request import ApiRequest
from openssm.api.targets import target_arn
from openssm.api.validation import epoch, integer, required_string, string
from openssm.security import AccessDenied, AuditBatch, audited
from openssm.security.identity import InstanceAuth
from openssm.services import Services
from openssm.store import access_keys, activations, ids, instances
from openssm.store.activations import Claim
from openssm.store.authz_generation import Credential
from openssm.store.instances import InstanceInfo, InstanceRow
from openssm.store.rows import queued_write

log = logging.getLogger(__name__)

SSM = "AmazonSSM"
MDS = "EC2WindowsMessageDeliveryService"
ROLE_CREDENTIALS_LIFETIME = dt.timedelta(hours=1)
MESSAGES_LONG_POLL_SECONDS = 20.0
INSTANCE_ID_PATTERN = r"(^mi-[0-9a-f]{17}$)|(^i-(\w{8}|\w{17})$)"
UUID_PATTERN = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
MIN_RSA_BITS = 2048
# What a node joining with IAM credentials may call itself: an EC2 instance id.
JOINABLE_INSTANCE_ID: Final = re.compile(r"^i-[0-9a-f]{17}$")
# An instance's own role session is named after it (activation nodes: mi-…; EC2's instance roles: i-…).
INSTANCE_SESSION_NAME: Final = re.compile(r"^(mi-[0-9a-f]{17}|i-[0-9a-f]{8}(?:[0-9a-f]{9})?)$")


def _checked_public_key(body: dict[str, Any], member: str, type_member: str) -> str:
    """The base64 DER SubjectPublicKeyInfo of an RSA key of at least 2048 bits."""
    encoded = required_string(body, member, min_len=1, max_len=4096)
    key_type = string(body, type_member, allowed=("Rsa",))
    if key_type is None:
        raise ApiError("ValidationException", f"{type_member} must be 'Rsa'")
    try:
        key = load_der_public_key(base64.b64decode(encoded, validate=True))
    except (binascii.Error, ValueError, UnsupportedAlgorithm) as exc:  # the last: an OID of no known key type
        raise ApiError("InvalidParameters", f"{member} is not a base64 DER RSA public key") from exc
    if not isinstance(key, rsa.RSAPublicKey) or key.key_size < MIN_RSA_BITS:
        raise ApiError("InvalidParameters", f"{member} must be an RSA key of at least {MIN_RSA_BITS} bits")
    return encoded


CLAIM_REFUSALS: dict[Claim, ApiError] = {
    Claim.UNKNOWN: ApiError("InvalidActivationId", "Activation ID is not valid."),
    Claim.WRONG_CODE: ApiError("InvalidActivation", "Activation ID or activation code is not valid."),
    Claim.EXPIRED: ApiError("InvalidActivation", "Activation has expired."),
    Claim.LIMIT: ApiError("InvalidActivation", "Activation has reached its registration limit."),
}


@json_action(SSM, "RegisterManagedInstance", auth="anonymous")
async def register_managed_instance(request: ApiRequest, body: dict[str, Any]) -> dict[str, Any]:
    code = required_string(body, "ActivationCode", min_len=1, max_len=250)
    activation_id = required_string(body, "ActivationId", pattern=UUID_PATTERN)
    fingerprint = required_string(body, "Fingerprint", min_len=1, max_len=128)
    public_key = _checked_public_key(body, "PublicKey", "PublicKeyType")
    now = request.now()
    instance_id = ids.managed_instance_id()
    # One transaction (one commit, shared with the registrations arriving at the same time): the
    # registration counted against the activation, and the node.

    async def register(conn: AsyncConnection) -> Claim:
        claim, activation = await activations.claim_registration(conn, activation_id, code, now=now)
        if claim is Claim.OK:
            assert activation is not None
            await instances.register(
                conn,
                instance_id=instance_id,
                activation_id=activation_id,
                iam_role=activation.iam_role,
                name=activation.default_instance_name,
                public_key=public_key,
                fingerprint=fingerprint,
                tags=activation.tags,
                now=now,
            )
        return claim

    claim = await queued_write(request.services.engine, register)
    refusal = CLAIM_REFUSALS.get(claim)
    if refusal is not None:
        raise refusal
    return {"InstanceId": instance_id}


@json_action(SSM, "RequestManagedInstanceRoleToken", auth="rsa")
async def request_role_token(request: ApiRequest, body: dict[str, Any]) -> dict[str, Any]:
    fingerprint = required_string(body, "Fingerprint", min_len=1, max_len=128)
    identity = request.require_identity()
    instance_id = identity.access_key_id
    signed = request.instance_auth  # the instance's row, read by the RSA signature's check a moment ago
    if signed is None or not hmac.compare_digest(signed.instance.fingerprint.encode(), fingerprint.encode()):
        raise ApiError("InvalidInstanceId", "The fingerprint does not match the registered instance.")
    instance = signed.instance
    services, now = request.services, request.now()
    issued = await queued_write(
        services.engine,
        lambda conn: access_keys.create_temporary(
            conn,
            services.cipher,
            principal_type="managed-instance",
            principal_name=instance_id,
            role_name=instance.iam_role,
            now=now,
            lifetime=ROLE_CREDENTIALS_LIFETIME,
        ),
    )
    _keep_verified(services, signed, issued)
    return {
        "AccessKeyId": issued.access_key_id,
        "SecretAccessKey": issued.secret_access_key,
        "SessionToken": issued.session_token,
        "TokenExpirationDate": epoch(issued.expires_at),
        "UpdateKeyPair": False,
    }


def _keep_verified(services: Services, signed: InstanceAuth, issued: access_keys.IssuedCredentials) -> None:
    """What the node's next calls need verified, kept as this call verified it: the new key with
    its secret and owner (the instance acting as its role, as principal_for_key would find it), and
    what the instance last reported (its row, read for the signature). Both are stamped with the
    generation read before that row, so a node deregistered or a role changed since (each bumps
    it) drops them. A fleet's first UpdateInstanceInformation then reads no row: it was three
    reads and four with the report, per node."""
    caches, generation = services.authz, signed.generation
    if issued.row is not None:
        caches.credentials.put(
            issued.access_key_id,
            generation,
            Credential(issued.row, issued.secret_access_key, signed.identity.principal, None),
        )
    instance = signed.instance
    if caches.instances.get(instance.instance_id, generation) is None:
        caches.instances.put(instance.instance_id, generation, reported_info(instance))


@json_action(SSM, "UpdateManagedInstancePublicKey", auth="rsa")
async def update_public_key(request: ApiRequest, body: dict[str, Any]) -> dict[str, Any]:
    public_key = _checked_public_key(body, "NewPublicKey", "NewPublicKeyType")
    identity = request.require_identity()
    await instances.set_public_key(request.services.engine, identity.access_key_id, public_key)
    return {}


def _instance_session(request: ApiRequest) -> str | None:
    """The instance the caller's credentials belong to, when they are an instance's role session."""
    principal = request.require_identity().principal
    if principal.type == "AssumedRole" and principal.session_name:
        if INSTANCE_SESSION_NAME.match(principal.session_name):
            return principal.session_name
    return None


async def _authorized_for_instance(
    request: ApiRequest, instance_id: str, action: str, batch: AuditBatch | None = None
) -> str:
    """An instance's own credentials act only for it; any other caller (an IAM user or role: a node
    that joined with IAM credentials, or an operator) needs ``action`` on the instance's ARN, which
    is returned. (The dispatcher logs every refusal, with that ARN.)"""
    resource = target_arn(request.region, request.account, instance_id)
    own = _instance_session(request)
    if own is not None and own != instance_id:
        principal = request.require_identity().principal
        raise AccessDenied(
            f"User: {principal.arn} is not authorized to perform: {action} on resource: {resource} "
            f"because its credentials belong to instance {own}",
            action=action,
            resource=resource,
        )
    await request.authorize(action, [resource], batch=batch)
    return resource


async def _own_instance(request: ApiRequest, instance_id: str, action: str) -> InstanceRow:
    """An agent may act only for an instance it is allowed to act for, and that exists."""
    arn = await _authorized_for_instance(request, instance_id, action)
    instance = await instances.get(request.services.engine, instance_id)
    if instance is None or instance.deregistered:
        raise ApiError("InvalidInstanceId", f"Instance {instance_id} is not registered.", resource=arn)
    return instance


async def _reporting_instance(request: ApiRequest, instance_id: str, batch: AuditBatch) -> Reported:
    """UpdateInstanceInformation's instance: registered already, or an EC2-style id a node with IAM
    credentials of its own joins with (on the first report it is allowed to make). What it last
    reported comes from this node's cache while the authorisation generation holds (deregistering
    a node bumps it), else from its row."""
    arn = await _authorized_for_instance(request, instance_id, "ssm:UpdateInstanceInformation", batch)
    services = request.services
    generation = await services.authz_generation()
    known = services.authz.instances.get(instance_id, generation)
    if known is not None:
        return Reported(known, generation)
    engine = services.engine
    instance = await instances.get(engine, instance_id)
    if instance is None and _instance_session(request) is None and JOINABLE_INSTANCE_ID.match(instance_id):
        principal = request.require_identity().principal
        role = principal.role_name if principal.type == "AssumedRole" else None
        if await instances.join(engine, instance_id, iam_role=role, now=request.now()):
            log.info("node %s joined with the IAM credentials of %s", instance_id, principal.arn)
        instance = await instances.get(engine, instance_id)
    if instance is None or instance.deregistered:
        raise ApiError("InvalidInstanceId", f"Instance {instance_id} is not registered.", resource=arn)
    known = reported_info(instance)
    services.authz.instances.put(instance_id, generation, known)
    return Reported(known, generation)


@dataclasses.dataclass(frozen=True, slots=True)
class Reported:
    """What a node last reported, as of an authorisation generation."""

    info: InstanceInfo
    generation: int


# What UpdateInstanceInformation reports, by API member.
INFO_MEMBERS = {
    "AgentName": "agent_name",
    "AgentVersion": "agent_version",
    "ComputerName": "computer_name",
    "IPAddress": "ip_address",
    "PlatformName": "platform_name",
    "PlatformType": "platform_type",
    "PlatformVersion": "platform_version",
}


def reported_info(instance: InstanceRow) -> InstanceInfo:
    """What the instance last reported, from its row."""
    return InstanceInfo(**{field: getattr(instance, field) for field in INFO_MEMBERS.values()})


@json_action(SSM, "UpdateInstanceInformation")
async def update_instance_information(request: ApiRequest, body: dict[str, Any]) -> dict[str, Any]:
    instance_id = required_string(body, "InstanceId", pattern=INSTANCE_ID_PATTERN)
    info = InstanceInfo(
        **{field: string(body, member, max_len=256) for member, field in INFO_MEMBERS.items()}
    )
    for member in ("AgentStatus", "AvailabilityZone", "AvailabilityZoneId", "SSMConnectionChannel"):
        string(body, member, max_len=256)  # accepted and type-checked; nothing to keep
    services, now = request.services, request.now()
    async with audited(services) as batch:
        last = await _reporting_instance(request, instance_id, batch)
        changes = {
            field: value for field in INFO_MEMBERS.values() if (value := getattr(info, field)) is not None
        }
        if all(getattr(last.info, field) == value for field, value in changes.items()):
            # The steady heartbeat: written with others' (a batch every few seconds), its audit row too.
            services.pings.add(services.engine, instance_id, now, info, batch.take())
        else:
            services.pings.discard(instance_id)
            # A fleet's first reports: group-committed, with the held audit rows.
            await batch.queued_write(
                services, lambda conn: instances.record_ping(conn, instance_id, info, now=now)
            )
            services.authz.instances.put(
                instance_id, last.generation, dataclasses.replace(last.info, **changes)
            )
    return {}


@json_action(SSM, "ListInstanceAssociations")
async def list_instance_associations(request: ApiRequest, body: dict[str, Any]) -> dict[str, Any]:
    instance_id = required_string(body, "InstanceId", pattern=INSTANCE_ID_PATTERN)
    integer(body, "MaxResults", minimum=1, maximum=50)
    string(body, "NextToken", max_len=1024)
    await _own_instance(request, instance_id, "ssm:ListInstanceAssociations")
    return {}


@json_action(MDS, "GetMessages")
async def get_messages(request: ApiRequest, body: dict[str, Any]) -> dict[str, Any]:
    """The MDS long poll: OpenSSM delivers nothing here (commands use the control channel), so hold
    the request like the real service does — the agent would otherwise poll every couple of seconds."""
    destination = required_string(body, "Destination", pattern=INSTANCE_ID_PATTERN)
    messages_request_id = required_string(body, "MessagesRequestId", min_len=1, max_len=64)
    integer(body, "VisibilityTimeoutInSeconds", minimum=0, maximum=43200)
    await _own_instance(request, destination, "ec2messages:GetMessages")
    stopping = request.services.stopping
    try:
        await asyncio.wait_for(stopping.wait(), timeout=MESSAGES_LONG_POLL_SECONDS)
    except TimeoutError:
        pass
    return {"Destination": destination, "Messages": [], "MessagesRequestId": messages_request_id}
