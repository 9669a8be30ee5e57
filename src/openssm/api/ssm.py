"""SSM operations for administrators: activations, managed-node inventory, connection status.

Session operations live in ``openssm.api.ssm_sessions``, node deregistration and tags in
``openssm.api.ssm_node_admin`` (imported here so they register too).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from openssm.api import ssm_node_admin, ssm_sessions  # noqa: F401 - register their operations
from openssm.api.errors import ApiError
from openssm.api.pagination import open_keyset, page, seal_keyset
from openssm.api.registry import json_action
from openssm.api.request import ApiRequest
from openssm.api.targets import resource_tag_context, target_arn
from openssm.api.validation import (
    epoch,
    integer,
    object_list,
    paging,
    required_string,
    string,
    string_list,
    tags,
    timestamp,
)
from openssm.iam.arn import role_arn
from openssm.store import activations, gateway_nodes, ids, instances
from openssm.store.activations import ActivationRow
from openssm.store.iam import roles
from openssm.store.instances import InstanceRow

SSM = "AmazonSSM"
DEFAULT_ACTIVATION_LIFETIME = dt.timedelta(hours=24)
MAX_ACTIVATION_LIFETIME = dt.timedelta(days=30)
ACTIVATION_FILTER_KEYS = {"ActivationIds", "DefaultInstanceName", "IamRole"}


async def _role_trusts_ssm(request: ApiRequest, role_name: str) -> bool:
    role = await roles.get(request.services.engine, role_name)
    return role is not None and role.trusts_ssm


# -- activations -----------------------------------------------------------------------------------


@json_action(SSM, "CreateActivation")
async def create_activation(request: ApiRequest, body: dict[str, Any]) -> dict[str, Any]:
    role = required_string(body, "IamRole", min_len=1, max_len=64)
    description = string(body, "Description", max_len=256)
    default_name = string(body, "DefaultInstanceName", max_len=256)
    limit = integer(body, "RegistrationLimit", minimum=1, maximum=1000) or 1
    expiration = timestamp(body, "ExpirationDate")
    activation_tags = tags(body)
    object_list(body, "RegistrationMetadata", max_items=10)
    await request.authorize(
        "ssm:CreateActivation", [f"arn:aws:ssm:{request.region}:{request.account}:activation/*"]
    )
    await request.authorize("iam:PassRole", [role_arn(request.account, role)])
    now = request.now()
    if expiration is None:
        expiration = now + DEFAULT_ACTIVATION_LIFETIME
    if expiration <= now:
        raise ApiError("InvalidParameters", "ExpirationDate must be in the future.")
    if expiration > now + MAX_ACTIVATION_LIFETIME:
        raise ApiError("InvalidParameters", "ExpirationDate cannot be more than 30 days in the future.")
    if not await _role_trusts_ssm(request, role):
        raise ApiError(
            "InvalidParameters", f"Nonexistent role or missing ssm service principal in trust policy: {role}"
        )
    activation_id, code = ids.activation_id(), ids.activation_code()
    await activations.create(
        request.services.engine,
        activation_id=activation_id,
        code=code,
        iam_role=role,
        description=description,
        default_instance_name=default_name,
        registration_limit=limit,
        expiration_date=expiration,
        tags=activation_tags,
        now=now,
    )
    return {"ActivationId": activation_id, "ActivationCode": code}


def _activation_filter(body: dict[str, Any]) -> dict[str, set[str]]:
    wanted: dict[str, set[str]] = {}
    for index, item in enumerate(object_list(body, "Filters")):
        path = f"Filters.{index + 1}.member"
        key = required_string(item, "FilterKey", path=f"{path}.FilterKey")
        if key not in ACTIVATION_FILTER_KEYS:
            raise ApiError(
                "ValidationException",
                f"1 validation error detected: Value '{key}' at '{path}.FilterKey' failed to satisfy "
                f"constraint: Member must satisfy enum value set: [{', '.join(sorted(ACTIVATION_FILTER_KEYS))}]",
            )
        values = string_list(item.get("FilterValues", []), f"{path}.FilterValues")
        wanted.setdefault(key, set()).update(values)
    return wanted


def _activation_shape(row: ActivationRow, now: dt.datetime) -> dict[str, Any]:
    return {
        "ActivationId": row.activation_id,
        "Description": row.description,
        "DefaultInstanceName": row.default_instance_name,
        "IamRole": row.iam_role,
        "RegistrationLimit": row.registration_limit,
        "RegistrationsCount": row.registrations_count,
        "ExpirationDate": epoch(row.expiration_date),
        "Expired": row.expiration_date <= now,
        "CreatedDate": epoch(row.created_at),
        "Tags": [{"Key": key, "Value": value} for key, value in sorted(row.tags.items())],
    }


def _activation_field(row: ActivationRow, key: str) -> str | None:
    return {
        "ActivationIds": row.activation_id,
        "DefaultInstanceName": row.default_instance_name,
        "IamRole": row.iam_role,
    }[key]


@json_action(SSM, "DescribeActivations")
async def describe_activations(request: ApiRequest, body: dict[str, Any]) -> dict[str, Any]:
    wanted = _activation_filter(body)
    max_results, next_token = paging(body)
    await request.authorize("ssm:DescribeActivations", ["*"])
    rows = [
        row
        for row in await activations.list_all(request.services.engine)
        if all(_activation_field(row, key) in values for key, values in wanted.items())
    ]
    chunk, token = page(rows, next_token, max_results, "activations")
    now = request.now()
    return {"ActivationList": [_activation_shape(row, now) for row in chunk], "NextToken": token}


@json_action(SSM, "DeleteActivation")
async def delete_activation(request: ApiRequest, body: dict[str, Any]) -> dict[str, Any]:
    activation_id = required_string(body, "ActivationId", min_len=1, max_len=64)
    await request.authorize(
        "ssm:DeleteActivation", [f"arn:aws:ssm:{request.region}:{request.account}:activation/{activation_id}"]
    )
    if not await activations.delete(request.services.engine, activation_id):
        raise ApiError("InvalidActivationId", "The activation ID is not valid.")
    return {}


# -- managed nodes ---------------------------------------------------------------------------------

INSTANCE_FILTER_KEYS = (
    "InstanceIds",
    "AgentVersion",
    "PingStatus",
    "PlatformTypes",
    "ActivationIds",
    "IamRole",
    "ResourceType",
    "AssociationStatus",
)


def _instance_shape(row: InstanceRow, ping: str) -> dict[str, Any]:
    managed = row.instance_id.startswith("mi-")
    return {
        "InstanceId": row.instance_id,
        "PingStatus": ping,
        "LastPingDateTime": epoch(row.last_ping_at),
        "AgentVersion": row.agent_version,
        "IsLatestVersion": False,
        "PlatformType": row.platform_type,
        "PlatformName": row.platform_name,
        "PlatformVersion": row.platform_version,
        "ActivationId": row.activation_id,
        "IamRole": row.iam_role,
        "RegistrationDate": epoch(row.registration_date),
        "ResourceType": "ManagedInstance" if managed else "EC2Instance",
        "Name": row.name,
        "IPAddress": row.ip_address,
        "ComputerName": row.computer_name,
        "SourceId": row.instance_id,
        "SourceType": "AWS::SSM::ManagedInstance" if managed else "AWS::EC2::Instance",
    }


def _instance_filters(body: dict[str, Any]) -> list[tuple[str, set[str]]]:
    filters: list[tuple[str, set[str]]] = []
    for member, key_name, values_name in (
        ("InstanceInformationFilterList", "key", "valueSet"),
        ("Filters", "Key", "Values"),
    ):
        for index, item in enumerate(object_list(body, member)):
            path = f"{member}.{index + 1}.member"
            key = required_string(item, key_name, min_len=1, max_len=128, path=f"{path}.{key_name}")
            values = string_list(item.get(values_name), f"{path}.{values_name}", min_items=1)
            allowed_key = key in INSTANCE_FILTER_KEYS or (
                member == "Filters" and (key.startswith("tag:") or key == "tag-key")
            )
            if not allowed_key:
                raise ApiError("InvalidFilterKey", f"The filter key {key} is not valid.")
            filters.append((key, set(values)))
    return filters


@json_action(SSM, "DescribeInstanceInformation")
async def describe_instance_information(request: ApiRequest, body: dict[str, Any]) -> dict[str, Any]:
    """One page read from the database (keyset on the instance id, the filters in SQL): the cost of
    a page does not grow with the fleet."""
    filters = _instance_filters(body)
    max_results, next_token = paging(body, minimum=5)
    await request.authorize("ssm:DescribeInstanceInformation", ["*"])
    services = request.services
    query = sorted((key, sorted(values)) for key, values in filters)
    after = open_keyset(services.cipher, next_token, "instances", query)
    alive = await gateway_nodes.alive(services.engine, now=request.now(), own_node=services.config.node_id)
    conditions = [instances.filter_condition(key, values, alive) for key, values in filters]
    rows = await instances.list_page(services.engine, conditions, after=after, limit=max_results + 1)
    chunk = rows[:max_results]
    token = None
    if len(rows) > max_results:
        token = seal_keyset(services.cipher, "instances", chunk[-1].instance_id, query)
    return {
        "InstanceInformationList": [_instance_shape(row, row.ping_status(alive)) for row in chunk],
        "NextToken": token,
    }


@json_action(SSM, "GetConnectionStatus")
async def get_connection_status(request: ApiRequest, body: dict[str, Any]) -> dict[str, Any]:
    target = required_string(body, "Target", min_len=1, max_len=400)
    engine = request.services.engine
    instance = await instances.get(engine, target)
    context = resource_tag_context(instance.tags if instance else None)
    await request.authorize(
        "ssm:GetConnectionStatus", [target_arn(request.region, request.account, target)], context
    )
    connected = False
    if instance is not None:
        alive = await gateway_nodes.alive(engine, now=request.now(), own_node=request.services.config.node_id)
        connected = instance.ping_status(alive) == "Online"
    return {"Target": target, "Status": "connected" if connected else "notconnected"}
