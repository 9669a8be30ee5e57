"""Administering managed nodes: deregistration and resource tags (the ``ssm:resourceTag/…`` of policies)."""

from __future__ import annotations

from typing import Any

from openssm.api.errors import ApiError
from openssm.api.registry import json_action
from openssm.api.request import ApiRequest
from openssm.api.targets import resource_tag_context, target_arn
from openssm.api.validation import object_list, required_string, string_list, tags
from openssm.store import access_keys, instances
from openssm.store.instances import InstanceRow

SSM = "AmazonSSM"
MANAGED_INSTANCE_PATTERN = r"^mi-[0-9a-f]{17}$"
# Tags also go on nodes that joined with IAM credentials (i-…): no EC2 API here tags them (an
# OpenSSM extension of ResourceType ManagedInstance; AWS takes only mi- ids there).
TAGGABLE_NODE_PATTERN = r"^(mi-[0-9a-f]{17}|i-[0-9a-f]{17})$"
MAX_TAGS = 50


async def _managed_instance(request: ApiRequest, instance_id: str, action: str) -> InstanceRow:
    instance = await instances.get(request.services.engine, instance_id)
    context = resource_tag_context(instance.tags if instance else None)
    await request.authorize(action, [target_arn(request.region, request.account, instance_id)], context)
    if instance is None or instance.deregistered:
        raise ApiError("InvalidInstanceId", f"Instance {instance_id} is not a registered managed node.")
    return instance


@json_action(SSM, "DeregisterManagedInstance")
async def deregister_managed_instance(request: ApiRequest, body: dict[str, Any]) -> dict[str, Any]:
    instance_id = required_string(body, "InstanceId", pattern=MANAGED_INSTANCE_PATTERN)
    await _managed_instance(request, instance_id, "ssm:DeregisterManagedInstance")
    engine = request.services.engine
    await instances.deregister(engine, instance_id)
    # Its role credentials stop working at once, not when they expire.
    await access_keys.delete_for_principal(engine, "managed-instance", instance_id)
    return {}


def _tag_target(body: dict[str, Any]) -> str:
    resource_type = required_string(body, "ResourceType")
    if resource_type != "ManagedInstance":
        raise ApiError("InvalidResourceType", f"Tags on {resource_type} resources are not supported here.")
    return required_string(body, "ResourceId", pattern=TAGGABLE_NODE_PATTERN)


@json_action(SSM, "AddTagsToResource")
async def add_tags_to_resource(request: ApiRequest, body: dict[str, Any]) -> dict[str, Any]:
    instance_id = _tag_target(body)
    new_tags = tags(body)
    if not new_tags:
        raise ApiError("ValidationException", "Tags must name at least one tag.")
    instance = await _managed_instance(request, instance_id, "ssm:AddTagsToResource")
    merged = {**instance.tags, **new_tags}
    if len(merged) > MAX_TAGS:
        raise ApiError("TooManyTagsError", f"A resource can have at most {MAX_TAGS} tags.")
    await instances.set_tags(request.services.engine, instance_id, merged)
    return {}


@json_action(SSM, "RemoveTagsFromResource")
async def remove_tags_from_resource(request: ApiRequest, body: dict[str, Any]) -> dict[str, Any]:
    instance_id = _tag_target(body)
    keys = set(string_list(body.get("TagKeys"), "TagKeys", min_items=1))
    instance = await _managed_instance(request, instance_id, "ssm:RemoveTagsFromResource")
    remaining = {key: value for key, value in instance.tags.items() if key not in keys}
    await instances.set_tags(request.services.engine, instance_id, remaining)
    return {}


@json_action(SSM, "ListTagsForResource")
async def list_tags_for_resource(request: ApiRequest, body: dict[str, Any]) -> dict[str, Any]:
    instance_id = _tag_target(body)
    object_list(body, "Filters")
    instance = await _managed_instance(request, instance_id, "ssm:ListTagsForResource")
    return {"TagList": [{"Key": key, "Value": value} for key, value in sorted(instance.tags.items())]}
