"""Managed policies and their versions: CreatePolicy, GetPolicy, ListPolicies, DeletePolicy, and
Get/List/Create/Delete PolicyVersion, SetDefaultPolicyVersion."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final, cast, get_args

from openssm.api.iam.common import authorize, iam_action
from openssm.api.iam.params import (
    arn_param,
    boolean,
    encoded,
    paginate,
    param,
    path_param,
    path_prefix,
    policy_document,
    required,
    required_name,
)
from openssm.api.request import ApiRequest
from openssm.iam import policy_size
from openssm.iam.arn import policy_arn
from openssm.iam.policy import MANAGED_POLICY_MAX_CHARS
from openssm.store.errors import LimitExceeded
from openssm.store.iam import policies
from openssm.store.iam.policies import PolicyRow, PolicyVersionRow, Scope

VERSION_PATTERN: Final = r"v[1-9][0-9]*(\.[A-Za-z0-9-]*)?"


def policy_shape(policy: PolicyRow) -> dict[str, Any]:
    return {
        "PolicyName": policy.name,
        "PolicyId": policy.policy_id,
        "Arn": policy.arn,
        "Path": policy.path,
        "DefaultVersionId": policy.default_version_id,
        "AttachmentCount": policy.attachment_count,
        "PermissionsBoundaryUsageCount": 0,
        "IsAttachable": True,
        "Description": policy.description,
        "CreateDate": policy.created_at,
        "UpdateDate": policy.updated_at,
    }


def version_shape(version: PolicyVersionRow, *, with_document: bool = True) -> dict[str, Any]:
    return {
        "Document": encoded(version.document) if with_document else None,
        "VersionId": version.version_id,
        "IsDefaultVersion": version.is_default,
        "CreateDate": version.created_at,
    }


def managed_document(form: Mapping[str, str]) -> str:
    """``PolicyDocument`` of a managed policy: a valid policy within the managed policy size."""
    text, _ = policy_document(form, "PolicyDocument")
    if policy_size(text) > MANAGED_POLICY_MAX_CHARS:
        raise LimitExceeded(f"Cannot exceed quota for PolicySize: {MANAGED_POLICY_MAX_CHARS}")
    return text


async def _policy_arn(request: ApiRequest, form: Mapping[str, str], action: str) -> str:
    """``PolicyArn``, authorised for ``action``."""
    arn = arn_param(form, "PolicyArn")
    await authorize(request, action, arn)
    return arn


async def _version(request: ApiRequest, form: Mapping[str, str], action: str) -> tuple[str, str]:
    """``PolicyArn`` and ``VersionId``, authorised for ``action``."""
    arn, version = arn_param(form, "PolicyArn"), required(form, "VersionId", pattern=VERSION_PATTERN)
    await authorize(request, action, arn)
    return arn, version


@iam_action("CreatePolicy")
async def create_policy(request: ApiRequest, form: Mapping[str, str]) -> Any:
    name, path = required_name(form, "PolicyName", "policy"), path_param(form)
    description = param(form, "Description", min_len=0, max_len=1000)
    text = managed_document(form)
    await authorize(request, "CreatePolicy", policy_arn(request.account, name, path))
    policy = await policies.create(
        request.services.engine, request.account, name, path, description, text, request.now()
    )
    return {"Policy": policy_shape(policy)}


@iam_action("GetPolicy")
async def get_policy(request: ApiRequest, form: Mapping[str, str]) -> Any:
    arn = await _policy_arn(request, form, "GetPolicy")
    return {"Policy": policy_shape(await policies.require(request.services.engine, arn))}


@iam_action("ListPolicies")
async def list_policies(request: ApiRequest, form: Mapping[str, str]) -> Any:
    scope = cast(Scope, param(form, "Scope", allowed=get_args(Scope)) or "All")
    only_attached, prefix = boolean(form, "OnlyAttached"), path_prefix(form)
    await authorize(request, "ListPolicies", "*")
    listed = await policies.list_policies(
        request.services.engine, scope=scope, only_attached=only_attached, path_prefix=prefix
    )
    scope_key = f"ListPolicies{scope}{only_attached}{prefix}"
    return paginate(form, [policy_shape(p) for p in listed], scope_key, "Policies")


@iam_action("DeletePolicy")
async def delete_policy(request: ApiRequest, form: Mapping[str, str]) -> Any:
    await policies.delete(request.services.engine, await _policy_arn(request, form, "DeletePolicy"))


@iam_action("GetPolicyVersion")
async def get_policy_version(request: ApiRequest, form: Mapping[str, str]) -> Any:
    arn, version = await _version(request, form, "GetPolicyVersion")
    return {"PolicyVersion": version_shape(await policies.get_version(request.services.engine, arn, version))}


@iam_action("ListPolicyVersions")
async def list_policy_versions(request: ApiRequest, form: Mapping[str, str]) -> Any:
    arn = await _policy_arn(request, form, "ListPolicyVersions")
    versions = await policies.list_versions(request.services.engine, arn)
    shapes = [version_shape(v, with_document=False) for v in versions]
    return paginate(form, shapes, f"ListPolicyVersions{arn}", "Versions")


@iam_action("CreatePolicyVersion")
async def create_policy_version(request: ApiRequest, form: Mapping[str, str]) -> Any:
    arn = arn_param(form, "PolicyArn")
    text = managed_document(form)
    set_default = boolean(form, "SetAsDefault")
    await authorize(request, "CreatePolicyVersion", arn)
    version = await policies.create_version(request.services.engine, arn, text, set_default, request.now())
    return {"PolicyVersion": version_shape(version, with_document=False)}


@iam_action("DeletePolicyVersion")
async def delete_policy_version(request: ApiRequest, form: Mapping[str, str]) -> Any:
    await policies.delete_version(
        request.services.engine, *await _version(request, form, "DeletePolicyVersion")
    )


@iam_action("SetDefaultPolicyVersion")
async def set_default_policy_version(request: ApiRequest, form: Mapping[str, str]) -> Any:
    arn, version = await _version(request, form, "SetDefaultPolicyVersion")
    await policies.set_default_version(request.services.engine, arn, version, request.now())
