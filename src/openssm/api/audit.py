"""The audit trail of authorisation decisions, listed through CloudTrail's ``LookupEvents``.

Every decision the authoriser makes is an audit row (who, action, resource, allow/deny and the
statements that decided). Serving them as CloudTrail events means operators read them with the
tools they know: ``aws cloudtrail lookup-events --endpoint-url …``.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
from typing import Any

from openssm.api.errors import ApiError
from openssm.api.registry import json_action
from openssm.api.request import ApiRequest
from openssm.api.validation import integer, object_list, string, timestamp
from openssm.store.audit_log import AuditQuery, AuditRow, lookup

TARGET_PREFIX = "com.amazonaws.cloudtrail.v20131101.CloudTrail_20131101"
READ_ONLY_PREFIXES = ("Describe", "Get", "List", "Lookup", "Simulate")
ATTRIBUTE_KEYS = (
    "EventId",
    "EventName",
    "ReadOnly",
    "Username",
    "ResourceType",
    "ResourceName",
    "EventSource",
    "AccessKeyId",
)
# Lookups filtered after the query (attributes the table has no column for) scan at most this many rows.
SCAN_LIMIT = 5000


def _split_action(action: str) -> tuple[str, str]:
    service, _, name = action.partition(":")
    return service, name


def resource_type(resource: str) -> str:
    """CloudTrail-style resource type for an ARN (``AWS::SSM::Session``…), or ``*``."""
    parts = resource.split(":", 5)
    if len(parts) < 6:
        return resource
    service, rest = parts[2], parts[5]
    kind = rest.split("/", 1)[0] if "/" in rest else rest.split(":", 1)[0]
    pretty = "".join(word[:1].upper() + word[1:] for word in kind.split("-"))
    return f"AWS::{service.upper() if len(service) <= 3 else service.capitalize()}::{pretty}"


def _event(row: AuditRow, account: str) -> dict[str, Any]:
    service, name = _split_action(row.action)
    principal_arn = row.principal_arn
    username = principal_arn.rsplit("/", 1)[-1]
    time = row.time
    read_only = name.startswith(READ_ONLY_PREFIXES)
    resource = row.resource
    detail: dict[str, Any] = {
        "eventVersion": "1.08",
        "userIdentity": {"arn": principal_arn, "accountId": account, "userName": username},
        "eventTime": time.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "eventSource": f"{service}.amazonaws.com",
        "eventName": name,
        "sourceIPAddress": row.source_ip,
        "readOnly": read_only,
        "resources": [{"ARN": resource}],
        "eventType": "AwsApiCall",
        "recipientAccountId": account,
    }
    if row.service_event:  # the server acted by itself (CloudTrail's AwsServiceEvent)
        detail["userIdentity"] = {"type": "AWSService", "accountId": account, "invokedBy": principal_arn}
        detail["eventType"] = "AwsServiceEvent"
        detail["serviceEventDetails"] = row.detail
    else:
        detail["openssmAuthorization"] = {"decision": row.decision, "decidedBy": row.matched_statement}
        if row.detail:
            detail["requestParameters"] = row.detail
        if row.decision != "allowed":
            detail["errorCode"] = "AccessDenied"
    return {
        "EventId": str(row.id),
        "EventName": name,
        "ReadOnly": "true" if read_only else "false",
        "EventTime": time.timestamp(),
        "EventSource": f"{service}.amazonaws.com",
        "Username": username,
        "Resources": [{"ResourceType": resource_type(resource), "ResourceName": resource}],
        "CloudTrailEvent": json.dumps(detail),
    }


def _decode_token(token: str) -> int:
    try:
        decoded = json.loads(base64.urlsafe_b64decode(token.encode("ascii")))
        before = decoded["before"] if isinstance(decoded, dict) else None
        if isinstance(before, bool) or not isinstance(before, int) or before < 1:
            raise ValueError("bad token")
        return before
    except (ValueError, KeyError, UnicodeEncodeError, binascii.Error, RecursionError) as exc:
        raise ApiError("InvalidNextTokenException", "Invalid NextToken.") from exc


def _encode_token(before_id: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"before": before_id}).encode()).decode("ascii")


def _query_from(body: dict[str, Any]) -> tuple[AuditQuery, tuple[str, str] | None]:
    """The SQL-side query, plus an attribute that must be filtered on the events themselves."""
    attributes = object_list(body, "LookupAttributes")
    if len(attributes) > 1:
        raise ApiError("InvalidLookupAttributesException", "You can only specify one lookup attribute.")
    start, end = timestamp(body, "StartTime"), timestamp(body, "EndTime")
    if start and end and start > end:
        raise ApiError("InvalidTimeRangeException", "StartTime must be earlier than EndTime.")
    max_results = integer(body, "MaxResults")
    if max_results is not None and not 1 <= max_results <= 50:
        raise ApiError("InvalidMaxResultsException", "MaxResults must be between 1 and 50.")
    token = string(body, "NextToken")
    query = AuditQuery(
        start=start,
        end=end,
        before_id=_decode_token(token) if token else None,
        limit=max_results or 50,
    )
    post_filter: tuple[str, str] | None = None
    if attributes:
        key = string(
            attributes[0], "AttributeKey", required=True, allowed=ATTRIBUTE_KEYS, path="AttributeKey"
        )
        value = string(attributes[0], "AttributeValue", required=True, min_len=1, max_len=2000)
        assert key is not None and value is not None
        if key == "EventId":
            if not value.isdigit():
                return AuditQuery(limit=0), None
            query = AuditQuery(event_id=int(value), limit=1)
        elif key == "EventName":
            query = _replace(query, event_name=value)
        elif key == "EventSource":
            query = _replace(query, event_source=value.removesuffix(".amazonaws.com"))
        elif key == "Username":
            query = _replace(query, principal_name=value)
        elif key == "ResourceName":
            query = _replace(query, resource=value)
        else:  # ReadOnly, ResourceType, AccessKeyId: filtered on the built events
            post_filter = (key, value)
    return query, post_filter


def _replace(query: AuditQuery, **changes: Any) -> AuditQuery:
    return dataclasses.replace(query, **changes)


def _matches(event: dict[str, Any], key: str, value: str) -> bool:
    if key == "ReadOnly":
        return bool(event["ReadOnly"] == value.lower())
    if key == "ResourceType":
        return any(r["ResourceType"] == value for r in event["Resources"])
    return False  # AccessKeyId: decisions are not recorded per key


@json_action(TARGET_PREFIX, "LookupEvents")
async def lookup_events(request: ApiRequest, body: dict[str, Any]) -> dict[str, Any]:
    await request.authorize("cloudtrail:LookupEvents", ["*"])
    query, post_filter = _query_from(body)
    if query.limit == 0:
        return {"Events": []}
    engine = request.services.engine
    if post_filter is None:
        rows = await lookup(engine, query)
        events = [_event(row, request.account) for row in rows]
        last_id = rows[-1].id if len(rows) == query.limit else None
    else:
        wanted, events, last_id = query.limit, [], None
        scanned = 0
        cursor = query
        while len(events) < wanted and scanned < SCAN_LIMIT:
            rows = await lookup(engine, _replace(cursor, limit=min(500, SCAN_LIMIT - scanned)))
            if not rows:
                break
            scanned += len(rows)
            for row in rows:
                event = _event(row, request.account)
                if _matches(event, *post_filter):
                    events.append(event)
                    if len(events) == wanted:
                        last_id = row.id
                        break
            cursor = _replace(cursor, before_id=rows[-1].id)
    result: dict[str, Any] = {"Events": events}
    if isinstance(last_id, int):
        result["NextToken"] = _encode_token(last_id)
    return result
