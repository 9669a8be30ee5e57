"""IAM Query API (``https://iam.amazonaws.com/doc/2010-05-08/``): users, groups, roles, managed and
inline policies, access keys, tags and the policy simulator, as boto3 and the AWS CLI call them.

Every action is authorised as ``iam:<Action>`` on the ARN of the entity it touches, before the
entity is looked up (so an unauthorised caller cannot probe which names exist).
"""

from __future__ import annotations

import datetime as dt
import functools
import re
import urllib.parse
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from openssm.api.errors import ApiError
from openssm.api.pagination import page
from openssm.api.registry import query_action
from openssm.api.request import ApiRequest
from openssm.iam import (
    AuthzRequest,
    MalformedPolicyDocument,
    Policy,
    PolicySource,
    evaluate,
    parse_policy,
    policy_size,
    request_context,
    statement_positions,
)
from openssm.iam.arn import group_arn, policy_arn, role_arn, user_arn
from openssm.iam.policy import MANAGED_POLICY_MAX_CHARS, PolicyKind
from openssm.iam.principal import Principal
from openssm.security.errors import AccessDenied
from openssm.store import access_keys
from openssm.store import iam as store
from openssm.store.iam import HolderType, IamError

IAM_XMLNS = "https://iam.amazonaws.com/doc/2010-05-08/"

NAME_PATTERN = r"[\w+=,.@-]+"
PATH_PATTERN = r"(/)|(/[\u0021-\u007E]+/)"
PATH_PREFIX_PATTERN = r"/[\u0021-\u007E]*"
# AWS quotas on inline policy size (characters, whitespace not counted).
INLINE_MAX_CHARS: dict[HolderType, int] = {"user": 2048, "group": 5120, "role": 10240}
NAME_MAX: dict[str, int] = {"user": 64, "group": 128, "role": 64, "policy": 128}

QueryHandler = Callable[[ApiRequest, Mapping[str, str]], Awaitable[Any]]


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def iam_action(action: str) -> Callable[[QueryHandler], QueryHandler]:
    """Register an IAM handler; store, policy and authorisation failures come out in IAM's words."""

    def register(handler: QueryHandler) -> QueryHandler:
        @functools.wraps(handler)
        async def wrapped(request: ApiRequest, form: Mapping[str, str]) -> Any:
            try:
                return await handler(request, form)
            except IamError as exc:
                raise ApiError(exc.code, exc.message, exc.status) from None
            except MalformedPolicyDocument as exc:
                raise ApiError("MalformedPolicyDocument", str(exc)) from None
            except AccessDenied as exc:
                raise ApiError("AccessDenied", exc.message, 403) from None

        query_action("iam", action, xmlns=IAM_XMLNS)(wrapped)
        return handler

    return register


# -- parameters -------------------------------------------------------------------------------------
def _validation(member: str, value: str | None, constraint: str) -> ApiError:
    shown = "null" if value is None else f"'{value[:128]}'"
    return ApiError(
        "ValidationError",
        f"1 validation error detected: Value {shown} at '{member[:1].lower() + member[1:]}' "
        f"failed to satisfy constraint: {constraint}",
    )


def param(
    form: Mapping[str, str],
    name: str,
    *,
    required: bool = False,
    min_len: int = 1,
    max_len: int | None = None,
    pattern: str | None = None,
    allowed: Sequence[str] | None = None,
) -> str | None:
    value = form.get(name)
    if value is None:
        if required:
            raise _validation(name, None, "Member must not be null")
        return None
    if len(value) < min_len:
        raise _validation(name, value, f"Member must have length greater than or equal to {min_len}")
    if max_len is not None and len(value) > max_len:
        raise _validation(name, value, f"Member must have length less than or equal to {max_len}")
    if pattern is not None and not re.fullmatch(pattern, value, re.ASCII):
        raise _validation(name, value, f"Member must satisfy regular expression pattern: {pattern}")
    if allowed is not None and value not in allowed:
        raise _validation(name, value, f"Member must satisfy enum value set: [{', '.join(allowed)}]")
    return value


def required(form: Mapping[str, str], name: str, **kwargs: Any) -> str:
    value = param(form, name, required=True, **kwargs)
    assert value is not None
    return value


def entity_name(form: Mapping[str, str], member: str, kind: str, *, optional: bool = False) -> str | None:
    return param(form, member, required=not optional, max_len=NAME_MAX[kind], pattern=NAME_PATTERN)


def required_name(form: Mapping[str, str], member: str, kind: str) -> str:
    value = entity_name(form, member, kind)
    assert value is not None
    return value


def path_param(form: Mapping[str, str]) -> str:
    return param(form, "Path", max_len=512, pattern=PATH_PATTERN) or "/"


def path_prefix(form: Mapping[str, str]) -> str:
    return param(form, "PathPrefix", max_len=512, pattern=PATH_PREFIX_PATTERN) or "/"


def boolean(form: Mapping[str, str], name: str) -> bool:
    value = param(form, name, min_len=0, allowed=("true", "false", "True", "False"))
    return value is not None and value.lower() == "true"


def _indexed(form: Mapping[str, str], prefix: str) -> dict[int, str]:
    """``<prefix>.<N><rest>`` parameters grouped by N (Query lists are 1-based)."""
    found: dict[int, str] = {}
    head = prefix + "."
    for key in form:
        if key.startswith(head):
            number, _, _ = key[len(head) :].partition(".")
            if number.isdigit():
                found[int(number)] = f"{head}{number}"
    return dict(sorted(found.items()))


def members(form: Mapping[str, str], name: str) -> list[str]:
    """A Query list of strings: ``Name.member.1=…&Name.member.2=…``."""
    return [form[key] for key in _indexed(form, f"{name}.member").values() if key in form]


def member_prefixes(form: Mapping[str, str], name: str) -> list[str]:
    """The ``Name.member.N`` prefixes of a Query list of structures."""
    return list(_indexed(form, f"{name}.member").values())


def tags_param(form: Mapping[str, str]) -> dict[str, str]:
    tags: dict[str, str] = {}
    for prefix in member_prefixes(form, "Tags"):
        key = required(form, f"{prefix}.Key", max_len=128)
        tags[key] = param(form, f"{prefix}.Value", min_len=0, max_len=256) or ""
    if len(tags) > store.MAX_TAGS:
        raise _validation("Tags", None, f"Member must have length less than or equal to {store.MAX_TAGS}")
    return tags


def tag_list(tags: Mapping[str, str]) -> list[dict[str, str]] | None:
    return [{"Key": key, "Value": value} for key, value in tags.items()] or None


def paginate(form: Mapping[str, str], items: Sequence[Any], scope: str, key: str) -> dict[str, Any]:
    max_items_text = param(form, "MaxItems", pattern=r"[0-9]+")
    max_items = int(max_items_text) if max_items_text else 100
    if not 1 <= max_items <= 1000:
        raise _validation("MaxItems", max_items_text, "Member must have value between 1 and 1000")
    chunk, marker = page(items, param(form, "Marker", max_len=320), max_items, scope)
    return {key: chunk, "IsTruncated": marker is not None, "Marker": marker}


def policy_document(
    form: Mapping[str, str], member: str, *, kind: PolicyKind = "identity"
) -> tuple[str, Policy]:
    """The JSON text (form-decoded already) and its parsed policy; MalformedPolicyDocument if invalid."""
    text = required(form, member, max_len=131072)
    return text, parse_policy(text, kind=kind)


def encoded(document: str) -> str:
    """Policy documents in IAM responses are URL-encoded JSON (botocore decodes them)."""
    return urllib.parse.quote(document, safe="")


# -- shapes -----------------------------------------------------------------------------------------
def user_shape(user: store.UserRow) -> dict[str, Any]:
    return {
        "Path": user.path,
        "UserName": user.name,
        "UserId": user.user_id,
        "Arn": user.arn,
        "CreateDate": user.created_at,
        "Tags": tag_list(user.tags),
    }


def group_shape(group: store.GroupRow) -> dict[str, Any]:
    return {
        "Path": group.path,
        "GroupName": group.name,
        "GroupId": group.group_id,
        "Arn": group.arn,
        "CreateDate": group.created_at,
    }


def role_shape(role: store.RoleRow) -> dict[str, Any]:
    return {
        "Path": role.path,
        "RoleName": role.name,
        "RoleId": role.role_id,
        "Arn": role.arn,
        "CreateDate": role.created_at,
        "AssumeRolePolicyDocument": encoded(role.assume_role_policy),
        "Description": role.description,
        "MaxSessionDuration": 3600,
        "Tags": tag_list(role.tags),
    }


def policy_shape(policy: store.PolicyRow) -> dict[str, Any]:
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


def version_shape(version: store.PolicyVersionRow, *, with_document: bool = True) -> dict[str, Any]:
    return {
        "Document": encoded(version.document) if with_document else None,
        "VersionId": version.version_id,
        "IsDefaultVersion": version.is_default,
        "CreateDate": version.created_at,
    }


# -- helpers ----------------------------------------------------------------------------------------
async def authorize(
    request: ApiRequest, action: str, resource: str, context: Mapping[str, Sequence[str]] | None = None
) -> None:
    await request.authorize(f"iam:{action}", [resource], context or {})


async def user_resource(request: ApiRequest, name: str) -> tuple[str, store.UserRow | None]:
    """The user's ARN (with its real path when it exists) and its row."""
    row = await store.get_user(request.services.engine, name)
    return (row.arn if row else user_arn(request.account, name)), row


async def group_resource(request: ApiRequest, name: str) -> tuple[str, store.GroupRow | None]:
    row = await store.get_group(request.services.engine, name)
    return (row.arn if row else group_arn(request.account, name)), row


async def role_resource(request: ApiRequest, name: str) -> tuple[str, store.RoleRow | None]:
    row = await store.get_role(request.services.engine, name)
    return (row.arn if row else role_arn(request.account, name)), row


async def holder_arn(request: ApiRequest, holder_type: HolderType, name: str) -> str:
    if holder_type == "user":
        return (await user_resource(request, name))[0]
    if holder_type == "group":
        return (await group_resource(request, name))[0]
    return (await role_resource(request, name))[0]


def caller_user_name(request: ApiRequest, form: Mapping[str, str]) -> str:
    """``UserName`` if given, else the calling user (AWS: implied by the signing key)."""
    name = entity_name(form, "UserName", "user", optional=True)
    if name is not None:
        return name
    principal = request.require_identity().principal
    if principal.type != "User" or not principal.username:
        raise ApiError("ValidationError", "Must specify userName when calling with non-User credentials")
    return principal.username


def tag_context(tags: Mapping[str, str]) -> dict[str, list[str]]:
    context: dict[str, list[str]] = {f"aws:RequestTag/{key}": [value] for key, value in tags.items()}
    context["aws:TagKeys"] = list(tags)
    return context


def missing(message: str) -> IamError:
    return store.no_such_entity(message)


# -- users ------------------------------------------------------------------------------------------
@iam_action("CreateUser")
async def create_user(request: ApiRequest, form: Mapping[str, str]) -> Any:
    name, path, tags = required_name(form, "UserName", "user"), path_param(form), tags_param(form)
    await authorize(
        request, "CreateUser", user_arn(request.account, name, path), tag_context(tags) if tags else None
    )
    user = await store.create_user(request.services.engine, request.account, name, path, tags, _now())
    return {"User": user_shape(user)}


@iam_action("GetUser")
async def get_user(request: ApiRequest, form: Mapping[str, str]) -> Any:
    name = caller_user_name(request, form)
    arn, row = await user_resource(request, name)
    await authorize(request, "GetUser", arn)
    if row is None:
        raise missing(f"The user with name {name} cannot be found.")
    return {"User": user_shape(row)}


@iam_action("ListUsers")
async def list_users(request: ApiRequest, form: Mapping[str, str]) -> Any:
    prefix = path_prefix(form)
    await authorize(request, "ListUsers", "*")
    users = await store.list_users(request.services.engine, prefix)
    return paginate(form, [user_shape(u) for u in users], f"ListUsers{prefix}", "Users")


@iam_action("DeleteUser")
async def delete_user(request: ApiRequest, form: Mapping[str, str]) -> Any:
    name = required_name(form, "UserName", "user")
    await authorize(request, "DeleteUser", (await user_resource(request, name))[0])
    await store.delete_user(request.services.engine, name)
    return None


@iam_action("TagUser")
async def tag_user(request: ApiRequest, form: Mapping[str, str]) -> Any:
    name, tags = required_name(form, "UserName", "user"), tags_param(form)
    if not tags:
        raise _validation("Tags", None, "Member must have length greater than or equal to 1")
    await authorize(request, "TagUser", (await user_resource(request, name))[0], tag_context(tags))
    await store.tag_user(request.services.engine, name, tags)
    return None


@iam_action("UntagUser")
async def untag_user(request: ApiRequest, form: Mapping[str, str]) -> Any:
    name, keys = required_name(form, "UserName", "user"), members(form, "TagKeys")
    if not keys:
        raise _validation("TagKeys", None, "Member must have length greater than or equal to 1")
    await authorize(request, "UntagUser", (await user_resource(request, name))[0], {"aws:TagKeys": keys})
    await store.untag_user(request.services.engine, name, keys)
    return None


@iam_action("ListUserTags")
async def list_user_tags(request: ApiRequest, form: Mapping[str, str]) -> Any:
    name = required_name(form, "UserName", "user")
    arn, row = await user_resource(request, name)
    await authorize(request, "ListUserTags", arn)
    if row is None:
        raise missing(f"The user with name {name} cannot be found.")
    return paginate(form, tag_list(row.tags) or [], f"ListUserTags{name}", "Tags")


# -- groups -----------------------------------------------------------------------------------------
@iam_action("CreateGroup")
async def create_group(request: ApiRequest, form: Mapping[str, str]) -> Any:
    name, path = required_name(form, "GroupName", "group"), path_param(form)
    await authorize(request, "CreateGroup", group_arn(request.account, name, path))
    group = await store.create_group(request.services.engine, request.account, name, path, _now())
    return {"Group": group_shape(group)}


@iam_action("GetGroup")
async def get_group(request: ApiRequest, form: Mapping[str, str]) -> Any:
    name = required_name(form, "GroupName", "group")
    arn, row = await group_resource(request, name)
    await authorize(request, "GetGroup", arn)
    if row is None:
        raise missing(f"The group with name {name} cannot be found.")
    users = await store.group_members(request.services.engine, name)
    result = paginate(form, [user_shape(u) for u in users], f"GetGroup{name}", "Users")
    return {"Group": group_shape(row), **result}


@iam_action("ListGroups")
async def list_groups(request: ApiRequest, form: Mapping[str, str]) -> Any:
    prefix = path_prefix(form)
    await authorize(request, "ListGroups", "*")
    groups = await store.list_groups(request.services.engine, prefix)
    return paginate(form, [group_shape(g) for g in groups], f"ListGroups{prefix}", "Groups")


@iam_action("DeleteGroup")
async def delete_group(request: ApiRequest, form: Mapping[str, str]) -> Any:
    name = required_name(form, "GroupName", "group")
    await authorize(request, "DeleteGroup", (await group_resource(request, name))[0])
    await store.delete_group(request.services.engine, name)
    return None


@iam_action("AddUserToGroup")
async def add_user_to_group(request: ApiRequest, form: Mapping[str, str]) -> Any:
    group, user = required_name(form, "GroupName", "group"), required_name(form, "UserName", "user")
    await authorize(request, "AddUserToGroup", (await group_resource(request, group))[0])
    await store.add_user_to_group(request.services.engine, group, user)
    return None


@iam_action("RemoveUserFromGroup")
async def remove_user_from_group(request: ApiRequest, form: Mapping[str, str]) -> Any:
    group, user = required_name(form, "GroupName", "group"), required_name(form, "UserName", "user")
    await authorize(request, "RemoveUserFromGroup", (await group_resource(request, group))[0])
    await store.remove_user_from_group(request.services.engine, group, user)
    return None


@iam_action("ListGroupsForUser")
async def list_groups_for_user(request: ApiRequest, form: Mapping[str, str]) -> Any:
    name = required_name(form, "UserName", "user")
    arn, row = await user_resource(request, name)
    await authorize(request, "ListGroupsForUser", arn)
    if row is None:
        raise missing(f"The user with name {name} cannot be found.")
    groups = await store.groups_for_user(request.services.engine, name)
    return paginate(form, [group_shape(g) for g in groups], f"ListGroupsForUser{name}", "Groups")


# -- roles ------------------------------------------------------------------------------------------
@iam_action("CreateRole")
async def create_role(request: ApiRequest, form: Mapping[str, str]) -> Any:
    name, path, tags = required_name(form, "RoleName", "role"), path_param(form), tags_param(form)
    trust, _ = policy_document(form, "AssumeRolePolicyDocument", kind="trust")
    description = param(form, "Description", min_len=0, max_len=1000)
    await authorize(
        request, "CreateRole", role_arn(request.account, name, path), tag_context(tags) if tags else None
    )
    role = await store.create_role(
        request.services.engine, request.account, name, path, trust, description, tags, _now()
    )
    return {"Role": role_shape(role)}


@iam_action("GetRole")
async def get_role(request: ApiRequest, form: Mapping[str, str]) -> Any:
    name = required_name(form, "RoleName", "role")
    arn, row = await role_resource(request, name)
    await authorize(request, "GetRole", arn)
    if row is None:
        raise missing(f"The role with name {name} cannot be found.")
    return {"Role": role_shape(row)}


@iam_action("ListRoles")
async def list_roles(request: ApiRequest, form: Mapping[str, str]) -> Any:
    prefix = path_prefix(form)
    await authorize(request, "ListRoles", "*")
    roles = await store.list_roles(request.services.engine, prefix)
    return paginate(form, [role_shape(r) for r in roles], f"ListRoles{prefix}", "Roles")


@iam_action("DeleteRole")
async def delete_role(request: ApiRequest, form: Mapping[str, str]) -> Any:
    name = required_name(form, "RoleName", "role")
    await authorize(request, "DeleteRole", (await role_resource(request, name))[0])
    await store.delete_role(request.services.engine, name)
    return None


# -- managed policies -------------------------------------------------------------------------------
def check_managed_size(text: str) -> None:
    if policy_size(text) > MANAGED_POLICY_MAX_CHARS:
        raise store.limit_exceeded(f"Cannot exceed quota for PolicySize: {MANAGED_POLICY_MAX_CHARS}")


def arn_param(form: Mapping[str, str], name: str) -> str:
    return required(form, name, min_len=20, max_len=2048)


async def existing_policy(request: ApiRequest, arn: str) -> store.PolicyRow:
    row = await store.get_policy(request.services.engine, arn)
    if row is None:
        raise missing(f"Policy {arn} was not found.")
    return row


@iam_action("CreatePolicy")
async def create_policy(request: ApiRequest, form: Mapping[str, str]) -> Any:
    name, path = required_name(form, "PolicyName", "policy"), path_param(form)
    description = param(form, "Description", min_len=0, max_len=1000)
    text, _ = policy_document(form, "PolicyDocument")
    check_managed_size(text)
    await authorize(request, "CreatePolicy", policy_arn(request.account, name, path))
    policy = await store.create_policy(
        request.services.engine, request.account, name, path, description, text, _now()
    )
    return {"Policy": policy_shape(policy)}


@iam_action("GetPolicy")
async def get_policy(request: ApiRequest, form: Mapping[str, str]) -> Any:
    arn = arn_param(form, "PolicyArn")
    await authorize(request, "GetPolicy", arn)
    return {"Policy": policy_shape(await existing_policy(request, arn))}


@iam_action("ListPolicies")
async def list_policies(request: ApiRequest, form: Mapping[str, str]) -> Any:
    scope = param(form, "Scope", allowed=("All", "AWS", "Local")) or "All"
    only_attached, prefix = boolean(form, "OnlyAttached"), path_prefix(form)
    await authorize(request, "ListPolicies", "*")
    policies = await store.list_policies(
        request.services.engine, scope=scope, only_attached=only_attached, path_prefix=prefix
    )
    listing = f"ListPolicies{scope}{only_attached}{prefix}"
    return paginate(form, [policy_shape(p) for p in policies], listing, "Policies")


@iam_action("DeletePolicy")
async def delete_policy(request: ApiRequest, form: Mapping[str, str]) -> Any:
    arn = arn_param(form, "PolicyArn")
    await authorize(request, "DeletePolicy", arn)
    await store.delete_policy(request.services.engine, arn)
    return None


VERSION_PATTERN = r"v[1-9][0-9]*(\.[A-Za-z0-9-]*)?"


@iam_action("GetPolicyVersion")
async def get_policy_version(request: ApiRequest, form: Mapping[str, str]) -> Any:
    arn, version = arn_param(form, "PolicyArn"), required(form, "VersionId", pattern=VERSION_PATTERN)
    await authorize(request, "GetPolicyVersion", arn)
    return {
        "PolicyVersion": version_shape(await store.get_policy_version(request.services.engine, arn, version))
    }


@iam_action("ListPolicyVersions")
async def list_policy_versions(request: ApiRequest, form: Mapping[str, str]) -> Any:
    arn = arn_param(form, "PolicyArn")
    await authorize(request, "ListPolicyVersions", arn)
    versions = await store.list_policy_versions(request.services.engine, arn)
    shapes = [version_shape(v, with_document=False) for v in versions]
    return paginate(form, shapes, f"ListPolicyVersions{arn}", "Versions")


@iam_action("CreatePolicyVersion")
async def create_policy_version(request: ApiRequest, form: Mapping[str, str]) -> Any:
    arn = arn_param(form, "PolicyArn")
    text, _ = policy_document(form, "PolicyDocument")
    check_managed_size(text)
    set_default = boolean(form, "SetAsDefault")
    await authorize(request, "CreatePolicyVersion", arn)
    version = await store.create_policy_version(request.services.engine, arn, text, set_default, _now())
    return {"PolicyVersion": version_shape(version, with_document=False)}


@iam_action("DeletePolicyVersion")
async def delete_policy_version(request: ApiRequest, form: Mapping[str, str]) -> Any:
    arn, version = arn_param(form, "PolicyArn"), required(form, "VersionId", pattern=VERSION_PATTERN)
    await authorize(request, "DeletePolicyVersion", arn)
    await store.delete_policy_version(request.services.engine, arn, version)
    return None


@iam_action("SetDefaultPolicyVersion")
async def set_default_policy_version(request: ApiRequest, form: Mapping[str, str]) -> Any:
    arn, version = arn_param(form, "PolicyArn"), required(form, "VersionId", pattern=VERSION_PATTERN)
    await authorize(request, "SetDefaultPolicyVersion", arn)
    await store.set_default_policy_version(request.services.engine, arn, version, _now())
    return None


# -- attachments and inline policies, for users, groups and roles ----------------------------------
HOLDERS: dict[HolderType, tuple[str, str]] = {
    "user": ("User", "UserName"),
    "group": ("Group", "GroupName"),
    "role": ("Role", "RoleName"),
}


def _register_holder_actions(holder_type: HolderType) -> None:
    word, member = HOLDERS[holder_type]

    async def target(request: ApiRequest, form: Mapping[str, str], action: str, **context: list[str]) -> str:
        name = required_name(form, member, holder_type)
        await authorize(request, action, await holder_arn(request, holder_type, name), context or None)
        return name

    @iam_action(f"Attach{word}Policy")
    async def attach(request: ApiRequest, form: Mapping[str, str]) -> Any:
        arn = arn_param(form, "PolicyArn")
        name = await target(request, form, f"Attach{word}Policy", **{"iam:PolicyARN": [arn]})
        await store.attach_policy(request.services.engine, holder_type, name, arn)
        return None

    @iam_action(f"Detach{word}Policy")
    async def detach(request: ApiRequest, form: Mapping[str, str]) -> Any:
        arn = arn_param(form, "PolicyArn")
        name = await target(request, form, f"Detach{word}Policy", **{"iam:PolicyARN": [arn]})
        await store.detach_policy(request.services.engine, holder_type, name, arn)
        return None

    @iam_action(f"ListAttached{word}Policies")
    async def list_attached(request: ApiRequest, form: Mapping[str, str]) -> Any:
        name = await target(request, form, f"ListAttached{word}Policies")
        pairs = await store.attached_policies(request.services.engine, holder_type, name)
        shapes = [{"PolicyName": policy_name, "PolicyArn": arn} for policy_name, arn in pairs]
        return paginate(form, shapes, f"ListAttached{word}Policies{name}", "AttachedPolicies")

    @iam_action(f"Put{word}Policy")
    async def put_inline(request: ApiRequest, form: Mapping[str, str]) -> Any:
        policy_name = required_name(form, "PolicyName", "policy")
        text, _ = policy_document(form, "PolicyDocument")
        name = await target(request, form, f"Put{word}Policy")
        limit = INLINE_MAX_CHARS[holder_type]
        if policy_size(text) > limit:
            raise store.limit_exceeded(
                f"Maximum policy size of {limit} bytes exceeded for {holder_type} {name}"
            )
        await store.put_inline_policy(request.services.engine, holder_type, name, policy_name, text)
        return None

    @iam_action(f"Get{word}Policy")
    async def get_inline(request: ApiRequest, form: Mapping[str, str]) -> Any:
        policy_name = required_name(form, "PolicyName", "policy")
        name = await target(request, form, f"Get{word}Policy")
        document = await store.get_inline_policy(request.services.engine, holder_type, name, policy_name)
        return {member: name, "PolicyName": policy_name, "PolicyDocument": encoded(document)}

    @iam_action(f"Delete{word}Policy")
    async def delete_inline(request: ApiRequest, form: Mapping[str, str]) -> Any:
        policy_name = required_name(form, "PolicyName", "policy")
        name = await target(request, form, f"Delete{word}Policy")
        await store.delete_inline_policy(request.services.engine, holder_type, name, policy_name)
        return None

    @iam_action(f"List{word}Policies")
    async def list_inline(request: ApiRequest, form: Mapping[str, str]) -> Any:
        name = await target(request, form, f"List{word}Policies")
        names = await store.inline_policy_names(request.services.engine, holder_type, name)
        return paginate(form, names, f"List{word}Policies{name}", "PolicyNames")


for _holder in HOLDERS:
    _register_holder_actions(_holder)


# -- access keys ------------------------------------------------------------------------------------
ACCESS_KEY_PATTERN = r"[\w]+"


@iam_action("CreateAccessKey")
async def create_access_key(request: ApiRequest, form: Mapping[str, str]) -> Any:
    name = caller_user_name(request, form)
    arn, row = await user_resource(request, name)
    await authorize(request, "CreateAccessKey", arn)
    if row is None:
        raise missing(f"The user with name {name} cannot be found.")
    engine = request.services.engine
    await store.check_access_key_quota(engine, name)
    now = _now()
    issued = await access_keys.create_long_term(
        engine, request.services.cipher, principal_type="user", principal_name=name, now=now
    )
    # The secret is returned this once; the store keeps it only encrypted.
    return {
        "AccessKey": {
            "UserName": name,
            "AccessKeyId": issued.access_key_id,
            "Status": "Active",
            "SecretAccessKey": issued.secret_access_key,
            "CreateDate": now,
        }
    }


@iam_action("ListAccessKeys")
async def list_access_keys(request: ApiRequest, form: Mapping[str, str]) -> Any:
    name = caller_user_name(request, form)
    await authorize(request, "ListAccessKeys", (await user_resource(request, name))[0])
    keys = await store.user_access_keys(request.services.engine, name)
    shapes = [
        {
            "UserName": k.user_name,
            "AccessKeyId": k.access_key_id,
            "Status": k.status,
            "CreateDate": k.created_at,
        }
        for k in keys
    ]
    return paginate(form, shapes, f"ListAccessKeys{name}", "AccessKeyMetadata")


async def _key_target(request: ApiRequest, form: Mapping[str, str], action: str) -> tuple[str, str]:
    """Without UserName the key must belong to the calling user, as in AWS."""
    key_id = required(form, "AccessKeyId", min_len=16, max_len=128, pattern=ACCESS_KEY_PATTERN)
    name = caller_user_name(request, form)
    await authorize(request, action, (await user_resource(request, name))[0])
    return name, key_id


@iam_action("UpdateAccessKey")
async def update_access_key(request: ApiRequest, form: Mapping[str, str]) -> Any:
    status = required(form, "Status", allowed=("Active", "Inactive"))
    name, key_id = await _key_target(request, form, "UpdateAccessKey")
    await store.update_access_key(request.services.engine, name, key_id, status)
    return None


@iam_action("DeleteAccessKey")
async def delete_access_key(request: ApiRequest, form: Mapping[str, str]) -> Any:
    name, key_id = await _key_target(request, form, "DeleteAccessKey")
    await store.delete_access_key(request.services.engine, name, key_id)
    return None


# -- policy simulator -------------------------------------------------------------------------------
CONTEXT_TYPES = (
    "string",
    "stringList",
    "numeric",
    "numericList",
    "boolean",
    "booleanList",
    "ip",
    "ipList",
    "binary",
    "binaryList",
    "date",
    "dateList",
)


def context_entries(form: Mapping[str, str]) -> dict[str, list[str]]:
    context: dict[str, list[str]] = {}
    for prefix in member_prefixes(form, "ContextEntries"):
        key = required(form, f"{prefix}.ContextKeyName", min_len=5, max_len=256)
        param(form, f"{prefix}.ContextKeyType", allowed=CONTEXT_TYPES)
        context[key.lower()] = members(form, f"{prefix}.ContextKeyValues")
    return context


def source_type(label: str) -> str:
    if label.startswith("PolicyInputList."):
        return "none"
    if label.startswith(("user/", "group/", "role/")):
        return label.split("/", 1)[0]
    return "aws-managed" if ":iam::aws:policy/" in label else "user-managed"


def simulated_principal(
    account: str, context: Mapping[str, Sequence[str]], caller_arn: str | None
) -> Principal:
    """A caller built from the ContextEntries (aws:username, aws:userid …) when no stored one applies."""

    def single(key: str) -> str | None:
        values = context.get(key)
        return values[0] if values and len(values) == 1 else None

    return Principal(
        arn=caller_arn or single("aws:principalarn") or "",
        account=account,
        type="User",
        user_id=single("aws:userid") or "",
        username=single("aws:username"),
    )


async def stored_principal(request: ApiRequest, arn: str) -> tuple[Principal, HolderType, str]:
    """The principal a ``PolicySourceArn`` names (user, group or role) and its holder key."""
    account = request.account
    match = re.fullmatch(r"arn:aws:iam::(\d{12}):(user|group|role)(/(?:.*/)?)?([\w+=,.@-]+)", arn, re.ASCII)
    if match is None or match.group(1) != account:
        raise ApiError("InvalidInput", f"Invalid ARN {arn}: not a user, group or role of account {account}.")
    kind, name = match.group(2), match.group(4)
    if kind == "user":
        row = await store.get_user(request.services.engine, name)
        if row is None:
            raise missing(f"The user with name {name} cannot be found.")
        principal = Principal(row.arn, account, "User", row.user_id, row.name, tags=row.tags)
        return principal, "user", name
    if kind == "role":
        role = await store.get_role(request.services.engine, name)
        if role is None:
            raise missing(f"The role with name {name} cannot be found.")
        session = "simulated-session"
        principal = Principal(
            f"arn:aws:sts::{account}:assumed-role/{name}/{session}",
            account,
            "AssumedRole",
            f"{role.role_id}:{session}",
            None,
            session_name=session,
            role_name=name,
            tags=role.tags,
        )
        return principal, "role", name
    group = await store.get_group(request.services.engine, name)
    if group is None:
        raise missing(f"The group with name {name} cannot be found.")
    return Principal(group.arn, account, "User", "", None), "group", name


def input_policies(form: Mapping[str, str], member: str) -> list[tuple[str, str, PolicySource]]:
    sources: list[tuple[str, str, PolicySource]] = []
    for index, text in enumerate(members(form, member), start=1):
        label = f"{member}.{index}"
        try:
            policy = parse_policy(text)
        except MalformedPolicyDocument as exc:
            raise MalformedPolicyDocument(f"{label}: {exc}") from None
        sources.append((label, text, PolicySource(label, policy)))
    return sources


def missing_keys(
    sources: Sequence[PolicySource], action: str, resource: str, context: Mapping[str, Sequence[str]]
) -> list[str]:
    """Condition keys of statements that match the action and resource but are absent from the context."""
    absent: list[str] = []
    for source in sources:
        for statement in source.policy.statements:
            if not (statement.action_matches(action) and statement.resource_matches(resource, context)):
                continue
            for condition in statement.conditions:
                if condition.key not in context and condition.key not in absent:
                    absent.append(condition.key)
    return absent


def simulate(
    sources: Sequence[tuple[str, str, PolicySource]],
    principal: Principal,
    actions: Sequence[str],
    resources: Sequence[str],
    context: Mapping[str, Sequence[str]],
) -> list[dict[str, Any]]:
    texts = {label: text for label, text, _ in sources}
    policy_sources = [source for _, _, source in sources]
    positions = {label: statement_positions(text) for label, text in texts.items()}

    def matched_shape(source: str, index: int) -> dict[str, Any]:
        shape: dict[str, Any] = {"SourcePolicyId": source, "SourcePolicyType": source_type(source)}
        spans = positions.get(source, [])
        if index < len(spans):
            (start_line, start_column), (end_line, end_column) = spans[index]
            shape["StartPosition"] = {"Line": start_line, "Column": start_column}
            shape["EndPosition"] = {"Line": end_line, "Column": end_column}
        return shape

    results: list[dict[str, Any]] = []
    for action in actions:
        for resource in resources:
            request = AuthzRequest(principal, action, resource, context)
            outcome = evaluate(policy_sources, request)
            matched = [matched_shape(m.source, m.index) for m in outcome.matched]
            absent = missing_keys(policy_sources, action, resource, request_context(request))
            results.append(
                {
                    "EvalActionName": action,
                    "EvalResourceName": resource,
                    "EvalDecision": outcome.decision,
                    "MatchedStatements": matched,
                    "MissingContextValues": absent,
                    "ResourceSpecificResults": [
                        {
                            "EvalResourceName": resource,
                            "EvalResourceDecision": outcome.decision,
                            "MatchedStatements": matched,
                            "MissingContextValues": absent,
                        }
                    ],
                }
            )
    return results


def simulation_inputs(
    form: Mapping[str, str],
) -> tuple[list[str], list[str], dict[str, list[str]], str | None]:
    actions = members(form, "ActionNames")
    if not actions:
        raise _validation("ActionNames", None, "Member must have length greater than or equal to 1")
    resources = members(form, "ResourceArns") or ["*"]
    caller = param(form, "CallerArn", max_len=2048)
    return actions, resources, context_entries(form), caller


@iam_action("SimulateCustomPolicy")
async def simulate_custom_policy(request: ApiRequest, form: Mapping[str, str]) -> Any:
    sources = input_policies(form, "PolicyInputList")
    if not sources:
        raise _validation("PolicyInputList", None, "Member must not be null")
    actions, resources, context, caller = simulation_inputs(form)
    await authorize(request, "SimulateCustomPolicy", "*")
    principal = simulated_principal(request.account, context, caller)
    return paginate(
        form, simulate(sources, principal, actions, resources, context), "Simulate", "EvaluationResults"
    )


@iam_action("SimulatePrincipalPolicy")
async def simulate_principal_policy(request: ApiRequest, form: Mapping[str, str]) -> Any:
    source_arn = arn_param(form, "PolicySourceArn")
    extra = input_policies(form, "PolicyInputList")
    actions, resources, context, _ = simulation_inputs(form)
    await authorize(request, "SimulatePrincipalPolicy", source_arn)
    principal, holder_type, name = await stored_principal(request, source_arn)
    sources: list[tuple[str, str, PolicySource]] = []
    for label, text in await store.policy_documents(request.services.engine, holder_type, name):
        try:
            sources.append((label, text, PolicySource(label, parse_policy(text))))
        except MalformedPolicyDocument:
            continue  # the authoriser ignores a stored policy that no longer parses; so does the simulator
    results = simulate(sources + extra, principal, actions, resources, context)
    return paginate(form, results, "Simulate", "EvaluationResults")
