"""AWS's own API for just-in-time node access (SSM ``StartAccessRequest`` and ``GetAccessToken``,
JSON 1.1 ``AmazonSSM.*``, signing name ``ssm``), mapped onto OpenSSM's access requests, so the AWS CLI
and SDKs ask for access and fetch its credentials with their own models:

- ``StartAccessRequest`` (``Reason``, ``Targets``: one ``InstanceIds`` target of one node) opens the
  same pending request as ``OpenSSM_20261201.RequestAccess``, for the default session document and
  :data:`~openssm.api.access.vocabulary.AWS_REQUEST_DURATION`, with an id of AWS's shape
  (``oi-`` + 12 hex). It is authorised as ``ssm:StartAccessRequest`` on the node's ARN with the
  condition keys of RequestAccess. Approvers decide it with OpenSSM's operations, as any request.
- ``GetAccessToken`` answers the request's status in AWS's words (``Pending``, ``Approved``,
  ``Rejected``, ``Revoked``, ``Expired``) and, once approved and until the grant ends, temporary
  credentials of the requester that expire with the grant: with them ``aws ssm start-session``
  starts what the grant allows. Authorised as ``ssm:GetAccessToken`` on the node's ARN, and only
  for the requester: anyone else is refused whatever their policies say (credentials are the
  requester's own), audited as an explicit deny.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Final

from openssm.api.access import operations, vocabulary
from openssm.api.errors import ApiError
from openssm.api.registry import json_action
from openssm.api.request import ApiRequest
from openssm.api.targets import TARGET_PATTERN
from openssm.api.validation import epoch, object_list, required_string, string_list
from openssm.store import access_keys
from openssm.store.access_requests import AccessStatus

SSM: Final = "AmazonSSM"

# OpenSSM's statuses in the words of AWS's AccessRequestStatus: the same words, but AWS calls Denied
# Rejected.
AWS_STATUS: Final = {status: status.value for status in AccessStatus} | {AccessStatus.DENIED: "Rejected"}
MIN_CREDENTIALS_LIFETIME: Final = dt.timedelta(seconds=1)


def _one_node(body: dict[str, Any]) -> str:
    if body.get("Targets") is None:
        raise ApiError(
            "ValidationException",
            "1 validation error detected: Value null at 'targets' failed to satisfy constraint: "
            "Member must not be null",
        )
    targets = object_list(body, "Targets", max_items=5)
    values = [
        string_list(item.get("Values", []), f"Targets.{index + 1}.member.Values")
        for index, item in enumerate(targets)
    ]
    keys = [item.get("Key") for item in targets]
    if (
        len(targets) != 1
        or not isinstance(keys[0], str)
        or keys[0].lower() != "instanceids"
        or len(values[0]) != 1
    ):
        raise ApiError(
            "ValidationException",
            "An access request is for one node: Targets must be [{Key: InstanceIds, Values: [<node id>]}].",
        )
    return required_string(
        {"Target": values[0][0]}, "Target", pattern=TARGET_PATTERN, path="Targets.1.member.Values"
    )


@json_action(SSM, "StartAccessRequest")
async def start_access_request(request: ApiRequest, body: dict[str, Any]) -> dict[str, Any]:
    reason = required_string(body, "Reason", min_len=1, max_len=vocabulary.AWS_REASON_CHARS)
    target = _one_node(body)
    if object_list(body, "Tags", max_items=1000):
        raise ApiError("ValidationException", "OpenSSM keeps no tags on access requests: ask without Tags.")
    row = await operations.open_request(
        request,
        vocabulary.START_ACCESS_REQUEST,
        vocabulary.new_aws_request_id(),
        target=target,
        document_name=None,
        duration=int(vocabulary.AWS_REQUEST_DURATION.total_seconds()),
        reason=reason,
    )
    return {"AccessRequestId": row.request_id}


@json_action(SSM, "GetAccessToken")
async def get_access_token(request: ApiRequest, body: dict[str, Any]) -> dict[str, Any]:
    row = await operations.authorized_request(request, body, vocabulary.GET_ACCESS_TOKEN, "own")
    now = request.now()
    status = row.status
    if status == AccessStatus.APPROVED and (row.expires_at is None or row.expires_at <= now):
        status = AccessStatus.EXPIRED  # ended by the clock; the expiry task has not yet acted
    answer: dict[str, Any] = {"AccessRequestStatus": AWS_STATUS[status]}
    if status != AccessStatus.APPROVED or row.expires_at is None:
        return answer
    lifetime = row.expires_at - now
    if lifetime < MIN_CREDENTIALS_LIFETIME:
        return {"AccessRequestStatus": AWS_STATUS[AccessStatus.EXPIRED]}
    identity = request.require_identity()
    principal = identity.principal
    if principal.type == "AssumedRole" and principal.session_name and principal.role_name:
        principal_type, principal_name, role_name = (
            "assumed-role",
            principal.session_name,
            principal.role_name,
        )
    elif principal.username:
        principal_type, principal_name, role_name = "user", principal.username, None
    else:  # holder_of() let no other principal ask
        raise ApiError("ValidationException", "Only IAM users and role sessions can hold access.")
    issued = await access_keys.create_temporary(
        request.services.engine,
        request.services.cipher,
        principal_type=principal_type,
        principal_name=principal_name,
        role_name=role_name,
        now=now,
        lifetime=lifetime,
        mfa_authenticated_at=identity.mfa_authenticated_at,
        federated_provider=identity.federated_provider,
    )
    answer["Credentials"] = {
        "AccessKeyId": issued.access_key_id,
        "SecretAccessKey": issued.secret_access_key,
        "SessionToken": issued.session_token,
        "ExpirationTime": epoch(issued.expires_at),
    }
    return answer
