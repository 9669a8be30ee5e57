"""The words of OpenSSM's just-in-time access API, in one place: the JSON 1.1 target prefix and signing
name, the IAM actions and condition keys, the ARN of a request, the limits, and the bus channel on
which a node tells every node's access tasks that something changed.

AWS has no API for this, so it is OpenSSM's own, shaped like AWS's: ``POST /`` with
``X-Amz-Target: OpenSSM_20261201.<Operation>``, SigV4 with the signing name ``openssm``, AWS error
shapes. Each operation is authorised as the IAM action of the same name, ``openssm:<Operation>``.
"""

from __future__ import annotations

import datetime as dt
from typing import Final

from openssm.iam.arn import PARTITION

# Also keys of these actions (and OpenSSM's additions to StartSession's checks):
from openssm.security.access_grants import DOCUMENT_NAME_KEY as DOCUMENT_NAME_KEY
from openssm.security.access_grants import TARGET_KEY as TARGET_KEY
from openssm.store import ids

TARGET_PREFIX: Final = "OpenSSM_20261201"
SIGNING_NAME: Final = "openssm"

# IAM actions (= operation names). Resource: the target's ARN, except ListAccessRequests ("*").
REQUEST_ACCESS: Final = "openssm:RequestAccess"
LIST_ACCESS_REQUESTS: Final = "openssm:ListAccessRequests"
APPROVE_ACCESS_REQUEST: Final = "openssm:ApproveAccessRequest"
DENY_ACCESS_REQUEST: Final = "openssm:DenyAccessRequest"
REVOKE_ACCESS_REQUEST: Final = "openssm:RevokeAccessRequest"

# Condition keys (besides the target's ssm:resourceTag/<k> and aws:ResourceTag/<k>).
ACCESS_REQUEST_ID_KEY: Final = "openssm:AccessRequestId"
REQUESTER_KEY: Final = "openssm:Requester"  # user name, or role session name
REQUESTER_ARN_KEY: Final = "openssm:RequesterArn"
DURATION_KEY: Final = "openssm:DurationSeconds"  # numeric
STATUS_KEY: Final = "openssm:Status"  # ListAccessRequests filtered by status

MIN_DURATION: Final = dt.timedelta(seconds=1)
MAX_DURATION: Final = dt.timedelta(hours=12)
PENDING_LIFETIME: Final = dt.timedelta(hours=24)  # undecided for longer: the request expires
REASON_CHARS: Final = 1024

ACCESS_CHANNEL: Final = "access"  # bus channel: {"type": "changed"} wakes every node's access tasks
CHANGED: Final = {"type": "changed"}

# OpenSSM's own ids are ar-<17 hex>; a request made through AWS's StartAccessRequest gets an id of
# AWS's shape (an OpsItem's, oi-<12 hex>). Every operation takes either.
REQUEST_ID_PATTERN: Final = r"^(ar-[0-9a-f]{17}|oi-[0-9a-f]{12})$"

# AWS's just-in-time node access operations (``AmazonSSM.StartAccessRequest``, ``GetAccessToken``),
# mapped onto the same requests; their IAM actions are AWS's names.
START_ACCESS_REQUEST: Final = "ssm:StartAccessRequest"
GET_ACCESS_TOKEN: Final = "ssm:GetAccessToken"
AWS_REASON_CHARS: Final = 256
# AWS's request names no duration (its approval policies do): a request made through it asks for this.
AWS_REQUEST_DURATION: Final = dt.timedelta(hours=1)


def new_request_id() -> str:
    return f"ar-{ids.hex17()}"


def new_aws_request_id() -> str:
    return f"oi-{ids.hex17()[:12]}"


def request_arn(region: str, account: str, request_id: str) -> str:
    return f"arn:{PARTITION}:{SIGNING_NAME}:{region}:{account}:access-request/{request_id}"
