"""The access request operations (JSON 1.1, ``OpenSSM_20261201.*``), each authorised as
``openssm:<Operation>`` on the target's ARN (ListAccessRequests on ``*``), with the request's facts as
condition keys (``openssm:Requester``, ``openssm:DocumentName``, ``openssm:DurationSeconds`` …).

A requester never approves or denies their own request, whatever a policy allows: that refusal is
audited as an explicit deny (``security.refuse_by_rule``)."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
from typing import Any, Final, Literal

from openssm.api import session_documents
from openssm.api.access import lifecycle, vocabulary
from openssm.api.access.vocabulary import (
    ACCESS_REQUEST_ID_KEY,
    DOCUMENT_NAME_KEY,
    DURATION_KEY,
    REQUESTER_ARN_KEY,
    REQUESTER_KEY,
    STATUS_KEY,
    TARGET_KEY,
    TARGET_PREFIX,
)
from openssm.api.errors import ApiError
from openssm.api.registry import json_action
from openssm.api.request import ApiRequest
from openssm.api.ssm_sessions import DOCUMENT_NAME_PATTERN
from openssm.api.targets import TARGET_PATTERN, resource_tag_context, target_arn
from openssm.api.validation import integer, key_value_filters, paging, required_string, string
from openssm.security import access_grants
from openssm.store import access_requests, instances
from openssm.store.access_requests import AccessQuery, AccessRequestRow, AccessStatus

ONLY_REQUESTER: Final = "OpenSSM: only the requester gets an access request's credentials"
FILTER_KEYS: Final = ("AccessRequestId", "Requester", "RequesterArn", "Target", "Status")


def _request_id(body: dict[str, Any]) -> str:
    return required_string(body, "AccessRequestId", pattern=vocabulary.REQUEST_ID_PATTERN)


def _decision_reason(body: dict[str, Any]) -> str | None:
    return string(body, "Reason", min_len=1, max_len=vocabulary.REASON_CHARS)


async def target_context(request: ApiRequest, target: str) -> dict[str, list[str]]:
    instance = await instances.get(request.services.engine, target)
    return resource_tag_context(instance.tags if instance is not None else None)


def _answer(request: ApiRequest, row: AccessRequestRow) -> dict[str, Any]:
    return {"AccessRequest": lifecycle.describe(row, request.region, request.account)}


@json_action(TARGET_PREFIX, "RequestAccess")
async def request_access(request: ApiRequest, body: dict[str, Any]) -> dict[str, Any]:
    target = required_string(body, "Target", pattern=TARGET_PATTERN)
    document_name = string(body, "DocumentName", pattern=DOCUMENT_NAME_PATTERN)
    minimum, maximum = (
        int(limit.total_seconds()) for limit in (vocabulary.MIN_DURATION, vocabulary.MAX_DURATION)
    )
    duration = integer(body, "DurationSeconds", minimum=minimum, maximum=maximum)
    if duration is None:
        raise ApiError("ValidationException", "DurationSeconds is required.")
    reason = required_string(body, "Reason", min_len=1, max_len=vocabulary.REASON_CHARS)
    row = await open_request(
        request,
        vocabulary.REQUEST_ACCESS,
        vocabulary.new_request_id(),
        target=target,
        document_name=document_name,
        duration=duration,
        reason=reason,
    )
    return _answer(request, row)


async def open_request(
    request: ApiRequest,
    action: str,
    request_id: str,
    *,
    target: str,
    document_name: str | None,
    duration: int,
    reason: str,
) -> AccessRequestRow:
    """A new pending request of the caller, once ``action`` is allowed on the target (RequestAccess,
    or AWS's StartAccessRequest: the same request, the same condition keys)."""
    principal = request.require_identity().principal
    lifecycle.holder_of(principal)  # a principal that cannot hold a grant cannot ask for one
    engine = request.services.engine
    name = document_name or session_documents.PREFERENCES_DOCUMENT
    document = await session_documents.find_or_fail(engine, name, request.account)
    context = await target_context(request, target)
    context.update(
        {
            ACCESS_REQUEST_ID_KEY: [request_id],
            TARGET_KEY: [target],
            DOCUMENT_NAME_KEY: [document.name],
            DURATION_KEY: [str(duration)],
        }
    )
    detail = {
        "accessRequestId": request_id,
        "target": target,
        "documentName": document.name,
        "durationSeconds": duration,
        "reason": reason,
    }
    await request.authorize(
        action, [target_arn(request.region, request.account, target)], context, detail=detail
    )
    instance = await instances.get(engine, target)
    if instance is None or instance.deregistered:
        raise ApiError("InvalidInstanceId", f"Instance {target} is not registered.")
    return await lifecycle.create(
        request.services,
        request_id,
        principal,
        target=target,
        document_name=document.name,
        duration=dt.timedelta(seconds=duration),
        reason=reason,
        now=request.now(),
    )


def decision_context(row: AccessRequestRow) -> dict[str, list[str]]:
    """The condition keys of a decision on ``row`` (besides the target's tags)."""
    return {
        ACCESS_REQUEST_ID_KEY: [row.request_id],
        REQUESTER_KEY: [row.requester_name],
        REQUESTER_ARN_KEY: [row.requester_arn],
        TARGET_KEY: [row.target],
        DOCUMENT_NAME_KEY: [row.document_name],
        DURATION_KEY: [str(row.duration_seconds)],
        STATUS_KEY: [str(row.status)],
    }


# Whose request the caller may act on: anyone's but their own (decisions), anyone's (revoke), or
# only their own (AWS's GetAccessToken: the credentials are the requester's).
Whose = Literal["others", "any", "own"]
_RULES: Final = {
    "others": (
        access_grants.OWN_DECISION,
        "because a requester may not approve or deny their own access request",
    ),
    "own": (ONLY_REQUESTER, "because only the requester gets an access request's credentials"),
}


async def authorized_request(
    request: ApiRequest, body: dict[str, Any], action: str, whose: Whose
) -> AccessRequestRow:
    """The request ``body`` names, once the caller is allowed ``action`` on it."""
    request_id = _request_id(body)
    row = await access_requests.get(request.services.engine, request_id)
    if row is None:
        raise ApiError("ResourceNotFoundException", f"Access request {request_id} does not exist.")
    identity = request.require_identity()
    resource = target_arn(request.region, request.account, row.target)
    detail = {"accessRequestId": request_id}
    own = identity.principal.arn == row.requester_arn
    if (whose == "others" and own) or (whose == "own" and not own):
        rule, because = _RULES[whose]
        await request.refuse_by_rule(action, resource, rule=rule, because=because, detail=detail)
    context = {**await target_context(request, row.target), **decision_context(row)}
    await request.authorize(action, [resource], context, detail=detail)
    return row


async def _decide(request: ApiRequest, body: dict[str, Any], decision: AccessStatus) -> dict[str, Any]:
    action = (
        vocabulary.APPROVE_ACCESS_REQUEST
        if decision == AccessStatus.APPROVED
        else vocabulary.DENY_ACCESS_REQUEST
    )
    row = await authorized_request(request, body, action, "others")
    if row.status != AccessStatus.PENDING:
        raise lifecycle.conflict(row, str(decision).lower())
    decider = request.require_identity().principal
    decided = await lifecycle.decide(
        request.services, row, decision, decider, reason=_decision_reason(body), now=request.now()
    )
    return _answer(request, decided)


@json_action(TARGET_PREFIX, "ApproveAccessRequest")
async def approve_access_request(request: ApiRequest, body: dict[str, Any]) -> dict[str, Any]:
    return await _decide(request, body, AccessStatus.APPROVED)


@json_action(TARGET_PREFIX, "DenyAccessRequest")
async def deny_access_request(request: ApiRequest, body: dict[str, Any]) -> dict[str, Any]:
    return await _decide(request, body, AccessStatus.DENIED)


@json_action(TARGET_PREFIX, "RevokeAccessRequest")
async def revoke_access_request(request: ApiRequest, body: dict[str, Any]) -> dict[str, Any]:
    """Ends a grant early, or withdraws a pending request (a requester may revoke their own, where a
    policy allows it: e.g. ``openssm:Requester`` equal to ``${aws:username}``)."""
    row = await authorized_request(request, body, vocabulary.REVOKE_ACCESS_REQUEST, "any")
    if row.status not in (AccessStatus.PENDING, AccessStatus.APPROVED):
        raise lifecycle.conflict(row, "revoked")
    by = request.require_identity().principal
    revoked = await lifecycle.revoke(
        request.services, row, by, reason=_decision_reason(body), now=request.now()
    )
    return _answer(request, revoked)


def _next_token(row: AccessRequestRow) -> str:
    mark = {"c": row.created_at.isoformat(), "i": row.request_id}
    return base64.urlsafe_b64encode(json.dumps(mark).encode()).decode("ascii")


def _after_token(token: str) -> tuple[dt.datetime, str]:
    try:
        mark = json.loads(base64.urlsafe_b64decode(token.encode("ascii")))
        created, request_id = dt.datetime.fromisoformat(mark["c"]), mark["i"]
        if created.tzinfo is None or not isinstance(request_id, str):
            raise ValueError("bad token")
        return created, request_id
    except (ValueError, KeyError, TypeError, UnicodeEncodeError, binascii.Error, RecursionError) as exc:
        raise ApiError("InvalidNextToken", "The specified token is not valid.") from exc


FILTER_CONTEXT: Final = {
    "AccessRequestId": ACCESS_REQUEST_ID_KEY,
    "Requester": REQUESTER_KEY,
    "RequesterArn": REQUESTER_ARN_KEY,
    "Target": TARGET_KEY,
    "Status": STATUS_KEY,
}


@json_action(TARGET_PREFIX, "ListAccessRequests")
async def list_access_requests(request: ApiRequest, body: dict[str, Any]) -> dict[str, Any]:
    """Newest first. ``Filters`` (``key``/``value``, each key once) narrow the list, and are also the
    condition keys of the check, so a policy may allow a requester to list only their own:
    ``StringEquals openssm:Requester ${aws:username}`` then needs the ``Requester`` filter."""
    max_results, next_token = paging(body, maximum=100, default=50)
    filters = dict(key_value_filters(body, allowed_keys=FILTER_KEYS, max_items=5, max_value_len=2048))
    if len(filters) != len(body.get("Filters") or []):
        raise ApiError("InvalidFilterKey", "Each filter key may be given once.")
    status = filters.get("Status")
    if status is not None and status not in tuple(AccessStatus):
        raise ApiError("InvalidFilterValue", f"Status must be one of {', '.join(AccessStatus)}.")
    context = {FILTER_CONTEXT[key]: [value] for key, value in filters.items()}
    await request.authorize(vocabulary.LIST_ACCESS_REQUESTS, ["*"], context)
    query = AccessQuery(
        requester_name=filters.get("Requester"),
        requester_arn=filters.get("RequesterArn"),
        status=AccessStatus(status) if status else None,
        target=filters.get("Target"),
        request_id=filters.get("AccessRequestId"),
        before=_after_token(next_token) if next_token else None,
        limit=max_results + 1,
    )
    rows = await access_requests.listing(request.services.engine, query)
    result: dict[str, Any] = {
        "AccessRequests": [
            lifecycle.describe(row, request.region, request.account) for row in rows[:max_results]
        ]
    }
    if len(rows) > max_results:
        result["NextToken"] = _next_token(rows[max_results - 1])
    return result
